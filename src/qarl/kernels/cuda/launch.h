// Raw-pointer launchers of the CUDA kernels (defined in *.cu, only in CUDA builds). The Tensor
// API in fake_quant.h / kv_codec.h checks shapes, dtypes and devices, then calls these.
// All launches are asynchronous on `stream` (nullptr: the legacy default stream).
#pragma once
#include <cstdint>

namespace qarl::kernels::gpu {

enum class Elem : uint8_t { F32, BF16, F16 };

// Throws qarl::Error (runtime) naming `what` if the last CUDA call or launch failed.
void check_last_launch(const char* what);

// FP8 per-tensor fake quant: y = e4m3(x*s)*inv elementwise; y may equal x.
void launch_fp8_fake_quant(Elem t, const void* x, void* y, int64_t n, float s, float inv,
                           void* stream);
// NVFP4 fake quant over blocks of 16 contiguous elements (n % 16 == 0).
// Scalars from qarl::quant::nvfp4_scales; triton selects Nvfp4Division::kTriton.
struct Nvfp4Scalars { float gs, six_gs, rcp_six_gs; bool triton; };
void launch_nvfp4_fake_quant(Elem t, const void* x, void* y, int64_t n, Nvfp4Scalars k,
                             void* stream);
// Clipped backward: dx = |x| <= amax ? dy : 0.
void launch_clipped_backward(Elem t, const void* dy, const void* x, void* dx, int64_t n,
                             float amax, void* stream);
// Native KV codecs. FP8: one E4M3 code per element. NVFP4: two E2M1 codes per byte (element
// 2i in the low nibble, 2i+1 in the high nibble) and one E4M3 block-scale code per 16.
void launch_fp8_encode(Elem t, const void* x, uint8_t* codes, int64_t n, float s, void* stream);
void launch_fp8_decode(Elem t, const uint8_t* codes, void* y, int64_t n, float inv, void* stream);
void launch_nvfp4_encode(Elem t, const void* x, uint8_t* packed, uint8_t* scales, int64_t n,
                         Nvfp4Scalars k, void* stream);
void launch_nvfp4_decode(Elem t, const uint8_t* packed, const uint8_t* scales, void* y,
                         int64_t n, float gs, void* stream);

}  // namespace qarl::kernels::gpu
