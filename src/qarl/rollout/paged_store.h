// The model's KVStore (model/kv_access.h) over the paged cache for one forward step: batch
// sequence s reads and writes the blocks of tables[s]. The engine has already allocated every
// block the step writes (and copied shared blocks on write), so write() never allocates.
//
// auto mode: view() points straight into the cache blocks (fp32 rows).
// fp8 / nvfp4: write() stores codes; view() decodes the sequence's rows into a per-sequence
// fp32 scratch (valid until the next layer starts), which attention then reads. Decoding is
// exact, so attention sees bitwise the floats of `auto`. Every native write is checked: the
// codes must decode to exactly the quantized rows the model handed over (an Internal error
// otherwise), so a native cache can never silently diverge from `auto`.
#pragma once
#include <cstdint>
#include <vector>

#include "qarl/model/kv_access.h"
#include "qarl/rollout/kv_cache.h"

namespace qarl::rollout {

class PagedKVStore : public model::KVStore {
 public:
  PagedKVStore(KVCache& cache, std::vector<const std::vector<int32_t>*> tables);

  bool wants_unquantized() const override;
  void write_unquantized(int layer, int seq, int pos, int n, const float* k,
                         const float* v) override;
  void write(int layer, int seq, int pos, int n, const float* k, const float* v) override;
  model::KVView view(int layer, int seq, int n_tokens) override;

 private:
  void write_side(int layer, int seq, int pos, int n, const float* rows, bool is_k, bool encode,
                  bool check);
  KVCache& cache_;
  std::vector<const std::vector<int32_t>*> tables_;
  // Per batch sequence: block pointers of the last view, and native-mode scratch.
  struct SeqScratch {
    std::vector<const float*> k_ptrs, v_ptrs;
    std::vector<float> k, v;
    int raw_layer = -1, raw_pos = -1, raw_n = 0;  // last write_unquantized()
  };
  std::vector<SeqScratch> scratch_;
  std::vector<float> check_;  // decode buffer for the write check
};

}  // namespace qarl::rollout
