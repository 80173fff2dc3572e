// Tensor-core building blocks shared by the attention kernels (attention_forward.cu,
// attention_backward_dq.cu, attention_backward_dkdv.cu): the PTX wrappers of mma_ptx.cuh
// (fragment layouts there), bf16 packing, exp2 and the global -> shared copy. A C fragment
// pair (n-tiles 2j, 2j+1) packed to bf16 is the A fragment of k-step j.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "qarl/kernels/cuda/mma_ptx.cuh"

namespace qarl::kernels::gpu::attn {

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (lo) at the lower address
  return *reinterpret_cast<uint32_t*>(&v);
}

using ptx::cp_async_commit;
using ptx::cp_async_wait;
using ptx::ldmatrix_x4;
using ptx::ldmatrix_x4_trans;
using ptx::mma_bf16;

// cp.async of 16 bytes, zeros (nothing read) when !valid.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  ptx::cp_async16(smem, gmem, valid ? 16 : 0);
}

// 2^x in one MUFU instruction (ex2.approx.ftz: relative error ~2^-22, far below the bf16
// rounding that P gets next; 2^-inf = +0). exp2f without fast math costs several instructions,
// and the backward's elementwise work per score competes with its mma for issue slots.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
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
