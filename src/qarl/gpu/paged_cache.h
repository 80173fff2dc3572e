// The GPU model's K/V store: per layer one K and one V pool of fixed-size blocks, and per
// sequence slot a block table. The rollout grows sequences a block at a time; the trainer makes
// one cache per batch. Block allocation is host-side bookkeeping; the tables are uploaded
// before each forward (sync_tables()).
//
// Storage (rollout::KVCacheMode, the CPU engine's --kv-cache / rollout.kv_cache):
//   Auto  : bf16 rows of n_kv_heads * head_dim values, post quantizer (fake-quantized values);
//   FP8 / NVFP4 (native): the K/V quantizers' codes (kernels/cuda/kv_native.h), 1 byte or
//     0.5625 bytes per value, plus ONE layer's worth of bf16 blocks (the scratch). Before a
//     layer's attention, read_view() decodes that layer's live rows (tokens 0..length-1 of
//     every sequence with blocks) into the scratch, at the same block ids, and returns a bf16
//     view of it with the usual block table: the attention kernels are unchanged and read
//     bitwise what an Auto cache would hold (the codes decode exactly to the fake quantizer's
//     bf16 output). The codes are written from the rows BEFORE the quantizer (write_native).
#pragma once
#include <cstdint>
#include <vector>

#include "qarl/core/tensor.h"
#include "qarl/kernels/cuda/attention_gpu.h"
#include "qarl/kernels/cuda/kv_native.h"
#include "qarl/quant/quantizer.h"
#include "qarl/rollout/kv_cache.h"

namespace qarl::gpu {

using rollout::KVCacheMode;

class PagedCache {
 public:
  // n_blocks blocks of block_size tokens per layer; at most max_seqs sequence slots of at most
  // max_tokens tokens each. A native mode needs kv_dim % 16 == 0 and set_codecs() before use.
  PagedCache(int n_layers, int n_kv_heads, int head_dim, int block_size, int n_blocks,
             int max_seqs, int max_tokens, KVCacheMode mode = KVCacheMode::Auto);
  // Enough blocks for `n_tokens` tokens of every one of `max_seqs` sequences.
  static PagedCache for_sequences(int n_layers, int n_kv_heads, int head_dim, int max_seqs,
                                  int max_tokens, int block_size = 16,
                                  KVCacheMode mode = KVCacheMode::Auto);

  int block_size() const { return block_size_; }
  int max_seqs() const { return max_seqs_; }
  int free_blocks() const { return int(free_.size()); }
  KVCacheMode mode() const { return mode_; }
  bool native() const { return mode_ != KVCacheMode::Auto; }
  // Device bytes: everything (pools, scales, scratch); the per-token storage of every layer's
  // K and V (bf16 2*L*D*2, fp8 2*L*D, nvfp4 2*L*(D/2 + D/16)); the bf16 scratch (native only).
  int64_t bytes() const;
  int64_t bytes_per_token() const;
  int64_t scratch_bytes() const;

  // Native modes: the scales of every layer's K and V quantizer (the model's, e.g.
  // GpuModel::k_quantizers()). Each must be enabled in the cache's format with its amax
  // received: otherwise a usage Error naming the quantizer (as the CPU engine's), or an Error
  // naming the missing `_amax` tensor. Nothing is changed when it throws.
  void set_codecs(const std::vector<quant::TensorQuantizer>& k,
                  const std::vector<quant::TensorQuantizer>& v);

  // Makes room for tokens 0..n_tokens-1 of slot `seq`; Error (runtime) when out of blocks.
  // Native modes also record n_tokens as the rows of `seq` read_view() decodes.
  void reserve(int seq, int n_tokens);
  // Returns slot `seq`'s blocks to the pool.
  void release(int seq);
  int tokens_reserved(int seq) const;

  // Uploads the block tables (and, native, the decode list) when they changed (call before a
  // forward).
  void sync_tables();
  // Auto only: the bf16 pools of `layer` (kv_write and attention).
  kernels::gpu::PagedKV layer_view(int layer) const;

  // Native only: encodes rows k, v ([n, D] bf16, stride ld, BEFORE the K/V quantizer) of tokens
  // (row_seq[i], row_pos[i]) (device arrays) into layer `layer`'s codes.
  void write_native(int layer, const kernels::gpu::bf16* k, const kernels::gpu::bf16* v,
                    int64_t ld, const int32_t* row_seq, const int32_t* row_pos, int64_t n,
                    void* stream = nullptr);
  // What attention reads for `layer`: Auto: layer_view(layer); native: decodes the layer's
  // live rows into the scratch and returns its view (valid until the next read_view()).
  kernels::gpu::PagedKV read_view(int layer, void* stream = nullptr);

 private:
  kernels::gpu::NativeKV native_view(int layer) const;

  int n_layers_, kv_dim_, n_kv_heads_, head_dim_, block_size_, n_blocks_, max_seqs_, max_blocks_;
  KVCacheMode mode_;
  std::vector<Tensor> k_, v_;              // Auto: bf16 pools; native: code pools (U8)
  std::vector<Tensor> k_scales_, v_scales_;  // NVFP4: block-scale codes (U8)
  Tensor k_scratch_, v_scratch_;           // native: one layer of bf16 blocks
  struct Codec { float s = 0, inv = 0; kernels::gpu::Nvfp4Scalars nv{}; };
  std::vector<Codec> k_codec_, v_codec_;   // native: per layer; empty until set_codecs()
  std::vector<int32_t> table_;             // [max_seqs * max_blocks], -1 = none
  std::vector<int> n_blocks_of_;           // per slot
  std::vector<int> len_;                   // per slot: tokens reserved (native decode rows)
  std::vector<int32_t> free_;              // free block ids (a stack)
  std::vector<int32_t> entries_;           // native: the count, then (block, rows) pairs of the live rows
  Tensor table_dev_, entries_dev_;
  bool dirty_ = true, entries_dirty_ = true;
};

}  // namespace qarl::gpu
