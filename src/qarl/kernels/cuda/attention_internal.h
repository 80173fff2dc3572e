// Launchers shared by the attention files (attention_forward.cu, attention_backward_*.cu,
// kv_write.cu) and their host drivers (attention_workspace.cpp, attention_backward.cpp).
// CUDA builds only. Plain arguments; the drivers validate and plan.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "qarl/kernels/cuda/attention_gpu.h"

namespace qarl::kernels::gpu::attn {

inline constexpr int kTileRows = 64;  // (query row, head) pairs per CTA: 4 warps x 16
inline constexpr int kKeyBlock = 64;  // keys per block, aligned to absolute key index

// One CTA of the forward: rows first_row .. first_row+n_rows-1 of one sequence (positions
// first_pos..), all q heads of KV head kv_head. Tile row m is (query row m / group, q head
// kv_head*group + m % group).
struct Tile {
  int32_t seq, first_row, n_rows, first_pos, kv_head, pad0, pad1, pad2;
};

void launch_forward_tiles(const Tile* tiles, int n_tiles, const bf16* q, int64_t q_stride,
                          const PagedKV& kv, int group, float scale, bf16* out,
                          int64_t out_stride, float* lse, void* stream);

// The fused backward (attention_backward.cpp plans, attention_backward_dq.cu and
// attention_backward_dkdv.cu compute). One work item of either kernel: sequence rows q_row0..
// q_row0+T-1 (positions 0..T-1), its K/V rows from kv_row0, KV head kv_head; block is the
// query tile (dq: rows block*(kTileRows/group).., all heads of the group) or the key block
// (dk/dv: keys block*kKeyBlock..).
struct BwdTile {
  int32_t q_row0, T, kv_head, block;
  int64_t kv_row0;
};

// Everything else the two backward kernels read; pointers are device memory. vec_*: that
// operand's base is 16-byte aligned and its stride a multiple of 8 (cp.async rows).
struct BwdArgs {
  const bf16 *q, *k, *v, *out, *dout;
  const float* lse;
  // [rows][n_heads] {lse * log2(e), sum_d dout*out}: written by the dq kernel for its rows,
  // read by the dk/dv kernel.
  float2* stats;
  float *dq, *dk, *dv;
  int64_t q_stride, kv_stride, o_stride, dq_stride, dkv_stride;
  int n_heads, group;
  float scale, scale_log2;
  bool vec_q, vec_do, vec_kv;
};

// dq (and dsum) first, then dk/dv (which read dsum); same stream.
void launch_backward_dq(const BwdTile* tiles, int n_tiles, const BwdArgs& a, int head_dim,
                        void* stream);
void launch_backward_dkdv(const BwdTile* tiles, int n_tiles, const BwdArgs& a, int head_dim,
                          void* stream);

}  // namespace qarl::kernels::gpu::attn
