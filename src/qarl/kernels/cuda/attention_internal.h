// Launchers shared by the attention files (attention_forward.cu, attention_backward.cu,
// kv_write.cu) and their host drivers (attention_workspace.cpp, attention_backward.cpp).
// CUDA builds only. Plain arguments; the drivers validate and plan.
#pragma once
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

// Backward helpers (attention_backward.cu). Rows of [T, n_heads*hd] bf16 (stride ld) to fp32
// head-major [n_heads][T][hd].
void launch_to_head_major(const bf16* x, int64_t ld, int T, int n_heads, int head_dim,
                          float* y, void* stream);
// dsum[h][i] = sum_d dout*out (fp32, fixed order).
void launch_row_dot(const bf16* dout, const bf16* out, int64_t ld, int T, int n_heads,
                    int head_dim, float* dsum, void* stream);
// In place over [n_heads][T][T]: S (scaled scores) -> P = exp(S - lse) (0 above the diagonal),
// dP -> dS = P * (dP - dsum). lse rows at lse[(row0 + i) * n_heads + h].
void launch_softmax_grad(float* s, float* dp, const float* lse, int64_t row0, const float* dsum,
                         int T, int n_heads, void* stream);

}  // namespace qarl::kernels::gpu::attn
