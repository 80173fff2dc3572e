// Causal grouped-query attention on the GPU over a paged bf16 KV cache: one forward kernel for
// the trainer's forward, the rollout's prefill and its decode steps (the GPU counterpart of
// qarl/kernels/cpu/attention.h), and the trainer's backward.
//
// Batch invariance (what exact mode rests on): the output row of a query at position p depends
// only on that query, p and the keys/values 0..p. Keys are visited in increasing order in
// blocks aligned to absolute key index, with an fp32 online softmax; blocks past p contribute
// exact zeros. Which other rows are in the launch, how a sequence was chunked, where its K/V
// pages live and the KV storage block size do not change one bit of the output.
// Tests: tests/kernels/cuda_attention_test.cpp. Launches are asynchronous on `stream`.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "qarl/kernels/cuda/launch.h"

namespace qarl::kernels::gpu {

using bf16 = uint16_t;  // bf16 bits in device memory

// K and V pools: [n_blocks][block_size][n_kv_heads * head_dim] bf16. Token t of sequence s is
// row t % block_size of block block_table[s * max_blocks_per_seq + t / block_size].
struct PagedKV {
  bf16* k_pool = nullptr;
  bf16* v_pool = nullptr;
  const int32_t* block_table = nullptr;  // device
  int block_size = 16;
  int max_blocks_per_seq = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
};

// Writes K/V rows k, v ([n, n_kv_heads*head_dim] bf16, row stride ld) of tokens
// (row_seq[i], row_pos[i]) (device arrays) into the pools.
void launch_kv_write(const PagedKV& kv, const bf16* k, const bf16* v, int64_t ld,
                     const int32_t* row_seq, const int32_t* row_pos, int64_t n, void* stream);

// A run of query rows of one sequence: rows first_row .. first_row+n_rows-1 of q are the
// sequence's tokens at positions first_pos .. first_pos+n_rows-1; keys 0..position.
struct AttnSegment {
  int32_t seq, first_row, n_rows, first_pos;
};

// Reusable device scratch for the launch descriptors and the backward's score matrices.
class AttentionWorkspace {
 public:
  AttentionWorkspace() = default;
  ~AttentionWorkspace();
  AttentionWorkspace(const AttentionWorkspace&) = delete;
  AttentionWorkspace& operator=(const AttentionWorkspace&) = delete;
  // Device pointer to at least `bytes`, grown as needed. The caller may overwrite it, so it
  // also forgets the remembered upload below.
  void* reserve(size_t bytes);
  // The forward's tile plan: a forward over many layers plans the same tiles for each, so it
  // is uploaded once and reused while unchanged (one host-to-device copy per forward instead
  // of one per layer; measured on the H200, the batch-1 decode step did not change: 3.19 vs
  // 3.16 ms, the launches of the other kernels dominate).
  bool holds_upload(const void* host, size_t bytes) const;
  void remember_upload(const void* host, size_t bytes);
  void* data() const { return ptr_; }
 private:
  void* ptr_ = nullptr;
  size_t size_ = 0;
  std::vector<unsigned char> uploaded_;  // host copy of what the buffer's start holds
};

// q: [R, q_stride] bf16 (n_heads*head_dim per row, head-major); out like q (out_stride) bf16;
// lse: [R * n_heads] fp32 natural-log sum of exp(scale * q.k), or null. Query head h reads
// KV head h / (n_heads / kv.n_kv_heads). Segments are host data (uploaded through ws).
void attention_forward(const bf16* q, int64_t q_stride, const std::vector<AttnSegment>& segs,
                       const PagedKV& kv, int n_heads, float scale, bf16* out,
                       int64_t out_stride, float* lse, AttentionWorkspace& ws, void* stream);

// Trainer backward. Sequence i has T = segs[i].n_rows tokens (positions 0..T-1) at rows
// first_row.. of q / out / dout (bf16, strides as named) and its K/V rows contiguous at
// k + kv_first_row[i]*kv_stride (and v likewise) (bf16). lse from the forward. Writes (not
// accumulates) dq [R, dq_stride] and dk, dv [rows, dkv_stride] fp32 at the same row indices.
void attention_backward(const std::vector<AttnSegment>& segs,
                        const std::vector<int64_t>& kv_first_row, const bf16* q,
                        int64_t q_stride, const bf16* k, const bf16* v, int64_t kv_stride,
                        const bf16* out, const bf16* dout, int64_t o_stride, const float* lse,
                        int n_heads, int n_kv_heads, int head_dim, float scale, float* dq,
                        int64_t dq_stride, float* dk, float* dv, int64_t dkv_stride,
                        AttentionWorkspace& ws, void* stream);

}  // namespace qarl::kernels::gpu
