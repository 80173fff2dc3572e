// The PTX building blocks of qarl's tensor-core kernels (the attention kernels through
// attention_mma.cuh, the exact GEMM through gemm_exact_ptx.cuh): mma.sync m16n8k16 bf16 with
// fp32 accumulation, ldmatrix fragment loads and cp.async copies. One definition each: the
// exact GEMM's batch invariance and the attention's rest on `mma_bf16` being the one
// arithmetic instruction of their products.
// Fragment layouts (PTX ISA, "mma.m16n8k16"), with g = lane / 4 and tq = lane % 4:
//   A 16x16 row-major: a0 (row g, cols 2tq..+1), a1 (row g+8, same), a2 (row g, cols 2tq+8..+9),
//     a3 (row g+8, cols 2tq+8..+9);
//   B 16x8: b0 (k rows 2tq..+1, col g), b1 (k rows 2tq+8..+9, col g);
//   C 16x8: c0, c1 (row g, cols 2tq..+1), c2, c3 (row g+8, same).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace qarl::kernels::gpu::ptx {

// c = a . b + c for one 16x8 fp32 tile.
__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 16 bytes global -> shared, asynchronous; the first src_bytes (0 or 16) are read, the rest
// zero-filled (0: nothing is read, gmem must still be a valid address).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i, r[i] its fragment.
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t& r0, uint32_t& r1, const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r0), "=r"(r1)
               : "r"(s));
}

}  // namespace qarl::kernels::gpu::ptx
