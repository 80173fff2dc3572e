// The paged causal GQA forward (attention_gpu.h) on tensor cores: FlashAttention-2 style,
// mma.sync m16n8k16 bf16 with fp32 accumulation and an fp32 online softmax (base 2).
//
// Batch invariance: one CTA takes a tile of up to 64 (query row, q head) pairs of one
// sequence and one KV head (host plan: attention_workspace.cpp). Every tile row is computed
// by the same instructions whatever its place in the tile: its scores come from its own mma
// row, keys are visited in blocks of 64 aligned to absolute key index, blocks are summed in
// increasing order, row max / row sum are reduced over the four lanes of a quad in a fixed
// order. Keys past a row's position get score -inf, so a block wholly past it has block max
// -inf, correction exp2(0) = 1 and P = 0: it changes neither l nor the accumulator. Keys past
// the tile's last position are zero-filled in shared memory (never read from the pool), so
// garbage there cannot turn 0 * V into NaN. Hence a decode row alone in its tile gets the
// very bits it gets inside a long prefill tile.
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

// WARPS warps of 16 tile rows each: 8 (tiles of 128 rows, half the K/V traffic per row) for
// long segments, 4 for decode and short chunks. PIPE: Q K^T of the next key block is issued
// together with the softmax and P V of this one (three K/V stages), so the tensor cores have
// work while the softmax runs; without it the warps of a CTA do their softmax in step.
// Neither choice changes a warp's arithmetic: the same products and sums per row, in the
// same order.
template <int D, bool PIPE>
constexpr size_t smem_bytes() {  // stages x (K, V)
  return size_t(PIPE ? 3 : 2) * 2 * kKeyBlock * (D + 8) * sizeof(uint16_t);
}

template <int D, int WARPS, bool PIPE>
__global__ void __launch_bounds__(WARPS * 32)
    attn_fwd(const Tile* __restrict__ tiles, const bf16* __restrict__ q, int64_t q_stride,
             PagedKV kv, int group, float scale_log2, bf16* __restrict__ out,
             int64_t out_stride, float* __restrict__ lse) {
  constexpr int kThreads = WARPS * 32;
  constexpr int LDS = D + 8;  // smem row stride (elements): conflict-free fragment loads
  constexpr int KT = D / 16;  // k-steps of Q K^T
  constexpr int NT = D / 8;   // n-tiles of the output
  constexpr int NS = kKeyBlock / 8;  // n-tiles of a score block
  constexpr int STAGE = 2 * kKeyBlock * LDS;  // elements of one K/V stage
  extern __shared__ __align__(16) uint16_t smem[];

  const Tile t = tiles[blockIdx.x];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
  const int n_heads = kv.n_kv_heads * group;
  const int n_m = t.n_rows * group;  // valid tile rows

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
    pos[i] = t.first_pos + rl;
    row[i] = int64_t(t.first_row) + rl;
    head[i] = t.kv_head * group + (valid[i] ? m % group : 0);
  }
  const int last_pos = t.first_pos + t.n_rows - 1;
  const int n_kb = last_pos / kKeyBlock + 1;
  const int warp_last_m = min(warp * 16 + 15, n_m - 1);
  const int warp_kb =
      warp_last_m >= warp * 16 ? (t.first_pos + warp_last_m / group) / kKeyBlock + 1 : 0;
  // Blocks before this one hold only keys at or before every row of the warp (no mask; the
  // mask would keep every score, so skipping it changes no bit).
  const int warp_open_kb = (t.first_pos + (warp * 16) / group + 1) / kKeyBlock;

  // Q as A fragments, straight from global memory (read once per tile).
  uint32_t qf[KT][4];
#pragma unroll
  for (int kk = 0; kk < KT; ++kk)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const bf16* qr = q + row[i] * q_stride + int64_t(head[i]) * D + kk * 16 + 2 * tq;
      qf[kk][i] = valid[i] ? *reinterpret_cast<const uint32_t*>(qr) : 0u;
      qf[kk][2 + i] = valid[i] ? *reinterpret_cast<const uint32_t*>(qr + 8) : 0u;
    }

  const int64_t W = int64_t(kv.n_kv_heads) * D;  // pool row width
  const int32_t* bt = kv.block_table + int64_t(t.seq) * kv.max_blocks_per_seq;
  auto load_block = [&](int kb, int st) {
    uint16_t* ks = smem + st * STAGE;
    uint16_t* vs = ks + kKeyBlock * LDS;
    constexpr int CH = D / 8;  // 16-byte chunks per row
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
    cp_async_commit();
  };

  float o[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};

  // S = Q K^T of one block: B fragments of K^T (k = head_dim, n = key) for n-tiles 2np, 2np+1
  // from the [key][d] rows, one ldmatrix per k-step; each s[n] sums its k-steps in order.
  auto qk = [&](const uint16_t* ks, float (&s)[NS][4]) {
#pragma unroll
    for (int n = 0; n < NS; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
    const int br = (lane >> 4) * 8 + (lane & 7), bc = ((lane >> 3) & 1) * 8;
#pragma unroll
    for (int np = 0; np < NS / 2; ++np)
#pragma unroll
      for (int kk = 0; kk < KT; ++kk) {
        uint32_t kf[4];
        ldmatrix_x4(kf, ks + (np * 16 + br) * LDS + kk * 16 + bc);
        mma_bf16(s[2 * np], qf[kk], kf[0], kf[1]);
        mma_bf16(s[2 * np + 1], qf[kk], kf[2], kf[3]);
      }
  };
  // The online softmax of block kb's scores s, then O += P V. masked: apply the causal mask
  // (false only where it would keep every score of the warp's rows).
  auto softmax_pv = [&](auto masked, int kb, float (&s)[NS][4], const uint16_t* vs) {
    float bm[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < NS; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e >> 1;
        float x = s[n][e] * scale_log2;
        if constexpr (decltype(masked)::value) {
          const int key = kb * kKeyBlock + n * 8 + 2 * tq + (e & 1);
          x = key <= pos[i] ? x : -INFINITY;
        }
        s[n][e] = x;
        bm[i] = fmaxf(bm[i], x);
      }
    float mn[2], corr[2], bl[2] = {0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      bm[i] = fmaxf(bm[i], __shfl_xor_sync(0xffffffffu, bm[i], 1));
      bm[i] = fmaxf(bm[i], __shfl_xor_sync(0xffffffffu, bm[i], 2));
      mn[i] = fmaxf(m_run[i], bm[i]);
      corr[i] = fast_exp2(m_run[i] - mn[i]);  // 0 on the first block, 1 on a masked one
    }
    uint32_t pf[kKeyBlock / 16][4];
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
      l_run[i] = l_run[i] * corr[i] + bl[i];
      m_run[i] = mn[i];
    }
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      o[n][0] *= corr[0];
      o[n][1] *= corr[0];
      o[n][2] *= corr[1];
      o[n][3] *= corr[1];
    }
#pragma unroll
    for (int j = 0; j < kKeyBlock / 16; ++j)
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        uint32_t r[4];
        ldmatrix_x4_trans(r, vs + (j * 16 + (lane & 15)) * LDS + np * 16 + (lane >> 4) * 8);
        mma_bf16(o[2 * np], pf[j], r[0], r[1]);
        mma_bf16(o[2 * np + 1], pf[j], r[2], r[3]);
      }
  };

  float s[NS][4];
  if constexpr (!PIPE) {
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
        const uint16_t* ks = smem + (kb & 1) * STAGE;
        qk(ks, s);
        if (kb < warp_open_kb)
          softmax_pv(std::false_type{}, kb, s, ks + kKeyBlock * LDS);
        else
          softmax_pv(std::true_type{}, kb, s, ks + kKeyBlock * LDS);
      }
      __syncthreads();  // this stage is refilled by the next iteration's prefetch
    }
  } else {
    // Block kb sits in stage kb % 3. Iteration kb: block kb+1 is complete (its K is read now),
    // block kb+2 is being copied into the stage block kb-1 left.
    load_block(0, 0);
    if (n_kb > 1) {
      load_block(1, 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (0 < warp_kb) qk(smem, s);
    for (int kb = 0; kb < n_kb; ++kb) {
      if (kb + 1 < n_kb) cp_async_wait<0>();
      __syncthreads();  // block kb+1 visible; every warp is done with block kb-1's stage
      if (kb + 2 < n_kb) load_block(kb + 2, (kb + 2) % 3);
      const uint16_t* vs = smem + (kb % 3) * STAGE + kKeyBlock * LDS;
      const uint16_t* ks_next = smem + ((kb + 1) % 3) * STAGE;
      if (kb + 1 < warp_kb) {
        float sn[NS][4];
        if (kb < warp_open_kb) {
          qk(ks_next, sn);
          softmax_pv(std::false_type{}, kb, s, vs);
        } else {
          qk(ks_next, sn);
          softmax_pv(std::true_type{}, kb, s, vs);
        }
#pragma unroll
        for (int n = 0; n < NS; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) s[n][e] = sn[n][e];
      } else if (kb < warp_kb) {
        if (kb < warp_open_kb)
          softmax_pv(std::false_type{}, kb, s, vs);
        else
          softmax_pv(std::true_type{}, kb, s, vs);
      }
    }
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (!valid[i]) continue;
    const float inv = 1.0f / l_run[i];
    bf16* orow = out + row[i] * out_stride + int64_t(head[i]) * D + 2 * tq;
#pragma unroll
    for (int n = 0; n < NT; ++n)
      *reinterpret_cast<uint32_t*>(orow + n * 8) =
          pack_bf16(o[n][2 * i] * inv, o[n][2 * i + 1] * inv);
    if (lse && tq == 0)
      lse[row[i] * n_heads + head[i]] = (m_run[i] + log2f(l_run[i])) * 0.693147180559945309f;
  }
}

template <int D, int WARPS, bool PIPE>
void launch(const Tile* tiles, int n_tiles, const bf16* q, int64_t q_stride, const PagedKV& kv,
            int group, float scale_log2, bf16* out, int64_t out_stride, float* lse,
            cudaStream_t st) {
  constexpr size_t smem = smem_bytes<D, PIPE>();
  opt_in_dynamic_smem<attn_fwd<D, WARPS, PIPE>>(smem);
  attn_fwd<D, WARPS, PIPE><<<n_tiles, WARPS * 32, smem, st>>>(tiles, q, q_stride, kv, group,
                                                              scale_log2, out, out_stride, lse);
}

template <int D>
void launch_d(int warps, const Tile* tiles, int n_tiles, const bf16* q, int64_t q_stride,
              const PagedKV& kv, int group, float scale_log2, bf16* out, int64_t out_stride,
              float* lse, cudaStream_t st) {
  const bool pipe = tuning().fwd_pipe != 0;  // default: pipelined
  if (warps == 8 && pipe)
    launch<D, 8, true>(tiles, n_tiles, q, q_stride, kv, group, scale_log2, out, out_stride, lse, st);
  else if (warps == 8)
    launch<D, 8, false>(tiles, n_tiles, q, q_stride, kv, group, scale_log2, out, out_stride, lse, st);
  else if (pipe)
    launch<D, 4, true>(tiles, n_tiles, q, q_stride, kv, group, scale_log2, out, out_stride, lse, st);
  else
    launch<D, 4, false>(tiles, n_tiles, q, q_stride, kv, group, scale_log2, out, out_stride, lse, st);
}

}  // namespace

void launch_forward_tiles(const Tile* tiles, int n_tiles, int tile_warps, const bf16* q,
                          int64_t q_stride, const PagedKV& kv, int group, float scale,
                          bf16* out, int64_t out_stride, float* lse, void* stream) {
  if (n_tiles == 0) return;
  const float scale_log2 = float(double(scale) * 1.4426950408889634);
  auto st = static_cast<cudaStream_t>(stream);
  const int w = tile_warps;
  if (w == 8 && tuning().fwd_wide != 0) {
    if (tuning().fwd_wgmma != 0 && forward_wgmma_usable(kv.head_dim))
      launch_forward_wgmma(tiles, n_tiles, q, q_stride, kv, group, scale_log2, out, out_stride,
                           lse, st);
    else
      launch_forward_wide(tiles, n_tiles, q, q_stride, kv, group, scale_log2, out, out_stride,
                          lse, st);
    check_last_launch("attention forward");
    return;
  }
  switch (kv.head_dim) {  // D % 16 == 0: mma k-steps of 16, ldmatrix x4 column pairs
    case 128: launch_d<128>(w, tiles, n_tiles, q, q_stride, kv, group, scale_log2, out, out_stride, lse, st); break;
    case 64: launch_d<64>(w, tiles, n_tiles, q, q_stride, kv, group, scale_log2, out, out_stride, lse, st); break;
    case 32: launch_d<32>(w, tiles, n_tiles, q, q_stride, kv, group, scale_log2, out, out_stride, lse, st); break;
    default: launch_d<16>(w, tiles, n_tiles, q, q_stride, kv, group, scale_log2, out, out_stride, lse, st); break;
  }
  check_last_launch("attention forward");
}

}  // namespace qarl::kernels::gpu::attn
