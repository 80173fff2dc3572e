// kFast for decode-sized M (1 .. kGemvMaxM rows): C[M,N] = A[M,K] . W[N,K]^T (+ C) as a
// bandwidth-bound stream over W instead of cuBLAS's M = 1 GEMMs (11-24 us each on the H200
// for the Qwen3-0.6B layer shapes, a few times the time to read W once).
// One warp per W row: lane l reads 16-byte chunks l, l+32, ... of the row (8 bf16 each, several
// in flight per lane), multiplies them with the same chunks of A's rows (staged in shared memory
// once per CTA) with explicit fp32 FMAs, then a butterfly sum over the warp. Deterministic (no
// atomics, no split-K across CTAs) but not the exact mode's reduction order: fast mode only.
// Aligned operands only (K, lda, ldw multiples of 8, A and W 16-byte aligned); gemm.cpp sends
// everything else to cuBLAS.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <string>

#include "qarl/kernels/cuda/gemm_exact_ptx.cuh"
#include "qarl/kernels/cuda/gemm_internal.h"

namespace qarl::kernels::gpu::detail {
namespace {

constexpr int kWarps = 8;   // W rows per CTA
constexpr int kUnroll = 4;  // 16-byte W chunks in flight per lane

__device__ __forceinline__ float lo_f(uint32_t v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float hi_f(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }

template <int MR, class OutT>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(Args p, bool accumulate) {
  extern __shared__ uint4 sa[];  // A: MR rows of K/8 chunks
  const int64_t kc = p.K / 8;
  for (int64_t c = threadIdx.x; c < MR * kc; c += blockDim.x) {
    const int64_t r = c / kc, k = c % kc;
    sa[c] = r < p.M ? *reinterpret_cast<const uint4*>(p.A + r * p.lda + k * 8) : make_uint4(0, 0, 0, 0);
  }
  __syncthreads();
  const int lane = int(threadIdx.x) & 31;
  const int64_t n = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (n >= p.N) return;
  const uint4* w = reinterpret_cast<const uint4*>(p.W + n * p.ldw);
  float acc[MR];
#pragma unroll
  for (int m = 0; m < MR; ++m) acc[m] = 0.0f;
  for (int64_t c0 = lane; c0 < kc; c0 += 32 * kUnroll) {
    uint4 wv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t c = c0 + int64_t(u) * 32;
      wv[u] = c < kc ? __ldcs(w + c) : make_uint4(0, 0, 0, 0);  // W is read once: stream it
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t c = c0 + int64_t(u) * 32;
      if (c >= kc) break;
      const uint32_t wr[4] = {wv[u].x, wv[u].y, wv[u].z, wv[u].w};
#pragma unroll
      for (int m = 0; m < MR; ++m) {
        const uint4 av = sa[m * kc + c];
        const uint32_t ar[4] = {av.x, av.y, av.z, av.w};
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          acc[m] = __fmaf_rn(lo_f(ar[q]), lo_f(wr[q]), acc[m]);
          acc[m] = __fmaf_rn(hi_f(ar[q]), hi_f(wr[q]), acc[m]);
        }
      }
    }
  }
#pragma unroll
  for (int m = 0; m < MR; ++m) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc[m] = __fadd_rn(acc[m], __shfl_xor_sync(0xffffffffu, acc[m], o));
  }
  if (lane == 0) {
#pragma unroll
    for (int m = 0; m < MR; ++m)
      if (m < p.M) store_out<OutT>(p.C, p.Cin, p.ldc, m, n, acc[m], accumulate);
  }
}

template <int MR, class OutT>
std::string launch_mr(Args p, bool accumulate, cudaStream_t stream) {
  auto kernel = gemv_kernel<MR, OutT>;
  constexpr int kMaxSmem = 160 * 1024;
  static const cudaError_t attr =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kMaxSmem);
  if (attr != cudaSuccess) return std::string("cudaFuncSetAttribute failed: ") + cudaGetErrorString(attr);
  const int64_t smem = int64_t(MR) * p.K * 2;
  if (smem > kMaxSmem) return "K too large for the GEMV's shared A";
  const int64_t grid = (p.N + kWarps - 1) / kWarps;
  if (grid > int64_t(INT32_MAX)) return "N too large";
  kernel<<<unsigned(grid), kWarps * 32, size_t(smem), stream>>>(p, accumulate);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string("launch failed: ") + cudaGetErrorString(e);
}

template <class OutT>
std::string launch_typed(Args p, bool accumulate, cudaStream_t s) {
  switch (p.M) {
    case 1: return launch_mr<1, OutT>(p, accumulate, s);
    case 2: return launch_mr<2, OutT>(p, accumulate, s);
    case 3: return launch_mr<3, OutT>(p, accumulate, s);
    case 4: return launch_mr<4, OutT>(p, accumulate, s);
    default: return "the GEMV takes 1 to 4 rows";
  }
}

}  // namespace

bool gemv_fast_applies(int64_t M, int64_t K, const bf16* A, int64_t lda, const bf16* W, int64_t ldw) {
  return M >= 1 && M <= kGemvMaxM && K > 0 && K <= 16384 && gemm_exact_aligned(K, A, lda, W, ldw);
}

std::string launch_gemv_fast(int64_t M, int64_t N, int64_t K, const bf16* A, int64_t lda,
                             const bf16* W, int64_t ldw, Elem c_t, void* C, int64_t ldc,
                             bool accumulate, void* stream, const void* c_in) {
  Args p{M, N, K, A, lda, W, ldw, C, ldc, 0, 0, c_in ? c_in : C};
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  return c_t == Elem::F32 ? launch_typed<float>(p, accumulate, s) : launch_typed<__nv_bfloat16>(p, accumulate, s);
}

}  // namespace qarl::kernels::gpu::detail
