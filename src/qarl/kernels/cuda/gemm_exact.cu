// kExact: qarl's batch-invariant GEMM, C[M,N] = A[M,K] . W[N,K]^T (+ C), bf16 in, fp32 acc.
//
// The per-element contract. Every C(i, j) is produced by one fp32 accumulator register that
// starts at 0 and is updated by the chain of mma.sync.m16n8k16 (bf16 x bf16 -> f32)
// instructions over k16 = 0, 16, 32, ... in ascending order, one instruction per k16 step
// that starts below K (the last step's lanes past K hold zeros; steps wholly past K are
// skipped, so the chain has exactly ceil(K/16) links whatever the tile). Each instruction's
// result for (i, j) depends only on row i of its A fragment, column j of its B fragment and
// the accumulator (the tensor core's dot product has a fixed internal order and does not
// mix rows), so C(i, j) is the same bits for every M, every position of row i in A, every
// content of the other rows, and every CTA tile shape. That is what lets the launcher pick
// the tile by shape (a 16/32/64-row tile for decode, 64x64, 128x128, the large-tile
// kernel of gemm_exact_large.cuh or the wgmma kernel of gemm_exact_wgmma.cuh for prefill
// and training) without giving up batch invariance: the tile decides which CTA and which
// fragment slot computes (i, j), never the arithmetic. No split-K anywhere. The epilogue
// adds C's old value (one fp32 add) and rounds to F32/BF16 (RNE), per element.
// Test: tests/kernels/cuda_gemm_test.cpp (bitwise rows across M = 1 ... 8192 and all tiles).
//
// (No qarl/core/error.h here: fmt does not compile under nvcc; gemm.cpp throws.)
// Data movement: cp.async 16-byte copies into a multi-stage shared-memory ring (zero-filled
// past M/N/K) when K, lda, ldw are multiples of 8 and A, W 16-byte aligned; otherwise
// guarded 2-byte loads stored into the same ring (slower, same arithmetic). Fragments come
// from shared memory through ldmatrix (rows padded by 8 halves: conflict-free). The large
// tile (aligned operands only) has its own, faster pipeline: gemm_exact_large.cuh.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <string>

#include "qarl/kernels/cuda/gemm_exact_large.cuh"
#include "qarl/kernels/cuda/gemm_exact_ptx.cuh"
#include "qarl/kernels/cuda/gemm_exact_wgmma.cuh"
#include "qarl/kernels/cuda/gemm_internal.h"
#include "qarl/kernels/cuda/launch_config.cuh"

namespace qarl::kernels::gpu::detail {
namespace {

template <int BM_, int BN_, int BK_, int WM_, int WN_, int STAGES_>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, WM = WM_, WN = WN_, STAGES = STAGES_;
  static constexpr int kThreads = WM * WN * 32;
  static constexpr int kLd = BK + 8;  // smem row stride in halves (16-byte multiple)
  static constexpr int kWarpM = BM / WM, kWarpN = BN / WN;
  static constexpr int kMT = kWarpM / 16, kNT = kWarpN / 8;
  static constexpr int kStageHalves = (BM + BN) * kLd;
  static constexpr size_t kSmemBytes = size_t(kStageHalves) * STAGES * 2;
  static_assert(kWarpM % 16 == 0 && kWarpN % 8 == 0 && BK % 16 == 0);
};

// The configurations (see the header comment: all compute the same bits).
using BigTile = Tile<128, 128, 32, 2, 4, 4>;   // 256 threads, warp 64x32
using MidTile = Tile<64, 64, 32, 2, 2, 4>;     // 128 threads, warp 32x32
template <int BM>
using SkinnyTile = Tile<BM, 16, 128, 1, 2, 4>; // 64 threads, warp BMx8: decode, W streamed

// One k-tile of A rows [m0, m0+BM) and W rows [n0, n0+BN), columns [k0, k0+BK), into a stage.
template <class T, bool kAligned>
__device__ __forceinline__ void load_tile(uint16_t* stage, const Args& p, int64_t m0, int64_t n0,
                                          int64_t k0) {
  constexpr int kChunksPerRow = T::BK / 8;
  constexpr int kChunks = (T::BM + T::BN) * kChunksPerRow;
#pragma unroll
  for (int c0 = 0; c0 < kChunks; c0 += T::kThreads) {
    const int c = c0 + int(threadIdx.x);
    if (kChunks % T::kThreads != 0 && c >= kChunks) break;
    const int r = c / kChunksPerRow, kc = (c % kChunksPerRow) * 8;
    const bool is_a = r < T::BM;
    const int rr = is_a ? r : r - T::BM;
    const uint16_t* base = is_a ? p.A : p.W;
    const int64_t ld = is_a ? p.lda : p.ldw;
    const int64_t grow = (is_a ? m0 : n0) + rr, rows = is_a ? p.M : p.N;
    const int64_t gk = k0 + kc;
    uint16_t* dst = stage + r * T::kLd + kc;  // A rows first, then W rows
    if constexpr (kAligned) {
      const bool ok = grow < rows && gk < p.K;  // K % 8 == 0: a chunk is all in or all out
      cp_async16(dst, ok ? base + grow * ld + gk : base, ok ? 16 : 0);
    } else {
      uint32_t v[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        uint32_t lo = 0, hi = 0;
        if (grow < rows) {
          const uint16_t* src = base + grow * ld + gk + 2 * j;
          if (gk + 2 * j < p.K) lo = src[0];
          if (gk + 2 * j + 1 < p.K) hi = src[1];
        }
        v[j] = lo | (hi << 16);
      }
      *reinterpret_cast<uint4*>(dst) = make_uint4(v[0], v[1], v[2], v[3]);
    }
  }
}

template <class T, bool kAligned, class OutT>
__global__ void __launch_bounds__(T::kThreads) gemm_exact_kernel(Args p, bool accumulate) {
  extern __shared__ uint4 smem_raw[];
  uint16_t* smem = reinterpret_cast<uint16_t*>(smem_raw);

  int pid_m, pid_n;
  grouped_tile(int(blockIdx.x), p.num_m, p.num_n, pid_m, pid_n);
  const int64_t m0 = int64_t(pid_m) * T::BM, n0 = int64_t(pid_n) * T::BN;

  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  const int wm = warp / T::WN, wn = warp % T::WN;

  float acc[T::kMT][T::kNT][4];
#pragma unroll
  for (int a = 0; a < T::kMT; ++a)
#pragma unroll
    for (int b = 0; b < T::kNT; ++b)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[a][b][e] = 0.0f;

  const int ktiles = int((p.K + T::BK - 1) / T::BK);
#pragma unroll
  for (int s = 0; s < T::STAGES - 1; ++s) {
    if (s < ktiles) load_tile<T, kAligned>(smem + s * T::kStageHalves, p, m0, n0, int64_t(s) * T::BK);
    cp_async_commit();
  }

  for (int kt = 0; kt < ktiles; ++kt) {
    cp_async_wait<T::STAGES - 2>();
    __syncthreads();  // tile kt visible to all; everyone is done with tile kt-1's stage
    const int nk = kt + T::STAGES - 1;
    if (nk < ktiles)
      load_tile<T, kAligned>(smem + (nk % T::STAGES) * T::kStageHalves, p, m0, n0,
                             int64_t(nk) * T::BK);
    cp_async_commit();

    const uint16_t* sa = smem + (kt % T::STAGES) * T::kStageHalves;
    const uint16_t* sw = sa + T::BM * T::kLd;
    const int64_t k0 = int64_t(kt) * T::BK;
#pragma unroll
    for (int kk = 0; kk < T::BK / 16; ++kk) {
      if (k0 + kk * 16 >= p.K) break;  // the chain has ceil(K/16) links for every tile
      uint32_t af[T::kMT][4];
      uint32_t bfr[T::kNT][2];
#pragma unroll
      for (int mt = 0; mt < T::kMT; ++mt)
        ldmatrix_x4(af[mt], sa + (wm * T::kWarpM + mt * 16 + (lane & 15)) * T::kLd + kk * 16 +
                                (lane >> 4) * 8);
      if constexpr (T::kNT == 1) {
        ldmatrix_x2(bfr[0][0], bfr[0][1],
                    sw + (wn * T::kWarpN + (lane & 7)) * T::kLd + kk * 16 + ((lane >> 3) & 1) * 8);
      } else {
#pragma unroll
        for (int nt = 0; nt < T::kNT; nt += 2) {
          uint32_t r[4];
          ldmatrix_x4(r, sw + (wn * T::kWarpN + nt * 8 + (lane & 7) + ((lane >> 4) << 3)) * T::kLd +
                             kk * 16 + ((lane >> 3) & 1) * 8);
          bfr[nt][0] = r[0];
          bfr[nt][1] = r[1];
          bfr[nt + 1][0] = r[2];
          bfr[nt + 1][1] = r[3];
        }
      }
#pragma unroll
      for (int mt = 0; mt < T::kMT; ++mt)
#pragma unroll
        for (int nt = 0; nt < T::kNT; ++nt) mma_bf16(acc[mt][nt], af[mt], bfr[nt][0], bfr[nt][1]);
    }
  }
  cp_async_wait<0>();

#pragma unroll
  for (int mt = 0; mt < T::kMT; ++mt)
#pragma unroll
    for (int nt = 0; nt < T::kNT; ++nt) {
      const int64_t i0 = m0 + wm * T::kWarpM + mt * 16 + (lane >> 2);
      const int64_t j0 = n0 + wn * T::kWarpN + nt * 8 + (lane & 3) * 2;
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int64_t i = i0 + h * 8, j = j0 + e;
          if (i < p.M && j < p.N) store_out<OutT>(p.C, p.Cin, p.ldc, i, j, acc[mt][nt][h * 2 + e], accumulate);
        }
    }
}

template <class T, bool kAligned, class OutT>
std::string launch_one(Args p, bool accumulate, cudaStream_t stream) {
  auto kernel = gemm_exact_kernel<T, kAligned, OutT>;
  static const cudaError_t attr = cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(T::kSmemBytes));
  if (attr != cudaSuccess)
    return std::string("cudaFuncSetAttribute failed: ") + cudaGetErrorString(attr);
  const int64_t nm = (p.M + T::BM - 1) / T::BM, nn = (p.N + T::BN - 1) / T::BN;
  if (nm * nn > int64_t(INT32_MAX) || nm * 8 * nn > int64_t(INT32_MAX))
    return "the output needs more than 2^31 tiles";
  p.num_m = int(nm);
  p.num_n = int(nn);
  kernel<<<unsigned(nm * nn), T::kThreads, T::kSmemBytes, stream>>>(p, accumulate);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string("launch failed: ") + cudaGetErrorString(e);
}

template <class T>
std::string launch_tile(Args p, bool aligned, Elem c_t, bool accumulate, cudaStream_t s) {
  if (c_t == Elem::F32)
    return aligned ? launch_one<T, true, float>(p, accumulate, s)
                   : launch_one<T, false, float>(p, accumulate, s);
  return aligned ? launch_one<T, true, __nv_bfloat16>(p, accumulate, s)
                 : launch_one<T, false, __nv_bfloat16>(p, accumulate, s);
}

// The large-M tiles (gemm_exact_large.cuh), all aligned-only. On the H200 at M = 8192
// (Qwen3-0.6B shapes, BF16 out) every variant measured 275-330 TFLOP/s, within ~10% of each
// other (docs/cuda.md); LargeB (4 warps of 64x64, two CTAs per SM, one tile per CTA) was the
// fastest on all five shapes and is the one pick() uses. The other two stay as tested
// alternatives that exercise the kernel's other paths: LargeA persistent (8 warps of 64x64,
// one CTA per SM looping over tiles with the copy pipeline running across tile changes) and
// LargeC persistent (2 x 8 warps of 64x32, single-buffered fragments).
using LargeA = LargeTile<128, 256, 2, 4, 3, 1>;
using LargeB = LargeTile<128, 128, 2, 2, 3, 2>;
using LargeC = LargeTile<128, 128, 2, 4, 3, 2, 1>;

template <class T, bool kPersistent>
std::string launch_large_tile(Args p, bool aligned, Elem c_t, bool accumulate, cudaStream_t s) {
  if (!aligned) return "the large tiles need K, lda, ldw multiples of 8 and 16-byte aligned A, W";
  return c_t == Elem::F32 ? launch_large<T, float, kPersistent>(p, accumulate, s)
                          : launch_large<T, __nv_bfloat16, kPersistent>(p, accumulate, s);
}

// Every configuration, by index (pick() chooses one; tests force each in turn).
enum Pick : int { kSkinny16, kSkinny32, kSkinny64, kMid, kBig, kLargeB, kLargeAP, kLargeCP, kWgmma, kNumPicks };
const char* const kConfigNames[kNumPicks] = {
    "skinny 16x16x128", "skinny 32x16x128", "skinny 64x16x128", "mid 64x64x32", "big 128x128x32",
    "large 128x128x64 x2", "large 128x256x64 persistent", "large 128x128x64 x2 w64x32 persistent", "wgmma 128x256x64 tma"};

// The tile for an M x N output: skinny tiles stream W for decode; once 128x128 tiles fill
// every SM, the large 128x128 tile (aligned operands: its copies are 16-byte cp.async) or
// the padded 128x128 tile with guarded loads; 64x64 below that.
// 33-64 rows (a batch-64 decode step): the 64x64 tile once it makes >= 64 CTAs, it reuses
// each W tile for all 64 rows; measured on the H200 at M = 64 (K = 1024): N = 4096 17.4 vs
// 19.0 us, N = 6144 18.2 vs 30.6, N = 151936 209 vs 444; at N = 1024 (16 CTAs) the skinny
// tile stays ahead (25.5 vs 28.3 us at K = 2048, 32.2 vs 38.3 at K = 3072).
// Beyond 64 rows, aligned operands on an sm_90a build take the wgmma tile once it makes at
// least 16 CTAs: measured on the H200 (gemm_exact_tiles, 16:05 run), BF16 out, us:
//   M = 256:  qkv (32 CTAs) 24.5 vs mid 26.0; o and down (8 CTAs) 33.2 / 42.0 vs mid 30.1 / 40.4
//   M = 1024: o (32 CTAs) 32.6 vs mid 39.2;  M = 2048: o 34.0 vs mid 66.8, down 43.1 vs 92.6
//   M = 8192: 1.6-1.9x the mma.sync large tile on all five shapes (454-609 vs 291-316 TFLOP/s).
Pick pick(int64_t M, int64_t N, int64_t K, bool aligned) {
  (void)K;
  if (M <= 16) return kSkinny16;
  if (M <= 32) return kSkinny32;
  if (M <= 64) return ((M + 63) / 64) * ((N + 63) / 64) >= 64 ? kMid : kSkinny64;
  if (aligned && wgmma::device_supported() && ((M + 127) / 128) * ((N + 255) / 256) >= 16) return kWgmma;
  const int64_t tiles = ((M + 127) / 128) * ((N + 127) / 128);
  if (tiles < sm_count()) return kMid;
  return aligned ? kLargeB : kBig;
}

std::string launch_as(int config, Args p, bool aligned, Elem c_t, bool accumulate, cudaStream_t s) {
  switch (config) {
    case kSkinny16: return launch_tile<SkinnyTile<16>>(p, aligned, c_t, accumulate, s);
    case kSkinny32: return launch_tile<SkinnyTile<32>>(p, aligned, c_t, accumulate, s);
    case kSkinny64: return launch_tile<SkinnyTile<64>>(p, aligned, c_t, accumulate, s);
    case kMid: return launch_tile<MidTile>(p, aligned, c_t, accumulate, s);
    case kBig: return launch_tile<BigTile>(p, aligned, c_t, accumulate, s);
    case kLargeB: return launch_large_tile<LargeB, false>(p, aligned, c_t, accumulate, s);
    case kLargeAP: return launch_large_tile<LargeA, true>(p, aligned, c_t, accumulate, s);
    case kLargeCP: return launch_large_tile<LargeC, true>(p, aligned, c_t, accumulate, s);
    case kWgmma:
      if (!aligned) return "the wgmma tile needs K, lda, ldw multiples of 8 and 16-byte aligned A, W";
      return c_t == Elem::F32 ? launch_wgmma<float>(p, accumulate, s) : launch_wgmma<__nv_bfloat16>(p, accumulate, s);
    default: return "no tile configuration " + std::to_string(config);
  }
}

}  // namespace

bool gemm_exact_aligned(int64_t K, const bf16* A, int64_t lda, const bf16* W, int64_t ldw) {
  return K % 8 == 0 && lda % 8 == 0 && ldw % 8 == 0 && reinterpret_cast<uintptr_t>(A) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(W) % 16 == 0;
}

const char* gemm_exact_config(int64_t M, int64_t N, int64_t K, bool aligned) {
  return kConfigNames[pick(M, N, K, aligned)];
}
int gemm_exact_config_count() { return kNumPicks; }
const char* gemm_exact_config_name(int config) {
  return config >= 0 && config < kNumPicks ? kConfigNames[config] : "?";
}

std::string launch_gemm_exact_as(int config, int64_t M, int64_t N, int64_t K, const bf16* A,
                                 int64_t lda, const bf16* W, int64_t ldw, Elem c_t, void* C,
                                 int64_t ldc, bool accumulate, void* stream, const void* c_in) {
  Args p{M, N, K, A, lda, W, ldw, C, ldc, 0, 0, c_in ? c_in : C};
  return launch_as(config, p, gemm_exact_aligned(K, A, lda, W, ldw), c_t, accumulate,
                   static_cast<cudaStream_t>(stream));
}

std::string launch_gemm_exact(int64_t M, int64_t N, int64_t K, const bf16* A, int64_t lda,
                       const bf16* W, int64_t ldw, Elem c_t, void* C, int64_t ldc,
                       bool accumulate, void* stream, const void* c_in) {
  const bool aligned = gemm_exact_aligned(K, A, lda, W, ldw);
  return launch_gemm_exact_as(pick(M, N, K, aligned), M, N, K, A, lda, W, ldw, c_t, C, ldc,
                              accumulate, stream, c_in);
}

}  // namespace qarl::kernels::gpu::detail
