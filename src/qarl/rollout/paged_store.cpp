#include "qarl/rollout/paged_store.h"

#include <cstring>

#include "qarl/core/error.h"

namespace qarl::rollout {

PagedKVStore::PagedKVStore(KVCache& cache, std::vector<const std::vector<int32_t>*> tables)
    : cache_(cache), tables_(std::move(tables)), scratch_(tables_.size()) {}

bool PagedKVStore::wants_unquantized() const { return cache_.shape().mode != KVCacheMode::Auto; }

void PagedKVStore::write_side(int layer, int seq, int pos, int n, const float* rows, bool is_k,
                              bool encode, bool check) {
  const auto& table = *tables_[size_t(seq)];
  const int bs = cache_.block_size();
  const KVRowCodec& codec = is_k ? cache_.k_codec(layer) : cache_.v_codec(layer);
  const int rv = cache_.shape().row_values;
  QARL_ASSERT(size_t((pos + n - 1) / bs) < table.size(), "seq {} writes token {} past its {} blocks",
              seq, pos + n - 1, table.size());
  for (int i = 0; i < n; ++i) {
    int t = pos + i;
    int block = table[size_t(t / bs)];
    QARL_ASSERT(cache_.blocks().refcount(block) == 1, "write into shared block {}", block);
    uint8_t* dst = is_k ? cache_.k_row(layer, block, t % bs) : cache_.v_row(layer, block, t % bs);
    const float* row = rows + size_t(i) * size_t(rv);
    if (encode) codec.encode(row, dst);
    if (check) {
      // The codes must decode to exactly the quantized row the model computed.
      check_.resize(size_t(rv));
      codec.decode(dst, check_.data());
      if (std::memcmp(check_.data(), row, size_t(rv) * sizeof(float)) != 0)
        throw Error(fmt::format("{} cache codes of layer {} token {} do not decode to the "
                                "quantized {} row", kv_cache_mode_name(codec.mode), layer, t,
                                is_k ? "K" : "V"),
                    ErrorKind::Internal);
    }
  }
}

void PagedKVStore::write_unquantized(int layer, int seq, int pos, int n, const float* k,
                                     const float* v) {
  if (cache_.shape().mode == KVCacheMode::Auto) return;
  write_side(layer, seq, pos, n, k, true, true, false);
  write_side(layer, seq, pos, n, v, false, true, false);
  auto& s = scratch_[size_t(seq)];
  s.raw_layer = layer;
  s.raw_pos = pos;
  s.raw_n = n;
}

void PagedKVStore::write(int layer, int seq, int pos, int n, const float* k, const float* v) {
  auto& s = scratch_[size_t(seq)];
  bool have_raw = s.raw_layer == layer;
  if (have_raw)
    QARL_ASSERT(s.raw_pos == pos && s.raw_n == n, "write_unquantized({}, {}) then write({}, {})",
                s.raw_pos, s.raw_n, pos, n);
  const KVCacheMode mode = cache_.shape().mode;
  if (mode == KVCacheMode::NVFP4 && !have_raw)
    throw Error("an NVFP4 KV cache needs the K/V rows before the quantizer "
                "(KVStore::write_unquantized was not called)", ErrorKind::Internal);
  // auto: copy; fp8 without raw rows: re-encode the quantized rows (exact, see kv_cache.cpp);
  // native modes always check that the codes decode to the quantized rows.
  const bool encode = !have_raw, check = mode != KVCacheMode::Auto;
  write_side(layer, seq, pos, n, k, true, encode, check);
  write_side(layer, seq, pos, n, v, false, encode, check);
  s.raw_layer = -1;
}

model::KVView PagedKVStore::view(int layer, int seq, int n_tokens) {
  const auto& table = *tables_[size_t(seq)];
  const int bs = cache_.block_size();
  const int rv = cache_.shape().row_values;
  const int n_blocks = (n_tokens + bs - 1) / bs;
  QARL_ASSERT(size_t(n_blocks) <= table.size(), "view of {} tokens over {} blocks", n_tokens,
              table.size());
  auto& s = scratch_[size_t(seq)];
  model::KVView v;
  v.n_tokens = n_tokens;
  v.row_stride = rv;
  if (cache_.shape().mode == KVCacheMode::Auto) {
    s.k_ptrs.resize(size_t(n_blocks));
    s.v_ptrs.resize(size_t(n_blocks));
    for (int b = 0; b < n_blocks; ++b) {
      s.k_ptrs[size_t(b)] = reinterpret_cast<const float*>(cache_.k_row(layer, table[size_t(b)], 0));
      s.v_ptrs[size_t(b)] = reinterpret_cast<const float*>(cache_.v_row(layer, table[size_t(b)], 0));
    }
    v.block_size = bs;
  } else {
    // Decode into one contiguous block.
    s.k.resize(size_t(n_tokens) * size_t(rv));
    s.v.resize(size_t(n_tokens) * size_t(rv));
    const KVRowCodec& kc = cache_.k_codec(layer);
    const KVRowCodec& vc = cache_.v_codec(layer);
    for (int t = 0; t < n_tokens; ++t) {
      int block = table[size_t(t / bs)];
      kc.decode(cache_.k_row(layer, block, t % bs), s.k.data() + size_t(t) * size_t(rv));
      vc.decode(cache_.v_row(layer, block, t % bs), s.v.data() + size_t(t) * size_t(rv));
    }
    s.k_ptrs.assign(1, s.k.data());
    s.v_ptrs.assign(1, s.v.data());
    v.block_size = n_tokens > 0 ? n_tokens : 1;
  }
  v.k_blocks = s.k_ptrs.data();
  v.v_blocks = s.v_ptrs.data();
  return v;
}

}  // namespace qarl::rollout
