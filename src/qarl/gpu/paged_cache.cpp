#include "qarl/gpu/paged_cache.h"

#include <algorithm>

#include "qarl/core/error.h"

namespace qarl::gpu {

PagedCache::PagedCache(int n_layers, int n_kv_heads, int head_dim, int block_size, int n_blocks,
                       int max_seqs, int max_tokens)
    : n_layers_(n_layers), kv_dim_(n_kv_heads * head_dim), n_kv_heads_(n_kv_heads),
      head_dim_(head_dim), block_size_(block_size), n_blocks_(n_blocks), max_seqs_(max_seqs) {
  if (block_size <= 0 || n_blocks <= 0 || max_seqs <= 0 || max_tokens <= 0)
    throw usage_err("paged cache: sizes must be positive (block_size {}, blocks {}, seqs {}, tokens {})",
                    block_size, n_blocks, max_seqs, max_tokens);
  max_blocks_ = (max_tokens + block_size - 1) / block_size;
  for (int l = 0; l < n_layers; ++l) {
    k_.push_back(Tensor::empty({n_blocks, block_size, kv_dim_}, DType::BF16, Device::CUDA));
    v_.push_back(Tensor::empty({n_blocks, block_size, kv_dim_}, DType::BF16, Device::CUDA));
  }
  table_.assign(size_t(max_seqs) * size_t(max_blocks_), -1);
  n_blocks_of_.assign(size_t(max_seqs), 0);
  // Handed out in increasing order, so a fresh cache gives each sequence consecutive blocks.
  for (int b = n_blocks - 1; b >= 0; --b) free_.push_back(b);
  table_dev_ = Tensor::empty({int64_t(table_.size())}, DType::I32, Device::CUDA);
}

PagedCache PagedCache::for_sequences(int n_layers, int n_kv_heads, int head_dim, int max_seqs,
                                     int max_tokens, int block_size) {
  const int per_seq = (max_tokens + block_size - 1) / block_size;
  return PagedCache(n_layers, n_kv_heads, head_dim, block_size, per_seq * max_seqs, max_seqs,
                    max_tokens);
}

int64_t PagedCache::bytes() const { return int64_t(n_layers_) * 2 * n_blocks_ * block_size_ * kv_dim_ * 2; }

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
}

void PagedCache::release(int seq) {
  int& have = n_blocks_of_[size_t(seq)];
  for (int b = have - 1; b >= 0; --b) {
    int32_t& id = table_[size_t(seq) * max_blocks_ + size_t(b)];
    free_.push_back(id);
    id = -1;
  }
  have = 0;
  dirty_ = true;
}

int PagedCache::tokens_reserved(int seq) const { return n_blocks_of_[size_t(seq)] * block_size_; }

void PagedCache::sync_tables() {
  if (!dirty_) return;
  Tensor h = Tensor::borrow(table_.data(), {int64_t(table_.size())}, DType::I32, nullptr);
  table_dev_.copy_from(h);
  dirty_ = false;
}

kernels::gpu::PagedKV PagedCache::layer_view(int layer) const {
  kernels::gpu::PagedKV v;
  v.k_pool = static_cast<kernels::gpu::bf16*>(k_[size_t(layer)].data());
  v.v_pool = static_cast<kernels::gpu::bf16*>(v_[size_t(layer)].data());
  v.block_table = table_dev_.data_as<int32_t>();
  v.block_size = block_size_;
  v.max_blocks_per_seq = max_blocks_;
  v.n_kv_heads = n_kv_heads_;
  v.head_dim = head_dim_;
  return v;
}

}  // namespace qarl::gpu
