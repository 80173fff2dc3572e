// The exact GEMM's decode tile (included by gemm_exact.cu): same per-element arithmetic as the
// other exact tiles (gemm_exact.cu's header: one fp32 accumulator per C(i, j), the chain of
// mma.sync.m16n8k16 over k16 = 0, 16, ... ascending, ceil(K/16) links, fragments holding
// A(i, k16..k16+15) and W(j, k16..k16+15) with zeros past M / N / K), laid out for M <= 16 where
// the product is a stream over W:
//   - one warp per CTA, owning 8 output columns (N/8 CTAs: twice the skinny 16x16 tile's count,
//     so the K = 3072 down projection of a 0.6B model still spreads over the GPU);
//   - the CTA's (up to) 16 rows of A staged whole in shared memory once, plus one zero row that
//     the fragment rows past M point at (no zero-filled copies per k-tile);
//   - W through a warp-private STAGES-deep cp.async ring of BK-wide k-tiles (16-byte copies,
//     zero-filled past N / K), so ~STAGES x 2 KiB of W per warp is in flight;
//   - the next k-tile's fragments are loaded (ldmatrix) before this k-tile's mma run, so the
//     chain runs at the mma's latency (measured on the H200 before this: ~110 cycles per link
//     with ldmatrix and mma alternating, 15 us for a 1 x 1024 x 2048 product).
// Aligned operands only (K, lda, ldw multiples of 8, A and W 16-byte aligned); rows of A beyond
// 16 go to further CTAs (grid.y), so any M works (the tests force it on every shape).
#pragma once
#include <cstdint>
#include <string>

#include "qarl/kernels/cuda/gemm_exact_ptx.cuh"

namespace qarl::kernels::gpu::detail {
namespace {

template <int BK_, int STAGES_>
struct DecodeTile {
  static constexpr int BK = BK_, STAGES = STAGES_;
  static constexpr int kLdW = BK + 8;  // smem row stride in halves (conflict-free ldmatrix)
  static constexpr int kStageHalves = 8 * kLdW;
  static constexpr int kChunksPerRow = BK / 8;
  static_assert(BK % 16 == 0 && (8 * kChunksPerRow) % 32 == 0 && STAGES >= 3);
};

// Shared bytes of a launch: the W ring, then (rows + 1) rows of A of a_ld halves.
template <class T>
__host__ __device__ inline int64_t decode_a_ld(int64_t K) { return (K + 15) / 16 * 16 + 8; }
template <class T>
inline int64_t decode_smem_bytes(int64_t M, int64_t K) {
  const int64_t rows = M < 16 ? M : 16;
  return int64_t(T::STAGES) * T::kStageHalves * 2 + (rows + 1) * decode_a_ld<T>(K) * 2;
}

template <class T, class OutT>
__global__ void __launch_bounds__(32) gemm_exact_decode_kernel(Args p, bool accumulate) {
  extern __shared__ uint4 smem_raw[];
  uint16_t* sw = reinterpret_cast<uint16_t*>(smem_raw);
  uint16_t* sa = sw + T::STAGES * T::kStageHalves;
  const int lane = int(threadIdx.x);
  const int64_t n0 = int64_t(blockIdx.x) * 8, m0 = int64_t(blockIdx.y) * 16;
  const int rows = int(p.M - m0 < 16 ? p.M - m0 : 16);
  const int64_t a_ld = decode_a_ld<T>(p.K);
  const int64_t a_chunks = a_ld / 8;  // per smem row, including the zero padding

  // A rows m0 .. m0+rows-1 and the zero row (index rows), 16-byte chunks (zeros past K).
  for (int64_t c = lane; c < (rows + 1) * a_chunks; c += 32) {
    const int64_t r = c / a_chunks, kc = (c % a_chunks) * 8;
    const bool ok = r < rows && kc < p.K;
    cp_async16(sa + r * a_ld + kc, ok ? p.A + (m0 + r) * p.lda + kc : p.A, ok ? 16 : 0);
  }
  const int ktiles = int((p.K + T::BK - 1) / T::BK);
  auto load_w = [&](int stage, int kt) {
    uint16_t* dst = sw + stage * T::kStageHalves;
    const int64_t k0 = int64_t(kt) * T::BK;
#pragma unroll
    for (int c0 = 0; c0 < 8 * T::kChunksPerRow; c0 += 32) {
      const int c = c0 + lane;
      const int r = c / T::kChunksPerRow, kc = (c % T::kChunksPerRow) * 8;
      const bool ok = n0 + r < p.N && k0 + kc < p.K;  // K % 8 == 0: all in or all out
      cp_async16(dst + r * T::kLdW + kc, ok ? p.W + (n0 + r) * p.ldw + k0 + kc : p.W, ok ? 16 : 0);
    }
  };
#pragma unroll
  for (int s = 0; s < T::STAGES - 1; ++s) {
    if (s < ktiles) load_w(s, s);
    cp_async_commit();  // group 0 also holds A
  }

  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  // Fragment rows: lane & 15 when inside this CTA's rows, else the zero row.
  const int arow = (lane & 15) < rows ? (lane & 15) : rows;
  const uint16_t* a_base = sa + arow * a_ld + (lane >> 4) * 8;
  const int w_off = (lane & 7) * T::kLdW + ((lane >> 3) & 1) * 8;
  // A k-tile's fragments, loaded whole before the previous k-tile's mma run, so the chain's
  // links follow each other without waiting on ldmatrix (the asm statements keep their order).
  constexpr int kSteps = T::BK / 16;
  struct Frags {
    uint32_t a[kSteps][4], b[kSteps][2];
  };
  auto load_frags = [&](Frags& f, int kt) {
    const uint16_t* ws = sw + (kt % T::STAGES) * T::kStageHalves + w_off;
    const uint16_t* as = a_base + int64_t(kt) * T::BK;
#pragma unroll
    for (int kk = 0; kk < kSteps; ++kk) {
      ldmatrix_x4(f.a[kk], as + kk * 16);
      ldmatrix_x2(f.b[kk][0], f.b[kk][1], ws + kk * 16);
    }
  };
  Frags cur, nxt;
  if (ktiles > 0) {
    cp_async_wait<T::STAGES - 2>();  // k-tile 0 and A landed
    __syncwarp();
    load_frags(cur, 0);
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    if (kt + 1 < ktiles) {
      cp_async_wait<T::STAGES - 3>();  // k-tile kt+1 landed
      __syncwarp();
      load_frags(nxt, kt + 1);
    }
    // Refill the stage k-tile kt-1 had (its fragments were taken an iteration ago).
    const int nk = kt + T::STAGES - 1;
    if (nk < ktiles) load_w(nk % T::STAGES, nk);
    cp_async_commit();
    const int64_t k0 = int64_t(kt) * T::BK;
#pragma unroll
    for (int kk = 0; kk < kSteps; ++kk) {
      if (k0 + kk * 16 >= p.K) break;  // the chain has ceil(K/16) links for every tile
      mma_bf16_16816(acc, cur.a[kk], cur.b[kk][0], cur.b[kk][1]);
    }
    cur = nxt;
  }
  cp_async_wait<0>();

  const int64_t i0 = m0 + (lane >> 2), j0 = n0 + (lane & 3) * 2;
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int64_t i = i0 + h * 8, j = j0 + e;
      if (i < p.M && j < p.N) store_out<OutT>(p.C, p.ldc, i, j, acc[h * 2 + e], accumulate);
    }
}

constexpr int64_t kDecodeMaxSmem = 200 * 1024;

template <class T, class OutT>
std::string launch_decode(Args p, bool accumulate, cudaStream_t stream) {
  auto kernel = gemm_exact_decode_kernel<T, OutT>;
  static const cudaError_t attr =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kDecodeMaxSmem));
  if (attr != cudaSuccess)
    return std::string("cudaFuncSetAttribute failed: ") + cudaGetErrorString(attr);
  const int64_t smem = decode_smem_bytes<T>(p.M, p.K);
  if (smem > kDecodeMaxSmem) return "the decode tile needs K <= ~5800 (A is staged in shared memory)";
  const int64_t nn = (p.N + 7) / 8, nm = (p.M + 15) / 16;
  if (nn > int64_t(INT32_MAX) || nm > 65535) return "the output needs too many decode tiles";
  gemm_exact_decode_kernel<T, OutT><<<dim3(unsigned(nn), unsigned(nm)), 32, size_t(smem), stream>>>(p, accumulate);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string("launch failed: ") + cudaGetErrorString(e);
}

}  // namespace
}  // namespace qarl::kernels::gpu::detail
