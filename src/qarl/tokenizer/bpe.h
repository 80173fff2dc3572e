// The byte-level BPE model: vocabulary, merges by rank, and the merge loop with a word cache
// (so that long texts, which repeat words, stay linear in practice).
#pragma once
#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qarl::tokenizer {

class BpeModel {
 public:
  // `vocab`: byte-level token text -> id. `merges`: pairs of token texts, in rank order.
  // Throws Error for a merge whose parts or result are not in the vocabulary.
  // `unk_token` (may be empty: none) must be in the vocabulary.
  BpeModel(std::unordered_map<std::string, int32_t> vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges,
           const std::string& unk_token = "", bool fuse_unk = false);

  // Appends the ids of one pre-tokenized word given as raw bytes. A byte whose symbol is not
  // in the vocabulary becomes unk_token (consecutive ones fused into one if fuse_unk), or is
  // dropped when there is no unk_token, as tokenizers does.
  void encode_word(std::string_view word, std::vector<int32_t>* out) const;
  // The reference: the plain O(n^2) loop (lowest rank first, leftmost on ties), no cache.
  void encode_word_reference(std::string_view word, std::vector<int32_t>* out) const;

  const std::unordered_map<std::string, int32_t>& vocab() const { return vocab_; }
  size_t num_merges() const { return merges_.size(); }
  void clear_cache() const;

 private:
  void merge(std::string_view word, std::vector<int32_t>* out) const;
  struct Merge {
    int32_t rank;
    int32_t id;
  };
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

  // Merges in an open-addressing table (linear probing): the merge loop does one lookup per
  // candidate pair, and a node-based map costs a cache miss per lookup.
  class MergeTable {
   public:
    void reserve(size_t n);
    void insert_or_assign(uint64_t key, Merge m);
    const Merge* find(uint64_t key) const;
    size_t size() const { return size_; }

   private:
    static constexpr uint64_t kEmpty = ~uint64_t(0);
    size_t slot(uint64_t key) const { return size_t((key * 0x9E3779B97F4A7C15ull) >> shift_); }
    std::vector<uint64_t> keys_;
    std::vector<Merge> vals_;
    int shift_ = 64;
    size_t size_ = 0;
  };

  std::unordered_map<std::string, int32_t> vocab_;
  MergeTable merges_;
  std::array<int32_t, 256> byte_id_;  // id of each single-byte symbol, -1 if absent
  bool ignore_merges_;
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  // The initial symbols of a word: one per byte, unknown bytes handled as described above.
  void initial_symbols(std::string_view word, std::vector<int32_t>* ids) const;

  static constexpr size_t kCacheMaxEntries = 1 << 18;
  static constexpr size_t kCacheMaxWordBytes = 256;
  mutable std::mutex cache_mu_;
  // Heterogeneous lookup: finding a word in the cache needs no std::string allocation.
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace qarl::tokenizer
