#include "qarl/tokenizer/bpe.h"

#include <queue>

#include "qarl/core/error.h"
#include "qarl/tokenizer/byte_level.h"

namespace qarl::tokenizer {

void BpeModel::MergeTable::reserve(size_t n) {
  size_t cap = 16;
  shift_ = 60;
  while (cap < 2 * n + 16) {
    cap *= 2;
    --shift_;
  }
  keys_.assign(cap, kEmpty);
  vals_.assign(cap, Merge{0, 0});
  size_ = 0;
}

void BpeModel::MergeTable::insert_or_assign(uint64_t key, Merge m) {
  QARL_ASSERT(2 * (size_ + 1) <= keys_.size(), "merge table over capacity");
  size_t mask = keys_.size() - 1;
  for (size_t i = slot(key);; i = (i + 1) & mask) {
    if (keys_[i] == key) {
      vals_[i] = m;
      return;
    }
    if (keys_[i] == kEmpty) {
      keys_[i] = key;
      vals_[i] = m;
      ++size_;
      return;
    }
  }
}

const BpeModel::Merge* BpeModel::MergeTable::find(uint64_t key) const {
  if (keys_.empty()) return nullptr;
  size_t mask = keys_.size() - 1;
  for (size_t i = slot(key);; i = (i + 1) & mask) {
    if (keys_[i] == key) return &vals_[i];
    if (keys_[i] == kEmpty) return nullptr;
  }
}

BpeModel::BpeModel(std::unordered_map<std::string, int32_t> vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges,
                   bool ignore_merges, const std::string& unk_token, bool fuse_unk)
    : vocab_(std::move(vocab)), ignore_merges_(ignore_merges), fuse_unk_(fuse_unk) {
  if (!unk_token.empty()) {
    auto it = vocab_.find(unk_token);
    if (it == vocab_.end()) throw err("unk_token \"{}\" is not in the vocabulary", unk_token);
    unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    auto it = vocab_.find(byte_to_unicode(uint8_t(b)));
    byte_id_[b] = it == vocab_.end() ? -1 : it->second;
  }
  merges_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto& [a, b] = merges[r];
    auto ia = vocab_.find(a), ib = vocab_.find(b), ic = vocab_.find(a + b);
    if (ia == vocab_.end() || ib == vocab_.end())
      throw err("merge {} \"{} {}\": part \"{}\" is not in the vocabulary", r, a, b,
                ia == vocab_.end() ? a : b);
    if (ic == vocab_.end())
      throw err("merge {} \"{} {}\": result \"{}\" is not in the vocabulary", r, a, b, a + b);
    // A repeated pair takes its last rank: tokenizers collects the merges into a HashMap,
    // where a later insert overwrites.
    merges_.insert_or_assign(key(ia->second, ib->second), Merge{int32_t(r), ic->second});
  }
}

void BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>* ids) const {
  bool last_unk = false;
  for (char c : word) {
    int32_t id = byte_id_[uint8_t(c)];
    if (id >= 0) {
      ids->push_back(id);
      last_unk = false;
    } else if (unk_id_ >= 0 && !(fuse_unk_ && last_unk)) {
      ids->push_back(unk_id_);
      last_unk = true;
    }
  }
}

void BpeModel::clear_cache() const {
  std::lock_guard<std::mutex> lock(cache_mu_);
  cache_.clear();
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>* out) const {
  bool cacheable = word.size() <= kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t mark = out->size();
  merge(word, out);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kCacheMaxEntries) cache_.clear();
    cache_.emplace(std::string(word), std::vector<int32_t>(out->begin() + mark, out->end()));
  }
}

// tokenizers' Word::merge_all: a min-heap of candidate merges ordered by (rank, position);
// entries made stale by an earlier merge are recognised and dropped when popped.
void BpeModel::merge(std::string_view word, std::vector<int32_t>* out) const {
  if (ignore_merges_) {
    auto it = vocab_.find(bytes_to_byte_level(word));
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  struct Sym {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  thread_local std::vector<int32_t> ids;
  ids.clear();
  initial_symbols(word, &ids);
  std::vector<Sym> syms;
  syms.reserve(ids.size());
  for (int32_t id : ids) {
    int32_t i = int32_t(syms.size());
    syms.push_back({id, i - 1, i + 1, true});
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  struct Cand {
    int32_t rank, pos, id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto consider = [&](int32_t pos) {
    int32_t nx = syms[pos].next;
    if (nx < 0) return;
    if (const Merge* mg = merges_.find(key(syms[pos].id, syms[nx].id))) heap.push({mg->rank, pos, mg->id});
  };
  for (int32_t i = 0; i + 1 < int32_t(syms.size()); ++i) consider(i);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    Sym& s = syms[c.pos];
    if (!s.alive || s.next < 0) continue;
    const Merge* mg = merges_.find(key(s.id, syms[s.next].id));
    if (!mg || mg->rank != c.rank) continue;  // stale
    Sym& r = syms[s.next];
    s.id = c.id;
    r.alive = false;
    s.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.pos;
    if (s.prev >= 0) consider(s.prev);
    consider(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) out->push_back(syms[i].id);
}

void BpeModel::encode_word_reference(std::string_view word, std::vector<int32_t>* out) const {
  if (ignore_merges_) {
    auto it = vocab_.find(bytes_to_byte_level(word));
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  std::vector<int32_t> ids;
  initial_symbols(word, &ids);
  for (;;) {
    int32_t best = -1, best_rank = 0, best_id = 0;
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      const Merge* mg = merges_.find(key(ids[i], ids[i + 1]));
      if (mg && (best < 0 || mg->rank < best_rank)) {
        best = int32_t(i);
        best_rank = mg->rank;
        best_id = mg->id;
      }
    }
    if (best < 0) break;
    ids[best] = best_id;
    ids.erase(ids.begin() + best + 1);
  }
  out->insert(out->end(), ids.begin(), ids.end());
}

}  // namespace qarl::tokenizer
