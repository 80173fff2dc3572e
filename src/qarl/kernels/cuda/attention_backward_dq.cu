// The first and last kernels of the attention backward (plan: attention_backward.cpp).
//
// stats: per (row, q head) {lse*log2(e), dsum = sum_d dO*O}, the two per-row constants the
// dk/dv kernel needs (one warp each; fixed shuffle order).
//
// dq: dQ = scale * dS K from the dS tiles the dk/dv kernel wrote (bf16, layout in
// attention_internal.h), so P and dP are computed once per element (in the dk/dv kernel)
// instead of twice. Laid out like the forward (attention_forward.cu): one CTA per WARPS/4
// consecutive query tiles (64 (query row, q head) pairs each) of one sequence and one KV
// head, 16 tile rows per warp; K blocks of 64 keys and their dS tiles stream through shared
// memory (cp.async, two stages); dQ += dS K per 16-key chunk in increasing key order, fp32
// accumulation, written as fp32. Deterministic: every sum runs in a fixed order, no atomics.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "qarl/kernels/cuda/attention_internal.h"
#include "qarl/kernels/cuda/attention_mma.cuh"
#include "qarl/kernels/cuda/launch.h"
#include "qarl/kernels/cuda/launch_config.cuh"

namespace qarl::kernels::gpu::attn {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int LDT = kTileRows + 8;  // dS tile smem row stride (elements): conflict-free ldmatrix

template <int D, int WARPS>
constexpr size_t dq_smem_bytes() {  // 2 stages x (K block, WARPS/4 dS tiles)
  return size_t(2) * kKeyBlock * ((D + 8) + WARPS / 4 * LDT) * sizeof(uint16_t);
}

template <int D>
__global__ void __launch_bounds__(256) attn_bwd_stats(const BwdArgs a) {
  const int64_t w = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (w >= a.stat_rows * a.n_heads) return;  // warp-uniform
  const int64_t row = w / a.n_heads;
  const int head = int(w % a.n_heads);
  const bf16* d = a.dout + row * a.o_stride + int64_t(head) * D;
  const bf16* o = a.out + row * a.o_stride + int64_t(head) * D;
  float acc = 0.0f;
#pragma unroll
  for (int c = 2 * lane; c < D; c += 64) {
    const uint32_t dv = *reinterpret_cast<const uint32_t*>(d + c);
    const uint32_t ov = *reinterpret_cast<const uint32_t*>(o + c);
    acc = __fmaf_rn(__uint_as_float(dv << 16), __uint_as_float(ov << 16), acc);
    acc = __fmaf_rn(__uint_as_float(dv & 0xffff0000u), __uint_as_float(ov & 0xffff0000u), acc);
  }
#pragma unroll
  for (int m = 16; m >= 1; m >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, m);
  if (lane == 0) a.stats[w] = make_float2(a.lse[w] * kLog2e, acc);
}

// At most 128 registers (4 CTAs of 4 warps or 2 of 8 per SM): the kernel waits on memory
// (the dS tiles come from HBM), so more CTAs in flight beat more registers.
template <int D, int WARPS>
__global__ void __launch_bounds__(WARPS * 32, 16 / WARPS)
    attn_bwd_dq(const BwdTile* __restrict__ tiles, const BwdArgs a) {
  constexpr int kThreads = WARPS * 32;
  constexpr int SUB = WARPS / 4;  // query tiles per CTA
  constexpr int LDS = D + 8;  // smem row stride (elements): conflict-free ldmatrix
  constexpr int NT = D / 8;   // n-tiles of dQ
  constexpr int STAGE = kKeyBlock * (LDS + SUB * LDT);
  extern __shared__ __align__(16) uint16_t smem[];

  const BwdTile t = tiles[blockIdx.x];
  const int lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
  const int sub = (threadIdx.x >> 5) / 4, warp = (threadIdx.x >> 5) % 4;  // warp in its tile
  const int group = a.group;
  const int rpt = kTileRows / group;
  const int qt = t.block * SUB + sub;  // this warp's query tile
  const int r_first = qt * rpt;        // position of the tile's first row
  const int n_rows = max(0, min(rpt, t.T - r_first));
  const int n_m = n_rows * group;  // valid tile rows

  bool valid[2];
  int64_t row[2];
  int head[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int m = warp * 16 + g + 8 * i;
    valid[i] = m < n_m;
    const int rl = valid[i] ? m / group : 0;
    row[i] = int64_t(t.q_row0) + r_first + rl;
    head[i] = t.kv_head * group + (valid[i] ? m % group : 0);
  }
  const int cta_last_pos = min(t.T, (t.block + 1) * SUB * rpt) - 1;
  const int n_kb = cta_last_pos / kKeyBlock + 1;
  const int warp_last_m = min(warp * 16 + 15, n_m - 1);
  const int warp_pos = warp_last_m >= warp * 16 ? r_first + warp_last_m / group : -1;

  const bf16* kbase = a.k + t.kv_row0 * a.kv_stride + int64_t(t.kv_head) * D;
  const int64_t ds_qt = int64_t((t.T + kKeyBlock - 1) / kKeyBlock) * kDsTile;  // per query tile
  auto load_block = [&](int kb, int st) {
    uint16_t* ks = smem + st * STAGE;
    uint16_t* dss = ks + kKeyBlock * LDS;
    constexpr int CH = D / 8;  // 16-byte chunks per K row
    for (int c = threadIdx.x; c < kKeyBlock * CH; c += kThreads) {
      const int r = c / CH, col = (c % CH) * 8, key = kb * kKeyBlock + r;
      const bool ok = key <= cta_last_pos;  // later keys: zeros
      copy8(ks + r * LDS + col, kbase + int64_t(ok ? key : 0) * a.kv_stride + col, ok,
            a.vec_kv, a.k);
    }
    constexpr int TCH = kTileRows / 8;  // 16-byte chunks per dS row
    for (int c = threadIdx.x; c < SUB * kKeyBlock * TCH; c += kThreads) {
      const int u = c / (kKeyBlock * TCH), r = (c / TCH) % kKeyBlock, col = (c % TCH) * 8;
      const int tile = t.block * SUB + u, key = kb * kKeyBlock + r;
      // Keys past the tile's last row: zeros (its dS tiles there are not written).
      const bool ok = key <= min(t.T - 1, (tile + 1) * rpt - 1);
      const bf16* src = a.ds + t.ds_off + tile * ds_qt + kb * kDsTile + r * kTileRows + col;
      cp_async16(dss + (u * kKeyBlock + r) * LDT + col, ok ? src : a.ds, ok);
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
    const uint16_t* ks = smem + (kb & 1) * STAGE;
    const uint16_t* dss = ks + kKeyBlock * LDS + sub * kKeyBlock * LDT;
#pragma unroll
    for (int c = 0; c < kKeyBlock / 16; ++c) {  // 16 keys per step
      if (kb * kKeyBlock + c * 16 > warp_pos) break;  // warp-uniform: past all its rows
      // dS as the A fragment (rows = tile rows, k = keys) from the [key][column] tile.
      uint32_t af[4];
      ldmatrix_x4_trans(af, dss + (c * 16 + (lane >> 4) * 8 + (lane & 7)) * LDT + warp * 16 +
                                ((lane >> 3) & 1) * 8);
      // dQ += dS K: B (k = key, n = d) from the [key][d] rows, transposed by ldmatrix.
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        uint32_t r[4];
        ldmatrix_x4_trans(r, ks + (c * 16 + (lane & 15)) * LDS + np * 16 + (lane >> 4) * 8);
        mma_bf16(acc[2 * np], af, r[0], r[1]);
        mma_bf16(acc[2 * np + 1], af, r[2], r[3]);
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

template <int D, int WARPS>
void launch(const BwdTile* tiles, int n_tiles, const BwdArgs& a, cudaStream_t st) {
  constexpr size_t smem = dq_smem_bytes<D, WARPS>();
  opt_in_dynamic_smem<attn_bwd_dq<D, WARPS>>(smem);
  attn_bwd_dq<D, WARPS><<<n_tiles, WARPS * 32, smem, st>>>(tiles, a);
}

template <int D>
void launch_d(int warps, const BwdTile* tiles, int n_tiles, const BwdArgs& a, cudaStream_t st) {
  if (warps == 8)
    launch<D, 8>(tiles, n_tiles, a, st);
  else
    launch<D, 4>(tiles, n_tiles, a, st);
}

template <int D>
void launch_stats(const BwdArgs& a, cudaStream_t st) {
  const int64_t warps = a.stat_rows * a.n_heads;
  attn_bwd_stats<D><<<unsigned((warps + 7) / 8), 256, 0, st>>>(a);
}

}  // namespace

void launch_backward_stats(const BwdArgs& a, int head_dim, void* stream) {
  if (a.stat_rows == 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  switch (head_dim) {
    case 128: launch_stats<128>(a, st); break;
    case 64: launch_stats<64>(a, st); break;
    case 32: launch_stats<32>(a, st); break;
    default: launch_stats<16>(a, st); break;
  }
  check_last_launch("attention backward (stats)");
}

void launch_backward_dq(const BwdTile* tiles, int n_tiles, int warps, const BwdArgs& a,
                        int head_dim, void* stream) {
  if (n_tiles == 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  switch (head_dim) {
    case 128: launch_d<128>(warps, tiles, n_tiles, a, st); break;
    case 64: launch_d<64>(warps, tiles, n_tiles, a, st); break;
    case 32: launch_d<32>(warps, tiles, n_tiles, a, st); break;
    default: launch_d<16>(warps, tiles, n_tiles, a, st); break;
  }
  check_last_launch("attention backward (dq)");
}

}  // namespace qarl::kernels::gpu::attn
