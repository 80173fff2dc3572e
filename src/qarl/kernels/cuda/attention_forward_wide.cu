// The forward of attention_forward.cu for tiles of 128 (query row, q head) pairs with 4 warps
// of 32 rows each (two m16 tiles per warp) instead of 8 warps of 16: each K and V fragment
// read from shared memory feeds two mma instead of one. With one m16 tile per warp the loop
// reads 512 bytes of shared memory (an ldmatrix.x4) per two mma, more than the SM's shared
// memory can deliver at the tensor cores' rate. Q sits in shared memory (its fragments would
// not fit in registers next to two accumulators), loaded by ldmatrix: the same bf16 pairs.
//
// Batch invariance (attention_forward.cu): every row gets the very instructions of the
// 16-row kernel: its own mma row of S = Q K^T summed over k-steps in increasing order, the
// same online softmax per 64-key block (mask only where it can drop a score), P V summed over
// 16-key chunks in increasing order. A row whose keys end before the warp's other m16 tile's
// goes through the later blocks wholly masked: correction 1, P = 0, no bit changes. So a row
// here gets the bits a decode step of the 16-row kernel gives it
// (CudaAttention.ForwardLayoutsAgreeBitwise, BatchInvariantBitwise).
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

constexpr int kWarps = 4, kMT = 2, kThreads = kWarps * 32, kRows = kWarps * 16 * kMT;

template <int D>
constexpr size_t wide_smem_bytes() {  // Q tile + 2 stages x (K, V)
  return size_t(kRows + 2 * 2 * kKeyBlock) * (D + 8) * sizeof(uint16_t);
}

template <int D>
__global__ void __launch_bounds__(kThreads)
    attn_fwd_wide(const Tile* __restrict__ tiles, const bf16* __restrict__ q, int64_t q_stride,
                  PagedKV kv, int group, float scale_log2, bf16* __restrict__ out,
                  int64_t out_stride, float* __restrict__ lse) {
  constexpr int LDS = D + 8;  // smem row stride (elements): conflict-free ldmatrix
  constexpr int KT = D / 16;  // k-steps of Q K^T
  constexpr int NT = D / 8;   // n-tiles of the output
  constexpr int NS = kKeyBlock / 8;  // n-tiles of a score block
  constexpr int STAGE = 2 * kKeyBlock * LDS;
  extern __shared__ __align__(16) uint16_t smem[];
  uint16_t* qs = smem;
  uint16_t* kv_stages = smem + kRows * LDS;

  const Tile t = tiles[blockIdx.x];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
  const int n_heads = kv.n_kv_heads * group;
  const int n_m = t.n_rows * group;  // valid tile rows

  // This thread's rows: warp*32 + mt*16 + g and + 8 (the C-fragment rows of m16 tile mt);
  // their positions (rows past n_m: the tile's first, never written).
  int pos[kMT][2];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int m = warp * 32 + mt * 16 + g + 8 * i;
      pos[mt][i] = t.first_pos + (m < n_m ? m / group : 0);
    }
  const int last_pos = t.first_pos + t.n_rows - 1;
  const int n_kb = last_pos / kKeyBlock + 1;
  const int warp_last_m = min(warp * 32 + 31, n_m - 1);
  const int warp_kb =
      warp_last_m >= warp * 32 ? (t.first_pos + warp_last_m / group) / kKeyBlock + 1 : 0;

  constexpr int CH = D / 8;  // 16-byte chunks per row
  {  // the Q tile: row m = (query row m / group, head m % group of the group); zeros past n_m
    const bool vec = reinterpret_cast<uintptr_t>(q) % 16 == 0 && q_stride % 8 == 0;
    for (int c = threadIdx.x; c < kRows * CH; c += kThreads) {
      const int m = c / CH, col = (c % CH) * 8;
      const bool ok = m < n_m;
      const bf16* src =
          ok ? q + (int64_t(t.first_row) + m / group) * q_stride +
                   int64_t(t.kv_head * group + m % group) * D + col
             : q;
      copy8(qs + m * LDS + col, src, ok, vec, q);
    }
  }
  const int64_t W = int64_t(kv.n_kv_heads) * D;  // pool row width
  const int32_t* bt = kv.block_table + int64_t(t.seq) * kv.max_blocks_per_seq;
  auto load_block = [&](int kb, int st) {
    uint16_t* ks = kv_stages + st * STAGE;
    uint16_t* vs = ks + kKeyBlock * LDS;
    for (int c = threadIdx.x; c < kKeyBlock * CH; c += kThreads) {
      const int r = c / CH, col = (c % CH) * 8, key = kb * kKeyBlock + r;
      const bool ok = key <= last_pos;
      const bf16* ksrc = kv.k_pool;
      const bf16* vsrc = kv.v_pool;
      if (ok) {
        const int64_t off =
            (int64_t(bt[key / kv.block_size]) * kv.block_size + key % kv.block_size) * W +
            int64_t(t.kv_head) * D + col;
        ksrc += off;
        vsrc += off;
      }
      cp_async16(ks + r * LDS + col, ksrc, ok);
      cp_async16(vs + r * LDS + col, vsrc, ok);
    }
    cp_async_commit();  // block 0's group also holds the Q tile's copies
  };

  float o[kMT][NT][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int n = 0; n < NT; ++n) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.0f;
  float m_run[kMT][2], l_run[kMT][2];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
    m_run[mt][0] = m_run[mt][1] = -INFINITY, l_run[mt][0] = l_run[mt][1] = 0.0f;

  // The online softmax of m16 tile mt's scores s in block kb; the bf16 P fragments to pf.
  auto softmax = [&](auto masked, auto mt_c, int kb, float (&s)[NS][4],
                     uint32_t (&pf)[kKeyBlock / 16][4]) {
    constexpr int mt = decltype(mt_c)::value;
    float bm[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < NS; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e >> 1;
        float x = s[n][e] * scale_log2;
        if constexpr (decltype(masked)::value) {
          const int key = kb * kKeyBlock + n * 8 + 2 * tq + (e & 1);
          x = key <= pos[mt][i] ? x : -INFINITY;
        }
        s[n][e] = x;
        bm[i] = fmaxf(bm[i], x);
      }
    float mn[2], corr[2], bl[2] = {0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      bm[i] = fmaxf(bm[i], __shfl_xor_sync(0xffffffffu, bm[i], 1));
      bm[i] = fmaxf(bm[i], __shfl_xor_sync(0xffffffffu, bm[i], 2));
      mn[i] = fmaxf(m_run[mt][i], bm[i]);
      corr[i] = fast_exp2(m_run[mt][i] - mn[i]);
    }
#pragma unroll
    for (int n = 0; n < NS; ++n) {
      float p[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        p[e] = fast_exp2(s[n][e] - mn[e >> 1]);
        bl[e >> 1] += p[e];
      }
      pf[n >> 1][(n & 1) * 2 + 0] = pack_bf16(p[0], p[1]);
      pf[n >> 1][(n & 1) * 2 + 1] = pack_bf16(p[2], p[3]);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      bl[i] += __shfl_xor_sync(0xffffffffu, bl[i], 1);
      bl[i] += __shfl_xor_sync(0xffffffffu, bl[i], 2);
      l_run[mt][i] = l_run[mt][i] * corr[i] + bl[i];
      m_run[mt][i] = mn[i];
    }
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      o[mt][n][0] *= corr[0];
      o[mt][n][1] *= corr[0];
      o[mt][n][2] *= corr[1];
      o[mt][n][3] *= corr[1];
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
    __syncthreads();
    if (kb < warp_kb) {
      const uint16_t* ks = kv_stages + (kb & 1) * STAGE;
      const uint16_t* vs = ks + kKeyBlock * LDS;
      uint32_t pf[kMT][kKeyBlock / 16][4];
      {
        float s[kMT][NS][4];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int n = 0; n < NS; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.0f;
        // S = Q K^T: each s[mt][n] sums its k-steps in increasing order.
        const int br = (lane >> 4) * 8 + (lane & 7), bc = ((lane >> 3) & 1) * 8;
#pragma unroll
        for (int kk = 0; kk < KT; ++kk) {
          uint32_t qa[kMT][4];
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt)
            ldmatrix_x4(qa[mt], qs + (warp * 32 + mt * 16 + (lane & 15)) * LDS + kk * 16 +
                                    (lane >> 4) * 8);
#pragma unroll
          for (int np = 0; np < NS / 2; ++np) {
            uint32_t kf[4];
            ldmatrix_x4(kf, ks + (np * 16 + br) * LDS + kk * 16 + bc);
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt) {
              mma_bf16(s[mt][2 * np], qa[mt], kf[0], kf[1]);
              mma_bf16(s[mt][2 * np + 1], qa[mt], kf[2], kf[3]);
            }
          }
        }
        // Blocks before open_kb need no mask for m16 tile mt (attention_forward.cu).
        const int open_kb0 = (t.first_pos + (warp * 32) / group + 1) / kKeyBlock;
        const int open_kb1 = (t.first_pos + (warp * 32 + 16) / group + 1) / kKeyBlock;
        using M0 = std::integral_constant<int, 0>;
        using M1 = std::integral_constant<int, 1>;
        static_assert(kMT == 2);
        if (kb < open_kb0)
          softmax(std::false_type{}, M0{}, kb, s[0], pf[0]);
        else
          softmax(std::true_type{}, M0{}, kb, s[0], pf[0]);
        if (kb < open_kb1)
          softmax(std::false_type{}, M1{}, kb, s[1], pf[1]);
        else
          softmax(std::true_type{}, M1{}, kb, s[1], pf[1]);
      }
      // O += P V, 16-key chunks in increasing order.
#pragma unroll
      for (int j = 0; j < kKeyBlock / 16; ++j)
#pragma unroll
        for (int np = 0; np < NT / 2; ++np) {
          uint32_t r[4];
          ldmatrix_x4_trans(r, vs + (j * 16 + (lane & 15)) * LDS + np * 16 + (lane >> 4) * 8);
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt) {
            mma_bf16(o[mt][2 * np], pf[mt][j], r[0], r[1]);
            mma_bf16(o[mt][2 * np + 1], pf[mt][j], r[2], r[3]);
          }
        }
    }
    __syncthreads();  // this stage is refilled by the next iteration's prefetch
  }

#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int m = warp * 32 + mt * 16 + g + 8 * i;
      if (m >= n_m) continue;
      const int64_t orow_i = int64_t(t.first_row) + m / group;
      const int head = t.kv_head * group + m % group;
      const float inv = 1.0f / l_run[mt][i];
      bf16* orow = out + orow_i * out_stride + int64_t(head) * D + 2 * tq;
#pragma unroll
      for (int n = 0; n < NT; ++n)
        *reinterpret_cast<uint32_t*>(orow + n * 8) =
            pack_bf16(o[mt][n][2 * i] * inv, o[mt][n][2 * i + 1] * inv);
      if (lse && tq == 0)
        lse[orow_i * n_heads + head] =
            (m_run[mt][i] + log2f(l_run[mt][i])) * 0.693147180559945309f;
    }
}

template <int D>
void launch(const Tile* tiles, int n_tiles, const bf16* q, int64_t q_stride, const PagedKV& kv,
            int group, float scale_log2, bf16* out, int64_t out_stride, float* lse,
            cudaStream_t st) {
  constexpr size_t smem = wide_smem_bytes<D>();
  opt_in_dynamic_smem<attn_fwd_wide<D>>(smem);
  attn_fwd_wide<D><<<n_tiles, kThreads, smem, st>>>(tiles, q, q_stride, kv, group, scale_log2,
                                                    out, out_stride, lse);
}

}  // namespace

void launch_forward_wide(const Tile* tiles, int n_tiles, const bf16* q, int64_t q_stride,
                         const PagedKV& kv, int group, float scale_log2, bf16* out,
                         int64_t out_stride, float* lse, cudaStream_t st) {
  switch (kv.head_dim) {
    case 128: launch<128>(tiles, n_tiles, q, q_stride, kv, group, scale_log2, out, out_stride, lse, st); break;
    case 64: launch<64>(tiles, n_tiles, q, q_stride, kv, group, scale_log2, out, out_stride, lse, st); break;
    case 32: launch<32>(tiles, n_tiles, q, q_stride, kv, group, scale_log2, out, out_stride, lse, st); break;
    default: launch<16>(tiles, n_tiles, q, q_stride, kv, group, scale_log2, out, out_stride, lse, st); break;
  }
}

}  // namespace qarl::kernels::gpu::attn
