// dK and dV of the fused attention backward (plan: attention_backward.cpp), FlashAttention-2
// style on tensor cores (mma.sync m16n8k16 bf16, fp32 accumulation). One CTA per (sequence,
// KV head, block of 16*WARPS keys); its WARPS warps own 16 keys each and keep dK, dV for them
// in registers.
// The CTA walks the query tiles at or after its key block in increasing order; a query tile
// is 64 columns, each a (query row, q head of the group) pair, as in the forward's tiles, so
// the group's heads are summed inside the mma's k dimension. Q and dO tiles stream through
// shared memory (cp.async, two stages). Per tile and 16-column chunk, transposed (keys are the
// mma rows):
//   S^T = K Q^T, P^T = exp(scale*S^T - lse) (0 where key > query), dP^T = V dO^T,
//   dS^T = P^T * (dP^T - dsum), dV += P^T dO, dK += dS^T Q     (P, dS rounded to bf16)
// and at the end dk = scale * dK, dv = dV, written as fp32 for the keys of the sequence.
// dS^T (bf16, the very values of the dK product) also goes to the dS tiles (layout:
// attention_internal.h) for the dq kernel, which runs next: dQ = dS K without recomputing P
// and dP (5 GEMM-sized products in all instead of 7).
// lse*log2(e) and dsum come from the stats kernel (a.stats). No atomics: each dK/dV element is
// owned by one thread and summed in a fixed order, so the result is bitwise reproducible.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "qarl/kernels/cuda/attention_internal.h"
#include "qarl/kernels/cuda/attention_mma.cuh"
#include "qarl/kernels/cuda/launch.h"
#include "qarl/kernels/cuda/launch_config.cuh"

namespace qarl::kernels::gpu::attn {
namespace {

constexpr int kCols = kTileRows;  // (query row, head) columns per query tile

__device__ __forceinline__ void cp_async8(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int n = valid ? 8 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}

template <int D, int WARPS>
constexpr size_t dkdv_smem_bytes() {
  // K, V of the key block; 2 stages x (Q, dO) of a query tile; 2 stages x stats; column table.
  return size_t(2 * 16 * WARPS + 2 * 2 * kCols) * (D + 8) * sizeof(uint16_t) +
         2 * kCols * sizeof(float2) + kCols * sizeof(int);
}

// NC chunks of 16 columns per step share the K/V fragment loads. Measured on the H200 at
// 8 x 1024, hd 128: NC 2 gave 0.72 ms for the whole backward, NC 1 0.78-0.83 ms.
template <int D, int NC, int WARPS>
__global__ void __launch_bounds__(WARPS * 32)
    attn_bwd_dkdv(const BwdTile* __restrict__ tiles, const BwdArgs a) {
  constexpr int kThreads = WARPS * 32;
  constexpr int kKeys = 16 * WARPS;  // keys per CTA
  constexpr int LDS = D + 8;  // smem row stride (elements): conflict-free ldmatrix
  constexpr int KT = D / 16;  // k-steps over head_dim
  constexpr int NT = D / 8;   // n-tiles of dK, dV
  constexpr int CH = D / 8;   // 16-byte chunks per row
  extern __shared__ __align__(16) uint16_t smem[];
  uint16_t* ks = smem;
  uint16_t* vs = ks + kKeys * LDS;
  uint16_t* q_stage = vs + kKeys * LDS;  // stage st: Q at + st*2*kCols*LDS, dO after it
  float2* stat_stage = reinterpret_cast<float2*>(q_stage + 2 * 2 * kCols * LDS);
  int* col_row = reinterpret_cast<int*>(stat_stage + 2 * kCols);  // column -> row in tile

  const BwdTile t = tiles[blockIdx.x];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
  const int group = a.group, H = a.n_heads;
  const int rpt = kCols / group, n_cols = rpt * group;
  const int key_first = t.block * kKeys, warp_key0 = key_first + warp * 16;
  const int n_qt = (t.T + rpt - 1) / rpt, qt0 = key_first / rpt;
  const int64_t ds_qt = int64_t((t.T + kKeyBlock - 1) / kKeyBlock) * kDsTile;  // per query tile
  // This thread's two dS rows (keys warp_key0 + g, + 8: one key block) in query tile 0.
  bf16* ds_row0 = a.ds + t.ds_off + int64_t(warp_key0 / kKeyBlock) * kDsTile +
                  (warp_key0 % kKeyBlock + g) * kCols + 2 * tq;

  // A column past n_cols (group does not divide kCols) maps to a position past any sequence.
  for (int c = threadIdx.x; c < kCols; c += kThreads)
    col_row[c] = c < n_cols ? c / group : (1 << 29);

  const bf16* kbase = a.k + t.kv_row0 * a.kv_stride + int64_t(t.kv_head) * D;
  const bf16* vbase = a.v + t.kv_row0 * a.kv_stride + int64_t(t.kv_head) * D;
  for (int c = threadIdx.x; c < kKeys * CH; c += kThreads) {
    const int r = c / CH, col = (c % CH) * 8, key = key_first + r;
    const bool ok = key < t.T;  // keys past the sequence: zeros, their rows are not written
    const int64_t off = int64_t(ok ? key : 0) * a.kv_stride + col;
    copy8(ks + r * LDS + col, kbase + off, ok, a.vec_kv, a.k);
    copy8(vs + r * LDS + col, vbase + off, ok, a.vec_kv, a.v);
  }
  auto load_tile = [&](int qt, int st) {
    uint16_t* qs = q_stage + st * 2 * kCols * LDS;
    uint16_t* dos = qs + kCols * LDS;
    for (int c = threadIdx.x; c < kCols * CH; c += kThreads) {
      const int cl = c / CH, dc = (c % CH) * 8, p = qt * rpt + cl / group;
      const bool ok = cl < n_cols && p < t.T;
      const int64_t row = int64_t(t.q_row0) + (ok ? p : 0);
      const int64_t hc = int64_t(t.kv_head * group + cl % group) * D + dc;
      copy8(qs + cl * LDS + dc, a.q + row * a.q_stride + hc, ok, a.vec_q, a.q);
      copy8(dos + cl * LDS + dc, a.dout + row * a.o_stride + hc, ok, a.vec_do, a.dout);
    }
    float2* stats = stat_stage + st * kCols;
    for (int c = threadIdx.x; c < kCols; c += kThreads) {
      const int p = qt * rpt + c / group;
      const bool ok = c < n_cols && p < t.T;
      const int64_t i = (int64_t(t.q_row0) + (ok ? p : 0)) * H + t.kv_head * group + c % group;
      cp_async8(stats + c, ok ? static_cast<const void*>(a.stats + i) : a.stats, ok);
    }
    cp_async_commit();
  };

  float dk[NT][4], dv[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[n][e] = dv[n][e] = 0.0f;

  load_tile(qt0, 0);  // one group with the K/V copies above
  for (int qt = qt0; qt < n_qt; ++qt) {
    const int st = (qt - qt0) & 1;
    if (qt + 1 < n_qt) {
      load_tile(qt + 1, st ^ 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const uint16_t* qs = q_stage + st * 2 * kCols * LDS;
    const uint16_t* dos = qs + kCols * LDS;
    const float2* stats = stat_stage + st * kCols;
    const int pos0 = qt * rpt;  // position of the tile's row 0
    bf16* ds_row = ds_row0 + int64_t(qt) * ds_qt;
#pragma unroll
    for (int c = 0; c < kCols / 16; c += NC) {  // NC chunks of 16 columns per step
      // Warp-uniform skips: the step holds no valid column, or every column's position is
      // before the warp's first key (all of P is 0), or the warp has no key of the sequence.
      if (c * 16 >= n_cols || warp_key0 >= t.T) break;
      if (pos0 + min(c * 16 + 16 * NC - 1, n_cols - 1) / group < warp_key0) {
        // P = dS = 0 here; the dq kernel reads zeros.
#pragma unroll
        for (int j = 0; j < NC; ++j) {
          uint32_t* w0 = reinterpret_cast<uint32_t*>(ds_row + (c + j) * 16);
          uint32_t* w1 = reinterpret_cast<uint32_t*>(ds_row + 8 * kCols + (c + j) * 16);
          w0[0] = w0[4] = w1[0] = w1[4] = 0u;
        }
        continue;
      }
      float s[2 * NC][4], dp[2 * NC][4];
#pragma unroll
      for (int n = 0; n < 2 * NC; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.0f;
      // A: this warp's 16 K (V) rows; B (k = head_dim, n = column) from the [column][d] rows.
      const int ar = warp * 16 + (lane & 15), ac = (lane >> 4) * 8;
      const int br = c * 16 + (lane >> 4) * 8 + (lane & 7), bc = ((lane >> 3) & 1) * 8;
#pragma unroll
      for (int kk = 0; kk < KT; ++kk) {
        uint32_t ka[4], va[4], qb[4], db[4];
        ldmatrix_x4(ka, ks + ar * LDS + kk * 16 + ac);
#pragma unroll
        for (int j = 0; j < NC; ++j) {
          ldmatrix_x4(qb, qs + (br + j * 16) * LDS + kk * 16 + bc);
          mma_bf16(s[2 * j], ka, qb[0], qb[1]);
          mma_bf16(s[2 * j + 1], ka, qb[2], qb[3]);
        }
        ldmatrix_x4(va, vs + ar * LDS + kk * 16 + ac);
#pragma unroll
        for (int j = 0; j < NC; ++j) {
          ldmatrix_x4(db, dos + (br + j * 16) * LDS + kk * 16 + bc);
          mma_bf16(dp[2 * j], va, db[0], db[1]);
          mma_bf16(dp[2 * j + 1], va, db[2], db[3]);
        }
      }
      // P^T, dS^T as A fragments, one per 16 columns (k-step). Steps of valid columns whose
      // positions are all at or after the warp's last key skip the causal mask.
      uint32_t pf[NC][4], dsf[NC][4];
      auto softmax_grad = [&](auto masked) {
#pragma unroll
        for (int n = 0; n < 2 * NC; ++n) {
          float p[4], d[4];
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int col = c * 16 + n * 8 + 2 * tq + (e & 1);
            const float2 sd = stats[col];
            p[e] = fast_exp2(__fmaf_rn(s[n][e], a.scale_log2, -sd.x));
            if constexpr (decltype(masked)::value) {
              const int key = warp_key0 + g + 8 * (e >> 1), pos = pos0 + col_row[col];
              p[e] = key <= pos && pos < t.T ? p[e] : 0.0f;
            }
            d[e] = p[e] * (dp[n][e] - sd.y);
          }
          pf[n >> 1][(n & 1) * 2 + 0] = pack_bf16(p[0], p[1]);
          pf[n >> 1][(n & 1) * 2 + 1] = pack_bf16(p[2], p[3]);
          dsf[n >> 1][(n & 1) * 2 + 0] = pack_bf16(d[0], d[1]);
          dsf[n >> 1][(n & 1) * 2 + 1] = pack_bf16(d[2], d[3]);
        }
      };
      const int last_col = c * 16 + 16 * NC - 1;
      if (last_col < n_cols && pos0 + last_col / group < t.T &&
          warp_key0 + 15 <= pos0 + (c * 16) / group)
        softmax_grad(std::false_type{});
      else
        softmax_grad(std::true_type{});
      // dS^T out for the dq kernel: rows key g, g+8; columns 2tq.., 2tq+8.. of the chunk.
#pragma unroll
      for (int j = 0; j < NC; ++j) {
        uint32_t* w0 = reinterpret_cast<uint32_t*>(ds_row + (c + j) * 16);
        uint32_t* w1 = reinterpret_cast<uint32_t*>(ds_row + 8 * kCols + (c + j) * 16);
        w0[0] = dsf[j][0];
        w1[0] = dsf[j][1];
        w0[4] = dsf[j][2];
        w1[4] = dsf[j][3];
      }
      // dV += P^T dO, dK += dS^T Q: B (k = column, n = d) from the [column][d] rows, transposed.
#pragma unroll
      for (int j = 0; j < NC; ++j) {
        const int tr = (c + j) * 16 + (lane & 15), tc = (lane >> 4) * 8;
#pragma unroll
        for (int np = 0; np < NT / 2; ++np) {
          uint32_t r[4];
          ldmatrix_x4_trans(r, dos + tr * LDS + np * 16 + tc);
          mma_bf16(dv[2 * np], pf[j], r[0], r[1]);
          mma_bf16(dv[2 * np + 1], pf[j], r[2], r[3]);
          ldmatrix_x4_trans(r, qs + tr * LDS + np * 16 + tc);
          mma_bf16(dk[2 * np], dsf[j], r[0], r[1]);
          mma_bf16(dk[2 * np + 1], dsf[j], r[2], r[3]);
        }
      }
    }
    __syncthreads();  // this stage is refilled by the next iteration's prefetch
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int key = warp_key0 + g + 8 * i;
    if (key >= t.T) continue;
    const int64_t off = (t.kv_row0 + key) * a.dkv_stride + int64_t(t.kv_head) * D + 2 * tq;
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      a.dk[off + n * 8] = dk[n][2 * i] * a.scale;
      a.dk[off + n * 8 + 1] = dk[n][2 * i + 1] * a.scale;
      a.dv[off + n * 8] = dv[n][2 * i];
      a.dv[off + n * 8 + 1] = dv[n][2 * i + 1];
    }
  }
}

template <int D, int WARPS>
void launch(const BwdTile* tiles, int n_tiles, const BwdArgs& a, cudaStream_t st) {
  constexpr size_t smem = dkdv_smem_bytes<D, WARPS>();
  opt_in_dynamic_smem<attn_bwd_dkdv<D, 2, WARPS>>(smem);
  attn_bwd_dkdv<D, 2, WARPS><<<n_tiles, WARPS * 32, smem, st>>>(tiles, a);
}

template <int D>
void launch_d(int warps, const BwdTile* tiles, int n_tiles, const BwdArgs& a, cudaStream_t st) {
  if (warps == 8)
    launch<D, 8>(tiles, n_tiles, a, st);
  else
    launch<D, 4>(tiles, n_tiles, a, st);
}

}  // namespace

void launch_backward_dkdv(const BwdTile* tiles, int n_tiles, int warps, const BwdArgs& a,
                          int head_dim, void* stream) {
  if (n_tiles == 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  switch (head_dim) {
    case 128: launch_d<128>(warps, tiles, n_tiles, a, st); break;
    case 64: launch_d<64>(warps, tiles, n_tiles, a, st); break;
    case 32: launch_d<32>(warps, tiles, n_tiles, a, st); break;
    default: launch_d<16>(warps, tiles, n_tiles, a, st); break;
  }
  check_last_launch("attention backward (dk, dv)");
}

}  // namespace qarl::kernels::gpu::attn
