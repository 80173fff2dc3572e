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

// Overrides for `qarl bench` (perf/attention_cases.cpp) to compare layouts; 0 (the default)
// leaves the choice to the drivers. Not for use elsewhere: no value changes any result bit
// of the forward; the backward's results agree within its test bounds.
struct Tuning {
  int fwd_warps = 0;   // 4 or 8 warps (tiles of 64 or 128 (query row, head) pairs)
  int fwd_pipe = -1;   // 0: the forward without the next block's Q K^T overlapped
  int fwd_wide = -1;   // 0: tiles of 128 by 8 warps of 16 rows, not 4 warps of 32
  int fwd_wgmma = -1;  // 0: the tiles of 128 on mma.sync even where the wgmma kernel applies
  int dkdv_warps = 0;  // 4 or 8 warps (64 or 128 keys per CTA)
  int dkdv_wgmma = -1; // 0: the mma.sync dk/dv kernel even where the wgmma one applies; 1 / -1: wgmma where it applies
  int dq_wgmma = -1;   // the same for the dq kernel
  int dq_warps = 0;    // 4 or 8 warps (1 or 2 query tiles per CTA)
  bool bwd_skip_dq = false;  // leave dq unwritten (to time the other kernels alone)
};
Tuning& tuning();

// One CTA of the forward: rows first_row .. first_row+n_rows-1 of one sequence (positions
// first_pos..), all q heads of KV head kv_head. Tile row m is (query row m / group, q head
// kv_head*group + m % group); a tile holds up to 16 * tile_warps of them.
struct Tile {
  int32_t seq, first_row, n_rows, first_pos, kv_head, pad0, pad1, pad2;
};

// tile_warps 4: tiles of 64 rows (attention_forward.cu); 8: tiles of 128 rows
// (attention_forward_wide.cu, 4 warps of 32 rows, unless tuning().fwd_wide == 0).
void launch_forward_tiles(const Tile* tiles, int n_tiles, int tile_warps, const bf16* q,
                          int64_t q_stride, const PagedKV& kv, int group, float scale,
                          bf16* out, int64_t out_stride, float* lse, void* stream);
// The tiles of 128 on wgmma (attention_forward_wgmma.cu): head_dim 128, an sm_90 device.
bool forward_wgmma_usable(int head_dim);
void launch_forward_wgmma(const Tile* tiles, int n_tiles, const bf16* q, int64_t q_stride,
                          const PagedKV& kv, int group, float scale_log2, bf16* out,
                          int64_t out_stride, float* lse, cudaStream_t stream);
void launch_forward_wide(const Tile* tiles, int n_tiles, const bf16* q, int64_t q_stride,
                         const PagedKV& kv, int group, float scale_log2, bf16* out,
                         int64_t out_stride, float* lse, cudaStream_t stream);

// The fused backward (attention_backward.cpp plans; attention_backward_dkdv.cu and
// attention_backward_dq.cu compute). One work item of the dk/dv or the dq kernel: sequence
// rows q_row0..q_row0+T-1 (positions 0..T-1), its K/V rows from kv_row0, KV head kv_head;
// block is the key block (dk/dv: keys block*16*warps..) or the query tiles (dq: tiles
// block*warps/4.. of kTileRows/group rows, all heads of the group). ds_off: where the (sequence, KV head)'s
// dS tiles start in BwdArgs::ds (elements).
struct BwdTile {
  int32_t q_row0, T, kv_head, block;
  int64_t kv_row0, ds_off;
};

// dS of one (sequence, KV head): tiles [query tile qt][key block kb] of
// [kKeyBlock keys][kTileRows columns] bf16 (a column is a (query row, q head) pair of the
// tile, as in the forward), for n_qt = ceil(T / (kTileRows/group)) query tiles and
// n_kb = ceil(T / kKeyBlock) key blocks. The dk/dv kernel writes every tile at or below the
// diagonal (zeros where the causal mask or a skipped step makes dS 0); the dq kernel reads
// the same ones.
inline constexpr int64_t kDsTile = int64_t(kKeyBlock) * kTileRows;
__host__ __device__ inline int64_t ds_tiles_per_head(int T, int group) {
  const int rpt = kTileRows / group;
  return int64_t((T + rpt - 1) / rpt) * ((T + kKeyBlock - 1) / kKeyBlock);
}

// Everything else the backward kernels read; pointers are device memory. vec_*: that
// operand's base is 16-byte aligned and its stride a multiple of 8 (cp.async rows).
struct BwdArgs {
  const bf16 *q, *k, *v, *out, *dout;
  const float* lse;
  // [rows][n_heads] {lse * log2(e), sum_d dout*out}: written by the stats kernel, read by
  // the dk/dv kernel.
  float2* stats;
  bf16* ds;  // the dS tiles (above): written by the dk/dv kernel, read by the dq kernel
  float *dq, *dk, *dv;
  int64_t q_stride, kv_stride, o_stride, dq_stride, dkv_stride;
  int64_t stat_rows;  // rows 0..stat_rows-1 of stats
  int n_heads, group;
  float scale, scale_log2;
  bool vec_q, vec_do, vec_kv;
};

// In this order on one stream: stats, dk/dv (reads stats, writes dS), dq (reads dS).
void launch_backward_stats(const BwdArgs& a, int head_dim, void* stream);
void launch_backward_dkdv(const BwdTile* tiles, int n_tiles, int warps, const BwdArgs& a,
                          int head_dim, void* stream);
// The dk/dv and dq kernels on wgmma (attention_backward_wgmma.cu): head_dim 128, the 4-warp
// tiles (64 keys, one query tile per CTA), an sm_90 device; the same results as
// launch_backward_dkdv / launch_backward_dq.
bool backward_dkdv_wgmma_usable(int head_dim);
void launch_backward_dkdv_wgmma(const BwdTile* tiles, int n_tiles, const BwdArgs& a, void* stream);
void launch_backward_dq_wgmma(const BwdTile* tiles, int n_tiles, const BwdArgs& a, void* stream);
void launch_backward_dq(const BwdTile* tiles, int n_tiles, int warps, const BwdArgs& a,
                        int head_dim, void* stream);

}  // namespace qarl::kernels::gpu::attn
