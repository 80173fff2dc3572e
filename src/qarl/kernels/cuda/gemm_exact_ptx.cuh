// The pieces both exact-GEMM kernels share (gemm_exact.cu: the small/mid tiles and the
// guarded-load path; gemm_exact_large.cuh: the large-M kernel): the launch arguments, the
// PTX wrappers and the per-element output rule. The one arithmetic instruction of the
// product is ptx::mma_bf16 (see gemm_exact.cu's header for the per-element contract).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "qarl/kernels/cuda/mma_ptx.cuh"

namespace qarl::kernels::gpu::detail {
namespace {

struct Args {
  int64_t M, N, K;
  const uint16_t* A;
  int64_t lda;
  const uint16_t* W;
  int64_t ldw;
  void* C;
  int64_t ldc;
  int num_m, num_n;  // tile counts
  // What accumulate adds to: C itself, or another buffer of C's shape and stride (the
  // trainer's out-of-place residual: C = Cin + A W^T; the same per-element arithmetic).
  const void* Cin;
};

using ptx::cp_async16;
using ptx::cp_async_commit;
using ptx::cp_async_wait;
using ptx::ldmatrix_x2;
using ptx::ldmatrix_x4;
using ptx::mma_bf16;  // the one arithmetic instruction of the product

// Grouped tile order: CTA `pid` of a num_m x num_n grid of tiles takes tile (pid_m, pid_n),
// walking 8 M-tiles down each column of tiles before the next column, so that neighbouring
// CTAs share W and A tiles in L2.
__device__ __forceinline__ void grouped_tile(int pid, int num_m, int num_n, int& pid_m, int& pid_n) {
  constexpr int kGroup = 8;
  const int group_size = kGroup * num_n;
  const int first_m = (pid / group_size) * kGroup;
  const int gm = min(num_m - first_m, kGroup);
  pid_m = first_m + (pid % group_size) % gm;
  pid_n = (pid % group_size) / gm;
}

// The output rule, per element: C = acc, or C = old + acc (one fp32 add; old from Cin, which
// is C in place), rounded to OutT (RNE).
template <class OutT>
__device__ __forceinline__ void store_out(void* C, const void* Cin, int64_t ldc, int64_t i,
                                          int64_t j, float acc, bool accumulate) {
  if constexpr (sizeof(OutT) == 4) {
    float* c = static_cast<float*>(C) + i * ldc + j;
    const float* o = static_cast<const float*>(Cin) + i * ldc + j;
    *c = accumulate ? __fadd_rn(*o, acc) : acc;
  } else {
    __nv_bfloat16* c = static_cast<__nv_bfloat16*>(C) + i * ldc + j;
    const __nv_bfloat16* o = static_cast<const __nv_bfloat16*>(Cin) + i * ldc + j;
    *c = __float2bfloat16_rn(accumulate ? __fadd_rn(__bfloat162float(*o), acc) : acc);
  }
}
// Two neighbouring elements (i, j), (i, j+1) in one store; the caller checked alignment.
// Same per-element arithmetic as store_out.
template <class OutT>
__device__ __forceinline__ void store_out2(void* C, const void* Cin, int64_t ldc, int64_t i,
                                           int64_t j, float a0, float a1, bool accumulate) {
  if constexpr (sizeof(OutT) == 4) {
    float2* c = reinterpret_cast<float2*>(static_cast<float*>(C) + i * ldc + j);
    if (accumulate) {
      const float2 o = *reinterpret_cast<const float2*>(static_cast<const float*>(Cin) + i * ldc + j);
      a0 = __fadd_rn(o.x, a0);
      a1 = __fadd_rn(o.y, a1);
    }
    *c = make_float2(a0, a1);
  } else {
    __nv_bfloat162* c = reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(C) + i * ldc + j);
    if (accumulate) {
      const __nv_bfloat162 o = *reinterpret_cast<const __nv_bfloat162*>(
          static_cast<const __nv_bfloat16*>(Cin) + i * ldc + j);
      a0 = __fadd_rn(__bfloat162float(o.x), a0);
      a1 = __fadd_rn(__bfloat162float(o.y), a1);
    }
    __nv_bfloat162 v;
    v.x = __float2bfloat16_rn(a0);
    v.y = __float2bfloat16_rn(a1);
    *c = v;
  }
}

}  // namespace
}  // namespace qarl::kernels::gpu::detail
