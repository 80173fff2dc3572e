// The forward of attention_forward_wide.cu (tiles of 128 (query row, q head) pairs) on
// Hopper's warpgroup MMA, head_dim 128: two warpgroups of 64 rows each instead of four warps
// of 32, the same tile plan and the same bits.
//
// Batch invariance: every row gets the instructions of the 16-row kernel (read
// attention_forward.cu's header first): S = Q K^T as the ascending k16 chain over head_dim,
// the online softmax per 64-key block with the same per-element code and the same shuffles
// over the row's four lanes (the wgmma accumulator layout is mma.sync's C fragment per n8
// block, so a thread holds the same elements of its rows), O += P V as the ascending k16 chain
// over the block's keys. A wgmma k16 step gives mma.sync's bits (bench/gpu/wgmma_probe.cu,
// wgmma_forms_probe.cu). A warpgroup goes on through the blocks up to its last row's, so a row
// that ends earlier sees wholly masked blocks (correction 1, P = 0: no bit changes), as the
// wide kernel's second m16 tile does. CudaAttention.ForwardLayoutsAgreeBitwise and
// BatchInvariantBitwise check it against the mma.sync kernels.
//
// Layout (attention_wgmma.cuh): the Q tile (128 x 128) and two stages of the K and V blocks
// (64 x 128 each) in the 128-byte swizzle layout; S through wgmma m64n64k16 (Q and K
// K-major), O through m64n128k16 with P from registers and V N-major.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "qarl/kernels/cuda/attention_internal.h"
#include "qarl/kernels/cuda/attention_mma.cuh"
#include "qarl/kernels/cuda/attention_wgmma.cuh"
#include "qarl/kernels/cuda/launch.h"
#include "qarl/kernels/cuda/launch_config.cuh"

namespace qarl::kernels::gpu::attn {
namespace {

using wg::kD;
constexpr int kRows = 128, kThreads = 256;
constexpr int kKvBytes = kKeyBlock * kD * 2;  // one K or V block: 16 KiB
constexpr size_t kSmemBytes = 1024 + size_t(kRows) * kD * 2 + 4 * size_t(kKvBytes);

__global__ void __launch_bounds__(kThreads, 1)
    attn_fwd_wgmma(const Tile* __restrict__ tiles, const bf16* __restrict__ q, int64_t q_stride, PagedKV kv,
                   int group, float scale_log2, bf16* __restrict__ out, int64_t out_stride,
                   float* __restrict__ lse) {
#if QARL_HAS_WGMMA
  constexpr int NS = kKeyBlock / 8;  // n8 blocks of a score block
  extern __shared__ uint4 smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  uint8_t* qs = smem;
  uint8_t* kv_stages = qs + kRows * kD * 2;  // stage st: K at + st * 2 * kKvBytes, V after it

  const Tile t = tiles[blockIdx.x];
  const int tid = threadIdx.x, wgi = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
  const int g = lane >> 2, tq = lane & 3;
  const int n_heads = kv.n_kv_heads * group;
  const int n_m = t.n_rows * group;
  const int row_base = wgi * 64 + warp * 16;  // this warp's first tile row

  int pos[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int m = row_base + g + 8 * i;
    pos[i] = t.first_pos + (m < n_m ? m / group : 0);
  }
  const int last_pos = t.first_pos + t.n_rows - 1;
  const int n_kb = last_pos / kKeyBlock + 1;
  // Blocks the warpgroup goes through: up to its last valid row's (uniform over its warps).
  const int wg_last_m = min(wgi * 64 + 63, n_m - 1);
  const int wg_kb = wg_last_m >= wgi * 64 ? (t.first_pos + wg_last_m / group) / kKeyBlock + 1 : 0;

  {  // the Q tile: row m = (query row m / group, head m % group of the group); zeros past n_m
    const bool vec = reinterpret_cast<uintptr_t>(q) % 16 == 0 && q_stride % 8 == 0;
    for (int c = tid; c < kRows * 16; c += kThreads) {
      const int m = c >> 4, ch = c & 15;
      const bool ok = m < n_m;
      const bf16* src = ok ? q + (int64_t(t.first_row) + m / group) * q_stride +
                                 int64_t(t.kv_head * group + m % group) * kD + ch * 8
                           : q;
      copy8(reinterpret_cast<uint16_t*>(qs + wg::swizzled<kRows>(m, ch)), src, ok, vec, q);
    }
  }
  const int64_t W = int64_t(kv.n_kv_heads) * kD;  // pool row width
  const int32_t* bt = kv.block_table + int64_t(t.seq) * kv.max_blocks_per_seq;
  auto load_block = [&](int kb, int st) {
    uint8_t* ks = kv_stages + st * 2 * kKvBytes;
    uint8_t* vs = ks + kKvBytes;
    for (int c = tid; c < kKeyBlock * 16; c += kThreads) {
      const int r = c >> 4, ch = c & 15, key = kb * kKeyBlock + r;
      const bool ok = key <= last_pos;
      const bf16* ksrc = kv.k_pool;
      const bf16* vsrc = kv.v_pool;
      if (ok) {
        const int64_t off = (int64_t(bt[key / kv.block_size]) * kv.block_size + key % kv.block_size) * W +
                            int64_t(t.kv_head) * kD + ch * 8;
        ksrc += off;
        vsrc += off;
      }
      cp_async16(ks + wg::swizzled<kKeyBlock>(r, ch), ksrc, ok);
      cp_async16(vs + wg::swizzled<kKeyBlock>(r, ch), vsrc, ok);
    }
    cp_async_commit();  // block 0's group also holds the Q tile's copies
  };

  float o[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};

  // The wide kernel's online softmax of this thread's scores s (s[4n + e] = its s[n][e]).
  auto softmax = [&](auto masked, int kb, float (&s)[32], uint32_t (&pf)[kKeyBlock / 16][4]) {
    float bm[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < NS; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e >> 1;
        float x = s[4 * n + e] * scale_log2;
        if constexpr (decltype(masked)::value) {
          const int key = kb * kKeyBlock + n * 8 + 2 * tq + (e & 1);
          x = key <= pos[i] ? x : -INFINITY;
        }
        s[4 * n + e] = x;
        bm[i] = fmaxf(bm[i], x);
      }
    float mn[2], corr[2], bl[2] = {0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      bm[i] = fmaxf(bm[i], __shfl_xor_sync(0xffffffffu, bm[i], 1));
      bm[i] = fmaxf(bm[i], __shfl_xor_sync(0xffffffffu, bm[i], 2));
      mn[i] = fmaxf(m_run[i], bm[i]);
      corr[i] = fast_exp2(m_run[i] - mn[i]);
    }
#pragma unroll
    for (int n = 0; n < NS; ++n) {
      float p[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        p[e] = fast_exp2(s[4 * n + e] - mn[e >> 1]);
        bl[e >> 1] += p[e];
      }
      pf[n >> 1][(n & 1) * 2 + 0] = pack_bf16(p[0], p[1]);
      pf[n >> 1][(n & 1) * 2 + 1] = pack_bf16(p[2], p[3]);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      bl[i] += __shfl_xor_sync(0xffffffffu, bl[i], 1);
      bl[i] += __shfl_xor_sync(0xffffffffu, bl[i], 2);
      l_run[i] = l_run[i] * corr[i] + bl[i];
      m_run[i] = mn[i];
    }
#pragma unroll
    for (int n = 0; n < 16; ++n) {
      o[4 * n + 0] *= corr[0];
      o[4 * n + 1] *= corr[0];
      o[4 * n + 2] *= corr[1];
      o[4 * n + 3] *= corr[1];
    }
  };

  load_block(0, 0);
  for (int kb = 0; kb < n_kb; ++kb) {
    if (kb + 1 < n_kb) {
      load_block(kb + 1, (kb + 1) & 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    wgmma::fence_proxy_async();
    __syncthreads();
    if (kb < wg_kb) {  // uniform over the warpgroup
      const uint8_t* ks = kv_stages + (kb & 1) * 2 * kKvBytes;
      const uint8_t* vs = ks + kKvBytes;
      uint32_t pf[kKeyBlock / 16][4];
      {
        float s[32];
#pragma unroll
        for (int i = 0; i < 32; ++i) s[i] = 0.0f;
        wgmma::fence_operand(s);
        wgmma::fence();
#pragma unroll
        for (int kk = 0; kk < kD / 16; ++kk)
          wgmma::wgmma_m64n64k16(s, wg::desc_kmajor<kRows>(qs, wgi * 64, kk),
                                 wg::desc_kmajor<kKeyBlock>(ks, 0, kk));
        wgmma::commit();
        wgmma::wait<0>();
        wgmma::fence_operand(s);
        // Blocks before open_kb need no mask for this warp's 16 rows (attention_forward.cu).
        const int open_kb = (t.first_pos + row_base / group + 1) / kKeyBlock;
        if (kb < open_kb)
          softmax(std::false_type{}, kb, s, pf);
        else
          softmax(std::true_type{}, kb, s, pf);
      }
      // O += P V, 16-key chunks in increasing order.
      wgmma::fence_operand(o);
      wgmma::fence();
#pragma unroll
      for (int j = 0; j < kKeyBlock / 16; ++j) wg::wgmma_rs_n128(o, pf[j], wg::desc_nmajor<kKeyBlock>(vs, 16 * j));
      wgmma::commit();
      wgmma::wait<0>();
      wgmma::fence_operand(o);
    }
    __syncthreads();  // this stage is refilled by the next iteration's prefetch
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int m = row_base + g + 8 * i;
    if (m >= n_m) continue;
    const int64_t orow_i = int64_t(t.first_row) + m / group;
    const int head = t.kv_head * group + m % group;
    const float inv = 1.0f / l_run[i];
    bf16* orow = out + orow_i * out_stride + int64_t(head) * kD + 2 * tq;
#pragma unroll
    for (int n = 0; n < 16; ++n)
      *reinterpret_cast<uint32_t*>(orow + n * 8) = pack_bf16(o[4 * n + 2 * i] * inv, o[4 * n + 2 * i + 1] * inv);
    if (lse && tq == 0) lse[orow_i * n_heads + head] = (m_run[i] + log2f(l_run[i])) * 0.693147180559945309f;
  }
#else
  __trap();
#endif
}

}  // namespace

bool forward_wgmma_usable(int head_dim) { return head_dim == kD && wgmma::device_supported(); }

void launch_forward_wgmma(const Tile* tiles, int n_tiles, const bf16* q, int64_t q_stride, const PagedKV& kv,
                          int group, float scale_log2, bf16* out, int64_t out_stride, float* lse,
                          cudaStream_t st) {
  opt_in_dynamic_smem<attn_fwd_wgmma>(kSmemBytes);
  attn_fwd_wgmma<<<n_tiles, kThreads, kSmemBytes, st>>>(tiles, q, q_stride, kv, group, scale_log2, out,
                                                        out_stride, lse);
}

}  // namespace qarl::kernels::gpu::attn
