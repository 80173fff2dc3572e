// The exact GEMM's large-M kernel (included by gemm_exact.cu): same per-element arithmetic as
// the other exact tiles (gemm_exact.cu's header: one fp32 accumulator per C(i, j), the chain of
// mma.sync.m16n8k16 over k16 = 0, 16, ... ascending, ceil(K/16) links, fragments holding
// A(i, k16..k16+15) and W(j, k16..k16+15) with zeros past K), laid out for throughput:
//   - CTA tile BM x BN, BK = 64, warps of 64 x 64 (4 x 8 mma tiles per k16: 8 ldmatrix.x4 feed
//     32 mma.sync) or smaller, fragments double-buffered in registers (the next k16's ldmatrix
//     is in flight while this k16's mma run) or single-buffered (fewer registers);
//   - optionally persistent: one CTA per resident slot looping over output tiles;
//   - a STAGES-deep cp.async ring of 16-byte copies, zero-filled past M / N / K, in XOR-swizzled
//     shared memory (16-byte chunk c of row r at c ^ (r & 7)): conflict-free for both the
//     copies and ldmatrix, no padding;
//   - one __syncthreads per k-tile; address arithmetic hoisted out of the loop.
// Only for the aligned case (K, lda, ldw multiples of 8, A and W 16-byte aligned); the
// launcher falls back to the padded 128x128 tile otherwise.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include "qarl/kernels/cuda/gemm_exact_ptx.cuh"
#include "qarl/kernels/cuda/launch_config.cuh"

namespace qarl::kernels::gpu::detail {
namespace {

// FRAG_BUFS: 2 = fragments double-buffered in registers (the next k16's ldmatrix overlaps
// this k16's mma), 1 = single (fewer registers: more warps per SM hide the latency instead).
template <int BM_, int BN_, int WM_, int WN_, int STAGES_, int MIN_BLOCKS_, int FRAG_BUFS_ = 2>
struct LargeTile {
  static constexpr int BM = BM_, BN = BN_, BK = 64, WM = WM_, WN = WN_, STAGES = STAGES_;
  static constexpr int kMinBlocks = MIN_BLOCKS_, kFragBufs = FRAG_BUFS_;
  static constexpr int kThreads = WM * WN * 32;
  static constexpr int kWarpM = BM / WM, kWarpN = BN / WN;
  static constexpr int kMT = kWarpM / 16, kNT = kWarpN / 8;
  static constexpr int kRowsPerPass = kThreads / 8;  // rows one pass of 16-byte copies covers
  static constexpr int kPassA = BM / kRowsPerPass, kPassW = BN / kRowsPerPass;
  static constexpr int kRowBytes = BK * 2;  // 128: 8 chunks of 16 bytes
  static constexpr int kStageBytes = (BM + BN) * kRowBytes;
  static constexpr size_t kSmemBytes = size_t(kStageBytes) * STAGES;
  static_assert(BM % kRowsPerPass == 0 && BN % kRowsPerPass == 0);
  static_assert(kWarpM % 16 == 0 && kWarpN % 16 == 0 && kPassA <= 32 && kPassW <= 32);
};

__device__ __forceinline__ void cp_async16_s(uint32_t saddr, const void* gmem, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(saddr), "l"(gmem),
               "r"(src_bytes));
}
__device__ __forceinline__ void ldmatrix_x4_s(uint32_t (&r)[4], uint32_t saddr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(saddr));
}

template <class T>
struct LargeFrags {
  uint32_t a[T::kMT][4];
  uint32_t b[T::kNT][2];
};

// The fragments of k16 step kk of the k-tile at shared address `stage`.
template <class T>
__device__ __forceinline__ void load_frags(LargeFrags<T>& f, uint32_t stage, uint32_t a_off,
                                           uint32_t b_off, int xa, int xb, int kk) {
#pragma unroll
  for (int mt = 0; mt < T::kMT; ++mt)
    ldmatrix_x4_s(f.a[mt], stage + a_off + mt * 16 * T::kRowBytes + (((2 * kk) ^ xa) << 4));
#pragma unroll
  for (int nt = 0; nt < T::kNT; nt += 2) {
    uint32_t r[4];
    ldmatrix_x4_s(r, stage + b_off + nt * 8 * T::kRowBytes + (((2 * kk) ^ xb) << 4));
    f.b[nt][0] = r[0];
    f.b[nt][1] = r[1];
    f.b[nt + 1][0] = r[2];
    f.b[nt + 1][1] = r[3];
  }
}

// Output tile `t` of the grouped order (8 M-tiles per group: neighbouring tiles share W and
// A tiles in L2) -> its first row and column.
template <class T>
__device__ __forceinline__ void tile_origin(const Args& p, int t, int64_t& m0, int64_t& n0) {
  int pid_m, pid_n;
  grouped_tile(t, p.num_m, p.num_n, pid_m, pid_n);
  m0 = int64_t(pid_m) * T::BM;
  n0 = int64_t(pid_n) * T::BN;
}

template <class T, class OutT>
__device__ __forceinline__ void store_tile(const Args& p, int t, const float (&acc)[T::kMT][T::kNT][4],
                                           bool accumulate, bool pair_stores) {
  int64_t m0, n0;
  tile_origin<T>(p, t, m0, n0);
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  const int wm = warp / T::WN, wn = warp % T::WN;
#pragma unroll
  for (int mt = 0; mt < T::kMT; ++mt)
#pragma unroll
    for (int nt = 0; nt < T::kNT; ++nt) {
      const int64_t i0 = m0 + wm * T::kWarpM + mt * 16 + (lane >> 2);
      const int64_t j = n0 + wn * T::kWarpN + nt * 8 + (lane & 3) * 2;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t i = i0 + h * 8;
        if (i >= p.M) continue;
        const float v0 = acc[mt][nt][h * 2], v1 = acc[mt][nt][h * 2 + 1];
        if (pair_stores && j + 1 < p.N) {
          store_out2<OutT>(p.C, p.Cin, p.ldc, i, j, v0, v1, accumulate);
        } else {
          if (j < p.N) store_out<OutT>(p.C, p.Cin, p.ldc, i, j, v0, accumulate);
          if (j + 1 < p.N) store_out<OutT>(p.C, p.Cin, p.ldc, i, j + 1, v1, accumulate);
        }
      }
    }
}

// CTA b computes output tiles b, b + gridDim.x, b + 2 gridDim.x, ... (one tile when the grid
// covers them all). Its k-tiles form one stream through the cp.async ring: the copies of the
// next tile's first k-tiles are in flight while this tile's last k-tiles run and while its
// accumulators are stored, so a tile change costs no pipeline refill.
template <class T, class OutT>
__global__ void __launch_bounds__(T::kThreads, T::kMinBlocks)
    gemm_exact_large_kernel(Args p, bool accumulate, bool pair_stores) {
  extern __shared__ uint4 smem_raw[];
  const uint32_t smem = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
  const int num_tiles = p.num_m * p.num_n;
  const int my_tiles = (num_tiles - int(blockIdx.x) + int(gridDim.x) - 1) / int(gridDim.x);
  const int ktiles = int((p.K + T::BK - 1) / T::BK);

  float acc[T::kMT][T::kNT][4];
#pragma unroll
  for (int a = 0; a < T::kMT; ++a)
#pragma unroll
    for (int b = 0; b < T::kNT; ++b)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[a][b][e] = 0.0f;

  if (ktiles == 0) {  // K == 0: C = 0 (+ C)
    for (int t = int(blockIdx.x); t < num_tiles; t += int(gridDim.x))
      store_tile<T, OutT>(p, t, acc, accumulate, pair_stores);
    return;
  }

  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int wm = warp / T::WN, wn = warp % T::WN;

  // Copies: thread tid moves 16-byte chunk cc of rows cr, cr + kRowsPerPass, ... (A rows
  // first, then W rows); the swizzled chunk is the same for all of them (kRowsPerPass % 8 == 0).
  const int cc = tid & 7, cr = tid >> 3;
  const uint32_t cdst = uint32_t(cr * T::kRowBytes + ((cc ^ (cr & 7)) << 4));
  const int64_t a_step = int64_t(T::kRowsPerPass) * p.lda, w_step = int64_t(T::kRowsPerPass) * p.ldw;
  // The copy stream's position: tile ld_tile, k-tile ld_kt; its sources and row masks.
  int ld_tile = int(blockIdx.x), ld_kt = 0, ld_left = my_tiles * ktiles;
  const uint16_t* a_src;
  const uint16_t* w_src;
  uint32_t a_ok, w_ok;  // bit i: row cr + i * kRowsPerPass is inside M (N)
  auto set_sources = [&](int t) {
    int64_t m0, n0;
    tile_origin<T>(p, t, m0, n0);
    a_src = p.A + (m0 + cr) * p.lda + cc * 8;
    w_src = p.W + (n0 + cr) * p.ldw + cc * 8;
    a_ok = 0;
    w_ok = 0;
#pragma unroll
    for (int i = 0; i < T::kPassA; ++i)
      if (m0 + cr + i * T::kRowsPerPass < p.M) a_ok |= 1u << i;
#pragma unroll
    for (int i = 0; i < T::kPassW; ++i)
      if (n0 + cr + i * T::kRowsPerPass < p.N) w_ok |= 1u << i;
  };
  set_sources(ld_tile);
  // Copies the stream's next k-tile into `stage` (nothing once the stream is done) and
  // commits a group either way (the wait counts stay uniform).
  auto load_next = [&](uint32_t stage) {
    if (ld_left > 0) {
      const int64_t k0 = int64_t(ld_kt) * T::BK;
      const bool kin = k0 + cc * 8 < p.K;  // K % 8 == 0: a chunk is all in or all out
#pragma unroll
      for (int i = 0; i < T::kPassA; ++i) {
        const bool ok = kin && ((a_ok >> i) & 1u);
        cp_async16_s(stage + cdst + i * T::kRowsPerPass * T::kRowBytes,
                     ok ? a_src + k0 + i * a_step : p.A, ok ? 16 : 0);
      }
#pragma unroll
      for (int i = 0; i < T::kPassW; ++i) {
        const bool ok = kin && ((w_ok >> i) & 1u);
        cp_async16_s(stage + (T::BM + i * T::kRowsPerPass) * T::kRowBytes + cdst,
                     ok ? w_src + k0 + i * w_step : p.W, ok ? 16 : 0);
      }
      --ld_left;
      if (++ld_kt == ktiles && ld_left > 0) {
        ld_kt = 0;
        ld_tile += int(gridDim.x);
        set_sources(ld_tile);
      }
    }
    cp_async_commit();
  };

  // ldmatrix addresses: A rows wm*kWarpM + mt*16 + (lane & 15), chunk 2kk + (lane >> 4);
  // W rows wn*kWarpN + nt*8 + (lane & 7) + 8 (lane >> 4), chunk 2kk + ((lane >> 3) & 1). Every
  // row is lane & 7 mod 8, so the swizzle XOR is lane & 7.
  const uint32_t a_off = uint32_t((wm * T::kWarpM + (lane & 15)) * T::kRowBytes);
  const uint32_t b_off =
      uint32_t((T::BM + wn * T::kWarpN + (lane & 7) + ((lane >> 4) << 3)) * T::kRowBytes);
  const int xa = (lane >> 4) ^ (lane & 7), xb = ((lane >> 3) & 1) ^ (lane & 7);

  // k16 steps of a tile's last k-tile that start below K: steps wholly past K are skipped, so
  // the chain has ceil(K/16) links (an extra zero step could turn -0 into +0).
  const int last_steps = int((p.K - int64_t(ktiles - 1) * T::BK + 15) / 16);
#pragma unroll
  for (int s = 0; s < T::STAGES - 1; ++s) load_next(smem + s * T::kStageBytes);

  LargeFrags<T> f[T::kFragBufs];
  cp_async_wait<T::STAGES - 2>();
  __syncthreads();
  int read_stage = 0, write_stage = T::STAGES - 1;
  if constexpr (T::kFragBufs == 2) load_frags<T>(f[0], smem, a_off, b_off, xa, xb, 0);
  int tile = int(blockIdx.x), kt = 0;
  auto mma_step = [&](const LargeFrags<T>& g) {
#pragma unroll
    for (int mt = 0; mt < T::kMT; ++mt)
#pragma unroll
      for (int n = 0; n < T::kNT; ++n) {
        const int nt = (mt & 1) ? T::kNT - 1 - n : n;  // serpentine: reuse b across mt
        mma_bf16(acc[mt][nt], g.a[mt], g.b[nt][0], g.b[nt][1]);
      }
  };
  for (int left = my_tiles * ktiles; left > 0; --left) {
    const uint32_t cur = smem + read_stage * T::kStageBytes;
    const int next_stage = read_stage + 1 == T::STAGES ? 0 : read_stage + 1;
    const uint32_t nxt = smem + next_stage * T::kStageBytes;
    const int steps = kt == ktiles - 1 ? last_steps : 4;
    if constexpr (T::kFragBufs == 2) {
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        if (kk == 3) {
          // The next k-tile landed for everyone, and everyone is done reading the previous
          // k-tile's stage (refilled at kk == 0 of the next k-tile).
          cp_async_wait<T::STAGES - 2>();
          __syncthreads();
        }
        load_frags<T>(f[(kk + 1) & 1], kk == 3 ? nxt : cur, a_off, b_off, xa, xb, (kk + 1) & 3);
        if (kk == 0) {
          load_next(smem + write_stage * T::kStageBytes);
          write_stage = write_stage + 1 == T::STAGES ? 0 : write_stage + 1;
        }
        if (kk < steps) mma_step(f[kk & 1]);
      }
    } else {
      load_next(smem + write_stage * T::kStageBytes);  // its stage was released by the last sync
      write_stage = write_stage + 1 == T::STAGES ? 0 : write_stage + 1;
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        load_frags<T>(f[0], cur, a_off, b_off, xa, xb, kk);
        if (kk < steps) mma_step(f[0]);
      }
      cp_async_wait<T::STAGES - 2>();  // the next k-tile landed for everyone; everyone is
      __syncthreads();                 // done reading this one's stage
    }
    read_stage = next_stage;
    if (++kt == ktiles) {  // the tile's chains are complete: store, start the next from 0
      store_tile<T, OutT>(p, tile, acc, accumulate, pair_stores);
#pragma unroll
      for (int a = 0; a < T::kMT; ++a)
#pragma unroll
        for (int b = 0; b < T::kNT; ++b)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[a][b][e] = 0.0f;
      kt = 0;
      tile += int(gridDim.x);
    }
  }
  cp_async_wait<0>();
}

// Launches the large kernel; "" or what failed. kPersistent: one CTA per resident slot
// (SMs x kMinBlocks), each looping over tiles; otherwise one CTA per tile.
template <class T, class OutT, bool kPersistent>
std::string launch_large(Args p, bool accumulate, cudaStream_t stream) {
  auto kernel = gemm_exact_large_kernel<T, OutT>;
  static const cudaError_t attr = cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(T::kSmemBytes));
  if (attr != cudaSuccess)
    return std::string("cudaFuncSetAttribute failed: ") + cudaGetErrorString(attr);
  const int64_t nm = (p.M + T::BM - 1) / T::BM, nn = (p.N + T::BN - 1) / T::BN;
  const int64_t ktiles = (p.K + T::BK - 1) / T::BK;
  if (nm * nn > int64_t(INT32_MAX) || nm * 8 * nn > int64_t(INT32_MAX) ||
      nm * nn * (ktiles + 1) > int64_t(INT32_MAX))
    return "the output needs more than 2^31 tile steps";
  p.num_m = int(nm);
  p.num_n = int(nn);
  const int64_t grid = kPersistent ? std::min<int64_t>(nm * nn, int64_t(sm_count()) * T::kMinBlocks)
                                   : nm * nn;
  // Pair stores need (i, j) and (i, j+1) in one aligned word: j is even, so an even ldc and
  // a C aligned to two elements.
  const size_t pair_bytes = 2 * sizeof(OutT);
  // Paired stores read the addend in pairs too: both C and Cin must allow them.
  const bool pairs = p.ldc % 2 == 0 && reinterpret_cast<uintptr_t>(p.C) % pair_bytes == 0 &&
                     reinterpret_cast<uintptr_t>(p.Cin) % pair_bytes == 0;
  kernel<<<unsigned(grid), T::kThreads, T::kSmemBytes, stream>>>(p, accumulate, pairs);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string("launch failed: ") + cudaGetErrorString(e);
}

}  // namespace
}  // namespace qarl::kernels::gpu::detail
