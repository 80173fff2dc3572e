// CUDA fake quantization and native KV codecs on device tensors: the GPU counterparts of
// qarl/quant/fake_quant.h, bitwise identical to them (tests/kernels/cuda_fake_quant_test.cpp).
// Formulas: reference-spec §2 and qarl/quant/fake_quant.h (FP8: y = e4m3(x*s)*inv; NVFP4:
// gs = amax*fl(1/2688), S = e4m3(min(blockmax/(6 gs), 448))*gs, E2M1 ladder, no 1e-5 guard,
// with Triton's divisions by default (a * rcp.approx(b), the sm_90 instruction itself here)
// or IEEE ones). The scalars come from qarl::quant::fp8_scales / nvfp4_scales.
//
// Tensors: CUDA, contiguous, F32/BF16/F16; an output has the input's shape and dtype and may be
// the input itself (in place). amax is the fp32 value of the quantizer's `_amax` (448 for
// use_constant_amax); a non-finite amax is an Error, as in the CPU reference.
// Launches are asynchronous on `stream` (a cudaStream_t; nullptr = default stream).
// Usable in any build: without CUDA every call throws a clear qarl::Error.
#pragma once
#include <cstdint>

#include "qarl/core/tensor.h"
#include "qarl/quant/fake_quant.h"

namespace qarl::kernels::gpu {

void fake_quant_fp8(const Tensor& x, float amax, const Tensor& y, void* stream = nullptr);
void fake_quant_nvfp4(const Tensor& x, float amax, const Tensor& y, void* stream = nullptr,
                      quant::Nvfp4Division division = quant::Nvfp4Division::kTriton);
Tensor fake_quant_fp8(const Tensor& x, float amax);    // allocates y
Tensor fake_quant_nvfp4(const Tensor& x, float amax,  // x.dim(-1) % 16 != 0 -> Error
                        quant::Nvfp4Division division = quant::Nvfp4Division::kTriton);

// Backward (reference-spec §2.4): pass_through (ModelOpt default) dx = dy; clipped:
// dx = dy where |x| <= amax, else 0 (NaN x -> 0). For NVFP4 amax is the global amax.
void fake_quant_backward(const Tensor& dy, const Tensor& x, float amax, bool pass_through,
                         const Tensor& dx, void* stream = nullptr);

// Native KV-cache codecs (layouts as qarl/quant: codes U8 or F8_E4M3 of x's shape; NVFP4
// packed U8 [..., D/2] with element 2i in the low nibble, block scales U8/F8_E4M3
// [..., D/16] holding the E4M3 code of s8). decode(encode(x)) == fake_quant(x) bitwise.
void encode_fp8(const Tensor& x, float amax, const Tensor& codes, void* stream = nullptr);
void decode_fp8(const Tensor& codes, float amax, const Tensor& y, void* stream = nullptr);
void encode_nvfp4(const Tensor& x, float amax, const Tensor& packed, const Tensor& scales,
                  void* stream = nullptr,
                  quant::Nvfp4Division division = quant::Nvfp4Division::kTriton);
void decode_nvfp4(const Tensor& packed, const Tensor& scales, float amax, const Tensor& y,
                  void* stream = nullptr);

}  // namespace qarl::kernels::gpu
