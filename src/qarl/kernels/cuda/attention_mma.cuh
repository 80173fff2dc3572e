// Tensor-core building blocks shared by the attention kernels (attention_forward.cu,
// attention_backward_dq.cu, attention_backward_dkdv.cu): mma.sync m16n8k16 bf16 with fp32
// accumulation, ldmatrix fragment loads and cp.async copies. Fragment layouts (PTX ISA,
// "mma.m16n8k16"), with g = lane / 4 and tq = lane % 4:
//   A 16x16 row-major: a0 (row g, cols 2tq..+1), a1 (row g+8, same), a2 (row g, cols 2tq+8..+9),
//     a3 (row g+8, cols 2tq+8..+9);
//   B 16x8: b0 (k rows 2tq..+1, col g), b1 (k rows 2tq+8..+9, col g);
//   C 16x8: c0, c1 (row g, cols 2tq..+1), c2, c3 (row g+8, same).
// So a C fragment pair (n-tiles 2j, 2j+1) packed to bf16 is the A fragment of k-step j.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qarl::kernels::gpu::attn {

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (lo) at the lower address
  return *reinterpret_cast<uint32_t*>(&v);
}

__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int n = valid ? 16 : 0;  // 0: zero-fill, nothing read
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// 2^x in one MUFU instruction (ex2.approx.ftz: relative error ~2^-22, far below the bf16
// rounding that P gets next; 2^-inf = +0). exp2f without fast math costs several instructions,
// and the backward's elementwise work per score competes with its mma for issue slots.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
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

// 8 bf16 (16 bytes) from global to shared memory, zeros when !valid. vec: the source is 16-byte
// aligned (cp.async, asynchronous); otherwise four 4-byte loads through registers (synchronous).
__device__ __forceinline__ void copy8(uint16_t* smem, const uint16_t* gmem, bool valid,
                                      bool vec, const void* any_valid_ptr) {
  if (vec) {
    cp_async16(smem, valid ? static_cast<const void*>(gmem) : any_valid_ptr, valid);
  } else {
    uint4 w = make_uint4(0u, 0u, 0u, 0u);
    if (valid) {
      const uint32_t* s = reinterpret_cast<const uint32_t*>(gmem);
      w = make_uint4(s[0], s[1], s[2], s[3]);
    }
    *reinterpret_cast<uint4*>(smem) = w;
  }
}

}  // namespace qarl::kernels::gpu::attn
