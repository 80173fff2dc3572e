// The GPU model's K/V store: per layer one K and one V pool of fixed-size blocks (bf16 rows of
// n_kv_heads * head_dim, post quantizer), and per sequence slot a block table. The rollout
// grows sequences a block at a time; the trainer makes one cache per batch. Block allocation
// is host-side bookkeeping; the tables are uploaded before each forward (sync_tables()).
#pragma once
#include <cstdint>
#include <vector>

#include "qarl/core/tensor.h"
#include "qarl/kernels/cuda/attention_gpu.h"

namespace qarl::gpu {

class PagedCache {
 public:
  // n_blocks blocks of block_size tokens per layer; at most max_seqs sequence slots of at most
  // max_tokens tokens each.
  PagedCache(int n_layers, int n_kv_heads, int head_dim, int block_size, int n_blocks,
             int max_seqs, int max_tokens);
  // Enough blocks for `n_tokens` tokens of every one of `max_seqs` sequences.
  static PagedCache for_sequences(int n_layers, int n_kv_heads, int head_dim, int max_seqs,
                                  int max_tokens, int block_size = 16);

  int block_size() const { return block_size_; }
  int max_seqs() const { return max_seqs_; }
  int free_blocks() const { return int(free_.size()); }
  int64_t bytes() const;

  // Makes room for tokens 0..n_tokens-1 of slot `seq`; Error (runtime) when out of blocks.
  void reserve(int seq, int n_tokens);
  // Returns slot `seq`'s blocks to the pool.
  void release(int seq);
  int tokens_reserved(int seq) const;

  // Uploads the block tables when they changed (call before a forward).
  void sync_tables();
  kernels::gpu::PagedKV layer_view(int layer) const;

 private:
  int n_layers_, kv_dim_, n_kv_heads_, head_dim_, block_size_, n_blocks_, max_seqs_, max_blocks_;
  std::vector<Tensor> k_, v_;
  std::vector<int32_t> table_;             // [max_seqs * max_blocks], -1 = none
  std::vector<int> n_blocks_of_;           // per slot
  std::vector<int32_t> free_;              // free block ids (a stack)
  Tensor table_dev_;
  bool dirty_ = true;
};

}  // namespace qarl::gpu
