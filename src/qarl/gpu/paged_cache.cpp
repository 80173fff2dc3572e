#include "qarl/gpu/paged_cache.h"

#include <algorithm>

#include <cuda_runtime.h>

#include "qarl/core/error.h"
#include "qarl/kernels/cuda/launch.h"
#include "qarl/model/model.h"

namespace qarl::gpu {
namespace kg = kernels::gpu;

PagedCache::PagedCache(int n_layers, int n_kv_heads, int head_dim, int block_size, int n_blocks,
                       int max_seqs, int max_tokens, KVCacheMode mode)
    : n_layers_(n_layers), kv_dim_(n_kv_heads * head_dim), n_kv_heads_(n_kv_heads),
      head_dim_(head_dim), block_size_(block_size), n_blocks_(n_blocks), max_seqs_(max_seqs),
      mode_(mode) {
  if (block_size <= 0 || n_blocks <= 0 || max_seqs <= 0 || max_tokens <= 0)
    throw usage_err("paged cache: sizes must be positive (block_size {}, blocks {}, seqs {}, tokens {})",
                    block_size, n_blocks, max_seqs, max_tokens);
  if (native() && kv_dim_ % 16 != 0)
    throw usage_err("a {} KV cache needs rows of a multiple of 16 values, got {} (n_kv_heads {} x head_dim {})",
                    rollout::kv_cache_mode_name(mode), kv_dim_, n_kv_heads, head_dim);
  max_blocks_ = (max_tokens + block_size - 1) / block_size;
  const int64_t rows = int64_t(n_blocks) * block_size;
  for (int l = 0; l < n_layers; ++l) {
    if (mode == KVCacheMode::Auto) {
      k_.push_back(Tensor::empty({n_blocks, block_size, kv_dim_}, DType::BF16, Device::CUDA));
      v_.push_back(Tensor::empty({n_blocks, block_size, kv_dim_}, DType::BF16, Device::CUDA));
      continue;
    }
    const int64_t code_w = mode == KVCacheMode::FP8 ? kv_dim_ : kv_dim_ / 2;
    for (auto* pools : {&k_, &v_}) {
      pools->push_back(Tensor::empty({n_blocks, block_size, code_w}, DType::U8, Device::CUDA));
      // Zero codes decode to zeros: rows never written are finite (they are never read either).
      cudaMemset(pools->back().data(), 0, size_t(rows * code_w));
    }
    if (mode == KVCacheMode::NVFP4)
      for (auto* pools : {&k_scales_, &v_scales_}) {
        pools->push_back(Tensor::empty({n_blocks, block_size, kv_dim_ / 16}, DType::U8, Device::CUDA));
        cudaMemset(pools->back().data(), 0, size_t(rows * (kv_dim_ / 16)));
      }
  }
  if (native()) {
    k_scratch_ = Tensor::empty({n_blocks, block_size, kv_dim_}, DType::BF16, Device::CUDA);
    v_scratch_ = Tensor::empty({n_blocks, block_size, kv_dim_}, DType::BF16, Device::CUDA);
    entries_dev_ = Tensor::empty({1 + 2 * int64_t(max_seqs) * max_blocks_}, DType::I32, Device::CUDA);
  }
  kg::check_last_launch("paged cache allocation");
  table_.assign(size_t(max_seqs) * size_t(max_blocks_), -1);
  n_blocks_of_.assign(size_t(max_seqs), 0);
  len_.assign(size_t(max_seqs), 0);
  // Handed out in increasing order, so a fresh cache gives each sequence consecutive blocks.
  for (int b = n_blocks - 1; b >= 0; --b) free_.push_back(b);
  table_dev_ = Tensor::empty({int64_t(table_.size())}, DType::I32, Device::CUDA);
}

PagedCache PagedCache::for_sequences(int n_layers, int n_kv_heads, int head_dim, int max_seqs,
                                     int max_tokens, int block_size, KVCacheMode mode) {
  const int per_seq = (max_tokens + block_size - 1) / block_size;
  return PagedCache(n_layers, n_kv_heads, head_dim, block_size, per_seq * max_seqs, max_seqs,
                    max_tokens, mode);
}

int64_t PagedCache::bytes_per_token() const {
  const int64_t row = mode_ == KVCacheMode::Auto ? int64_t(kv_dim_) * 2
                      : mode_ == KVCacheMode::FP8 ? int64_t(kv_dim_)
                                                  : int64_t(kv_dim_) / 2 + kv_dim_ / 16;
  return int64_t(n_layers_) * 2 * row;
}
int64_t PagedCache::scratch_bytes() const {
  return native() ? 2 * int64_t(n_blocks_) * block_size_ * kv_dim_ * 2 : 0;
}
int64_t PagedCache::bytes() const {
  return bytes_per_token() * n_blocks_ * block_size_ + scratch_bytes();
}

void PagedCache::set_codecs(const std::vector<quant::TensorQuantizer>& k,
                            const std::vector<quant::TensorQuantizer>& v) {
  if (!native()) return;
  if (int(k.size()) != n_layers_ || int(v.size()) != n_layers_)
    throw err("paged cache: {} / {} K/V quantizers for {} layers", k.size(), v.size(), n_layers_);
  const quant::Format want = mode_ == KVCacheMode::FP8 ? quant::Format::FP8 : quant::Format::NVFP4;
  std::vector<Codec> kc, vc;
  for (int l = 0; l < n_layers_; ++l)
    for (char which : {'k', 'v'}) {
      const quant::TensorQuantizer& q = (which == 'k' ? k : v)[size_t(l)];
      const std::string name = model::kv_quantizer_name(l, which);
      if (!q.enabled() || q.config().format != want)
        throw usage_err("--kv-cache {} stores the {} quantizer's codes, but {} is {}; a native "
                        "cache needs the recipe to enable {} K/V quantizers (use --kv-cache auto "
                        "otherwise)",
                        rollout::kv_cache_mode_name(mode_), quant::format_name(want), name,
                        q.enabled() ? quant::format_name(q.config().format) : "disabled",
                        quant::format_name(want));
      if (q.has_amax_buffer() && !q.amax_received())
        throw err("K/V quantizer '{}' has no amax: a native {} KV cache cannot encode layer {}'s {} "
                  "rows without its scale", name, rollout::kv_cache_mode_name(mode_), l,
                  which == 'k' ? "K" : "V")
            .tensor(name + "._amax");
      float amax = 0;
      try {
        amax = q.effective_amax();
      } catch (Error& e) {
        throw e.tensor(name + "._amax");
      }
      Codec c;
      if (want == quant::Format::FP8) {
        const quant::Fp8Scales s = quant::fp8_scales(amax);
        c.s = s.scale;
        c.inv = s.inv_scale;
      } else {
        const quant::Nvfp4Scales s = quant::nvfp4_scales(amax, quant::Nvfp4Division::kTriton);
        c.nv = kg::Nvfp4Scalars{s.global_scale, s.six_gs, s.rcp_six_gs, true};
      }
      (which == 'k' ? kc : vc).push_back(c);
    }
  k_codec_ = std::move(kc);
  v_codec_ = std::move(vc);
}

void PagedCache::reserve(int seq, int n_tokens) {
  if (seq < 0 || seq >= max_seqs_) throw err("paged cache: sequence slot {} outside [0, {})", seq, max_seqs_);
  const int need = (n_tokens + block_size_ - 1) / block_size_;
  if (need > max_blocks_)
    throw runtime_err("paged cache: sequence of {} tokens exceeds the cache's {} tokens per sequence",
                      n_tokens, max_blocks_ * block_size_);
  int& have = n_blocks_of_[size_t(seq)];
  if (need - have > int(free_.size()))
    throw runtime_err("paged cache: out of blocks ({} free, {} needed)", free_.size(), need - have);
  for (; have < need; ++have) {
    table_[size_t(seq) * max_blocks_ + size_t(have)] = free_.back();
    free_.pop_back();
    dirty_ = true;
  }
  if (n_tokens > len_[size_t(seq)]) {
    len_[size_t(seq)] = n_tokens;
    entries_dirty_ = true;
  }
}

void PagedCache::release(int seq) {
  int& have = n_blocks_of_[size_t(seq)];
  for (int b = have - 1; b >= 0; --b) {
    int32_t& id = table_[size_t(seq) * max_blocks_ + size_t(b)];
    free_.push_back(id);
    id = -1;
  }
  have = 0;
  len_[size_t(seq)] = 0;
  dirty_ = entries_dirty_ = true;
}

int PagedCache::tokens_reserved(int seq) const { return n_blocks_of_[size_t(seq)] * block_size_; }

void PagedCache::sync_tables() {
  if (dirty_) {
    Tensor h = Tensor::borrow(table_.data(), {int64_t(table_.size())}, DType::I32, nullptr);
    table_dev_.copy_from(h);
    dirty_ = false;
  }
  if (native() && entries_dirty_) {
    entries_.assign(1, 0);  // the count, then the pairs
    for (int s = 0; s < max_seqs_; ++s)
      for (int b = 0; b * block_size_ < len_[size_t(s)]; ++b) {
        entries_.push_back(table_[size_t(s) * max_blocks_ + size_t(b)]);
        entries_.push_back(std::min(block_size_, len_[size_t(s)] - b * block_size_));
      }
    entries_[0] = int32_t((entries_.size() - 1) / 2);
    Tensor h = Tensor::borrow(entries_.data(), {int64_t(entries_.size())}, DType::I32, nullptr);
    entries_dev_.narrow0(0, int64_t(entries_.size())).copy_from(h);
    entries_dirty_ = false;
  }
}

kg::PagedKV PagedCache::layer_view(int layer) const {
  if (native())
    throw Error(fmt::format("paged cache: layer_view() of a {} cache (use read_view)",
                            rollout::kv_cache_mode_name(mode_)), ErrorKind::Internal);
  kg::PagedKV v;
  v.k_pool = static_cast<kg::bf16*>(k_[size_t(layer)].data());
  v.v_pool = static_cast<kg::bf16*>(v_[size_t(layer)].data());
  v.block_table = table_dev_.data_as<int32_t>();
  v.block_size = block_size_;
  v.max_blocks_per_seq = max_blocks_;
  v.n_kv_heads = n_kv_heads_;
  v.head_dim = head_dim_;
  return v;
}

kg::NativeKV PagedCache::native_view(int layer) const {
  if (k_codec_.empty())
    throw Error(fmt::format("paged cache: {} cache used before set_codecs() (layer {})",
                            rollout::kv_cache_mode_name(mode_), layer), ErrorKind::Internal);
  kg::NativeKV n;
  n.format = mode_ == KVCacheMode::FP8 ? kg::KvFormat::FP8 : kg::KvFormat::NVFP4;
  n.k_codes = static_cast<uint8_t*>(k_[size_t(layer)].data());
  n.v_codes = static_cast<uint8_t*>(v_[size_t(layer)].data());
  if (mode_ == KVCacheMode::NVFP4) {
    n.k_scales = static_cast<uint8_t*>(k_scales_[size_t(layer)].data());
    n.v_scales = static_cast<uint8_t*>(v_scales_[size_t(layer)].data());
  }
  n.block_table = table_dev_.data_as<int32_t>();
  n.row_values = kv_dim_;
  n.block_size = block_size_;
  n.max_blocks_per_seq = max_blocks_;
  const Codec& kc = k_codec_[size_t(layer)];
  const Codec& vc = v_codec_[size_t(layer)];
  n.k_s = kc.s, n.k_inv = kc.inv, n.v_s = vc.s, n.v_inv = vc.inv;
  n.k_nv = kc.nv, n.v_nv = vc.nv;
  return n;
}

void PagedCache::write_native(int layer, const kg::bf16* k, const kg::bf16* v, int64_t ld,
                              const int32_t* row_seq, const int32_t* row_pos, int64_t n,
                              void* stream) {
  if (!native())
    throw Error("paged cache: write_native() on a bf16 cache", ErrorKind::Internal);
  kg::launch_kv_write_native(native_view(layer), k, v, ld, row_seq, row_pos, n, stream);
}

kg::PagedKV PagedCache::read_view(int layer, void* stream) {
  if (!native()) return layer_view(layer);
  QARL_ASSERT(!entries_dirty_, "paged cache: read_view() before sync_tables()");
  // The grid covers every block the cache has, the count is on the device: a captured decode
  // step replays this for whatever rows are live then.
  kg::launch_kv_decode_native(native_view(layer), entries_dev_.data_as<int32_t>(),
                              int((entries_dev_.numel() - 1) / 2), static_cast<kg::bf16*>(k_scratch_.data()),
                              static_cast<kg::bf16*>(v_scratch_.data()), stream);
  kg::PagedKV v;
  v.k_pool = static_cast<kg::bf16*>(k_scratch_.data());
  v.v_pool = static_cast<kg::bf16*>(v_scratch_.data());
  v.block_table = table_dev_.data_as<int32_t>();
  v.block_size = block_size_;
  v.max_blocks_per_seq = max_blocks_;
  v.n_kv_heads = n_kv_heads_;
  v.head_dim = head_dim_;
  return v;
}

}  // namespace qarl::gpu
