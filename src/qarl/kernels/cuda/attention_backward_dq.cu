// dQ of the fused attention backward (plan: attention_backward.cpp), FlashAttention-2 style on
// tensor cores (mma.sync m16n8k16 bf16, fp32 accumulation), laid out like the forward
// (attention_forward.cu): one CTA per tile of up to 64 (query row, q head) pairs of one
// sequence and one KV head, 4 warps of 16 tile rows, Q and dO held as A fragments in registers,
// K and V streamed through shared memory in blocks of 64 keys (cp.async, two stages).
// Per key block and 16-key chunk (P needs no running max in the backward: lse is known):
//   S = Q K^T, P = exp(scale*S - lse) (0 past the row's position), dP = dO V^T,
//   dS = P * (dP - dsum), dQ += dS K        (dS rounded to bf16 for the mma)
// and at the end dq = scale * dQ, written as fp32. dsum = sum_d dO*O is computed here from the
// same fragments and stored with lse*log2(e) in a.stats for the dK/dV kernel, which runs next.
// Deterministic: every sum runs in a fixed order (keys ascending, fixed quad shuffles).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "qarl/kernels/cuda/attention_internal.h"
#include "qarl/kernels/cuda/attention_mma.cuh"
#include "qarl/kernels/cuda/launch.h"

namespace qarl::kernels::gpu::attn {
namespace {

constexpr int kThreads = 128;  // 4 warps, 16 tile rows each
constexpr float kLog2e = 1.4426950408889634f;

template <int D>
constexpr size_t dq_smem_bytes() {
  return size_t(2) * 2 * kKeyBlock * (D + 8) * sizeof(uint16_t);  // 2 stages x (K, V)
}

// acc + lo(d)*lo(o) + hi(d)*hi(o) for two packed bf16 pairs.
__device__ __forceinline__ float dot2(uint32_t d, uint32_t o, float acc) {
  acc = __fmaf_rn(__uint_as_float(d << 16), __uint_as_float(o << 16), acc);
  return __fmaf_rn(__uint_as_float(d & 0xffff0000u), __uint_as_float(o & 0xffff0000u), acc);
}

// NC chunks of 16 keys per step: 1 (measured on the H200 at 8 x 1024, hd 128: 2 and a
// 3-CTAs-per-SM register cap were within the run-to-run noise of +-5%).
template <int D, int NC>
__global__ void __launch_bounds__(kThreads, 1)
    attn_bwd_dq(const BwdTile* __restrict__ tiles, const BwdArgs a) {
  constexpr int LDS = D + 8;  // smem row stride (elements): conflict-free ldmatrix
  constexpr int KT = D / 16;  // k-steps over head_dim
  constexpr int NT = D / 8;   // n-tiles of dQ
  extern __shared__ __align__(16) uint16_t smem[];

  const BwdTile t = tiles[blockIdx.x];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
  const int group = a.group, H = a.n_heads;
  const int rpt = kTileRows / group;
  const int r_first = t.block * rpt;  // position of the tile's first row
  const int n_rows = min(rpt, t.T - r_first);
  const int n_m = n_rows * group;  // valid tile rows

  // This thread's two tile rows: warp*16 + g and + 8 (the mma C-fragment rows).
  int pos[2];
  bool valid[2];
  int64_t row[2];
  int head[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int m = warp * 16 + g + 8 * i;
    valid[i] = m < n_m;
    const int rl = valid[i] ? m / group : 0;
    pos[i] = valid[i] ? r_first + rl : -1;  // -1: no key is visible, P = 0
    row[i] = int64_t(t.q_row0) + r_first + rl;
    head[i] = t.kv_head * group + (valid[i] ? m % group : 0);
  }
  const int last_pos = r_first + n_rows - 1;
  const int n_kb = last_pos / kKeyBlock + 1;
  const int warp_last_m = min(warp * 16 + 15, n_m - 1);
  const int warp_pos = warp_last_m >= warp * 16 ? r_first + warp_last_m / group : -1;
  const bool warp_full = warp * 16 + 15 < n_m;  // all 16 rows valid
  const int warp_min_pos = r_first + (warp * 16) / group;

  // Q and dO as A fragments straight from global memory (read once per tile); O only for dsum.
  uint32_t qf[KT][4], df[KT][4];
  float dsum[2] = {0.0f, 0.0f};
#pragma unroll
  for (int kk = 0; kk < KT; ++kk)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      uint32_t q0 = 0, q1 = 0, d0 = 0, d1 = 0, o0 = 0, o1 = 0;
      if (valid[i]) {
        const int col = head[i] * D + kk * 16 + 2 * tq;
        const bf16* qr = a.q + row[i] * a.q_stride + col;
        const bf16* dr = a.dout + row[i] * a.o_stride + col;
        const bf16* orr = a.out + row[i] * a.o_stride + col;
        q0 = *reinterpret_cast<const uint32_t*>(qr);
        q1 = *reinterpret_cast<const uint32_t*>(qr + 8);
        d0 = *reinterpret_cast<const uint32_t*>(dr);
        d1 = *reinterpret_cast<const uint32_t*>(dr + 8);
        o0 = *reinterpret_cast<const uint32_t*>(orr);
        o1 = *reinterpret_cast<const uint32_t*>(orr + 8);
      }
      qf[kk][i] = q0;
      qf[kk][2 + i] = q1;
      df[kk][i] = d0;
      df[kk][2 + i] = d1;
      dsum[i] = dot2(d1, o1, dot2(d0, o0, dsum[i]));
    }
  float lse2[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {  // the quad's four partial sums, same bits in every lane
    dsum[i] += __shfl_xor_sync(0xffffffffu, dsum[i], 1);
    dsum[i] += __shfl_xor_sync(0xffffffffu, dsum[i], 2);
    lse2[i] = valid[i] ? a.lse[row[i] * H + head[i]] * kLog2e : 0.0f;
    if (valid[i] && tq == 0) a.stats[row[i] * H + head[i]] = make_float2(lse2[i], dsum[i]);
  }

  const bf16* kbase = a.k + t.kv_row0 * a.kv_stride + int64_t(t.kv_head) * D;
  const bf16* vbase = a.v + t.kv_row0 * a.kv_stride + int64_t(t.kv_head) * D;
  auto load_block = [&](int kb, int st) {
    uint16_t* ks = smem + st * 2 * kKeyBlock * LDS;
    uint16_t* vs = ks + kKeyBlock * LDS;
    constexpr int CH = D / 8;  // 16-byte chunks per row
    for (int c = threadIdx.x; c < kKeyBlock * CH; c += kThreads) {
      const int r = c / CH, col = (c % CH) * 8, key = kb * kKeyBlock + r;
      const bool ok = key <= last_pos;  // later keys: zeros (finite), masked anyway
      const int64_t off = int64_t(ok ? key : 0) * a.kv_stride + col;
      copy8(ks + r * LDS + col, kbase + off, ok, a.vec_kv, a.k);
      copy8(vs + r * LDS + col, vbase + off, ok, a.vec_kv, a.v);
    }
    cp_async_commit();
  };

  float acc[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;

  load_block(0, 0);
  for (int kb = 0; kb < n_kb; ++kb) {
    if (kb + 1 < n_kb) {
      load_block(kb + 1, (kb + 1) & 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const uint16_t* ks = smem + (kb & 1) * 2 * kKeyBlock * LDS;
    const uint16_t* vs = ks + kKeyBlock * LDS;
#pragma unroll
    for (int c = 0; c < kKeyBlock / 16; c += NC) {  // NC chunks of 16 keys per step
      const int key0 = kb * kKeyBlock + c * 16;
      if (key0 > warp_pos) break;  // warp-uniform: the step is past all of the warp's rows
      float s[2 * NC][4], dp[2 * NC][4];
#pragma unroll
      for (int n = 0; n < 2 * NC; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.0f;
      // B fragments of K^T and V^T (k = head_dim, n = key) from the [key][d] rows.
      const int br = c * 16 + (lane >> 4) * 8 + (lane & 7), bc = ((lane >> 3) & 1) * 8;
#pragma unroll
      for (int kk = 0; kk < KT; ++kk)
#pragma unroll
        for (int j = 0; j < NC; ++j) {
          uint32_t kb4[4], vb4[4];
          ldmatrix_x4(kb4, ks + (br + j * 16) * LDS + kk * 16 + bc);
          ldmatrix_x4(vb4, vs + (br + j * 16) * LDS + kk * 16 + bc);
          mma_bf16(s[2 * j], qf[kk], kb4[0], kb4[1]);
          mma_bf16(s[2 * j + 1], qf[kk], kb4[2], kb4[3]);
          mma_bf16(dp[2 * j], df[kk], vb4[0], vb4[1]);
          mma_bf16(dp[2 * j + 1], df[kk], vb4[2], vb4[3]);
        }
      // dS as A fragments, one per 16 keys (k-step). Steps wholly at or before every row of
      // the warp (all rows valid) skip the causal mask.
      uint32_t dsf[NC][4];
      auto softmax_grad = [&](auto masked) {
#pragma unroll
        for (int n = 0; n < 2 * NC; ++n) {
          float d[4];
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int i = e >> 1, key = key0 + n * 8 + 2 * tq + (e & 1);
            float p = fast_exp2(__fmaf_rn(s[n][e], a.scale_log2, -lse2[i]));
            if constexpr (decltype(masked)::value) p = key <= pos[i] ? p : 0.0f;
            d[e] = p * (dp[n][e] - dsum[i]);
          }
          dsf[n >> 1][(n & 1) * 2 + 0] = pack_bf16(d[0], d[1]);
          dsf[n >> 1][(n & 1) * 2 + 1] = pack_bf16(d[2], d[3]);
        }
      };
      if (warp_full && key0 + 16 * NC - 1 <= warp_min_pos)
        softmax_grad(std::false_type{});
      else
        softmax_grad(std::true_type{});
      // dQ += dS K: B (k = key, n = d) from the [key][d] rows, transposed by ldmatrix.
#pragma unroll
      for (int j = 0; j < NC; ++j)
#pragma unroll
        for (int np = 0; np < NT / 2; ++np) {
          uint32_t r[4];
          ldmatrix_x4_trans(r, ks + ((c + j) * 16 + (lane & 15)) * LDS + np * 16 + (lane >> 4) * 8);
          mma_bf16(acc[2 * np], dsf[j], r[0], r[1]);
          mma_bf16(acc[2 * np + 1], dsf[j], r[2], r[3]);
        }
    }
    __syncthreads();  // this stage is refilled by the next iteration's prefetch
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (!valid[i]) continue;
    float* o = a.dq + row[i] * a.dq_stride + int64_t(head[i]) * D + 2 * tq;
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      o[n * 8] = acc[n][2 * i] * a.scale;
      o[n * 8 + 1] = acc[n][2 * i + 1] * a.scale;
    }
  }
}

template <int D>
void launch(const BwdTile* tiles, int n_tiles, const BwdArgs& a, cudaStream_t st) {
  constexpr size_t smem = dq_smem_bytes<D>();
  static std::atomic<bool> opted_in[64];  // > 48 KiB of dynamic shared memory: once per device
  int dev = 0;
  cudaGetDevice(&dev);
  if (dev < 0 || dev >= 64 || !opted_in[dev]) {
    cudaFuncSetAttribute(attn_bwd_dq<D, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (dev >= 0 && dev < 64) opted_in[dev] = true;
  }
  attn_bwd_dq<D, 1><<<n_tiles, kThreads, smem, st>>>(tiles, a);
}

}  // namespace

void launch_backward_dq(const BwdTile* tiles, int n_tiles, const BwdArgs& a, int head_dim,
                        void* stream) {
  if (n_tiles == 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  switch (head_dim) {
    case 128: launch<128>(tiles, n_tiles, a, st); break;
    case 64: launch<64>(tiles, n_tiles, a, st); break;
    case 32: launch<32>(tiles, n_tiles, a, st); break;
    default: launch<16>(tiles, n_tiles, a, st); break;
  }
  check_last_launch("attention backward (dq)");
}

}  // namespace qarl::kernels::gpu::attn
