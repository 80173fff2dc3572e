// The pieces both exact-GEMM kernels share (gemm_exact.cu: the small/mid tiles and the
// guarded-load path; gemm_exact_large.cuh: the large-M kernel): the launch arguments, the
// PTX wrappers and the per-element output rule. The one arithmetic instruction of the
// product is mma_bf16_16816 (see gemm_exact.cu's header for the per-element contract).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

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
};

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t& r0, uint32_t& r1, const void* p) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r0), "=r"(r1)
               : "r"(s));
}
// d = a . b + d for one 16x8 fp32 tile (the only arithmetic instruction of the product).
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                               uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The output rule, per element: C = acc, or C = old + acc (one fp32 add), rounded to OutT (RNE).
template <class OutT>
__device__ __forceinline__ void store_out(void* C, int64_t ldc, int64_t i, int64_t j, float acc,
                                          bool accumulate) {
  if constexpr (sizeof(OutT) == 4) {
    float* c = static_cast<float*>(C) + i * ldc + j;
    *c = accumulate ? __fadd_rn(*c, acc) : acc;
  } else {
    __nv_bfloat16* c = static_cast<__nv_bfloat16*>(C) + i * ldc + j;
    *c = __float2bfloat16_rn(accumulate ? __fadd_rn(__bfloat162float(*c), acc) : acc);
  }
}
// Two neighbouring elements (i, j), (i, j+1) in one store; the caller checked alignment.
// Same per-element arithmetic as store_out.
template <class OutT>
__device__ __forceinline__ void store_out2(void* C, int64_t ldc, int64_t i, int64_t j, float a0,
                                           float a1, bool accumulate) {
  if constexpr (sizeof(OutT) == 4) {
    float2* c = reinterpret_cast<float2*>(static_cast<float*>(C) + i * ldc + j);
    if (accumulate) {
      const float2 o = *c;
      a0 = __fadd_rn(o.x, a0);
      a1 = __fadd_rn(o.y, a1);
    }
    *c = make_float2(a0, a1);
  } else {
    __nv_bfloat162* c = reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(C) + i * ldc + j);
    if (accumulate) {
      const __nv_bfloat162 o = *c;
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
