// Argument checks and dispatch of the CUDA fake-quant kernels (fake_quant.cu, kv_codec.cu).
#include "qarl/kernels/cuda/fake_quant.h"

#include <cmath>

#include "qarl/core/error.h"
#include "qarl/kernels/cuda/launch.h"

namespace qarl::kernels::gpu {
namespace {

Elem elem_of(const Tensor& t, const char* what) {
  if (!t.defined()) throw usage_err("{}: undefined tensor", what);
  if (t.device() != Device::CUDA) throw usage_err("{}: tensor is not on the CUDA device", what);
  switch (t.dtype()) {
    case DType::F32: return Elem::F32;
    case DType::BF16: return Elem::BF16;
    case DType::F16: return Elem::F16;
    default: throw usage_err("{}: dtype {} is not F32, BF16 or F16", what, dtype_name(t.dtype()));
  }
}
void check_codes(const Tensor& c, const Shape& shape, const char* what) {
  if (!c.defined() || c.device() != Device::CUDA)
    throw usage_err("{}: code tensor must be a CUDA tensor", what);
  if (c.dtype() != DType::U8 && c.dtype() != DType::F8_E4M3)
    throw usage_err("{}: code tensor dtype {} is not U8 or F8_E4M3", what, dtype_name(c.dtype()));
  if (c.shape() != shape)
    throw usage_err("{}: code tensor shape {} should be {}", what, shape_str(c.shape()), shape_str(shape));
}
void check_same(const Tensor& x, const Tensor& y, const char* what) {
  elem_of(y, what);
  if (y.dtype() != x.dtype() || y.shape() != x.shape())
    throw usage_err("{}: output {} {} differs from input {} {}", what, dtype_name(y.dtype()),
                    shape_str(y.shape()), dtype_name(x.dtype()), shape_str(x.shape()));
}
quant::Fp8Scales fp8_scales(float amax, const char* what) {
  if (!std::isfinite(amax)) throw err("{}: amax {} is not finite", what, amax);
  return quant::fp8_scales(amax);
}
Nvfp4Scalars nvfp4_scalars(float amax, quant::Nvfp4Division d, const char* what) {
  if (!std::isfinite(amax)) throw err("{}: amax {} is not finite", what, amax);
  quant::Nvfp4Scales sc = quant::nvfp4_scales(amax, d);
  return {sc.global_scale, sc.six_gs, sc.rcp_six_gs, d == quant::Nvfp4Division::kTriton};
}
Shape with_last(Shape s, int64_t last) { s.back() = last; return s; }
int64_t nvfp4_last_dim(const Tensor& x, const char* what) {
  if (x.ndim() == 0 || x.dim(-1) % 16 != 0)
    throw usage_err("{}: last dimension of shape {} is not a multiple of 16", what, shape_str(x.shape()));
  return x.dim(-1);
}

#ifndef QARL_HAVE_CUDA
[[noreturn]] void no_cuda(const char* what) {
  throw runtime_err("{}: this qarl was built without CUDA", what);
}
#endif

}  // namespace

void fake_quant_fp8(const Tensor& x, float amax, const Tensor& y, void* stream) {
  const char* what = "CUDA FP8 fake quant";
  Elem t = elem_of(x, what);
  check_same(x, y, what);
  quant::Fp8Scales k = fp8_scales(amax, what);
#ifdef QARL_HAVE_CUDA
  launch_fp8_fake_quant(t, x.data(), y.data(), x.numel(), k.scale, k.inv_scale, stream);
#else
  (void)t; (void)k; no_cuda(what);
#endif
}

void fake_quant_nvfp4(const Tensor& x, float amax, const Tensor& y, void* stream,
                      quant::Nvfp4Division division) {
  const char* what = "CUDA NVFP4 fake quant";
  Elem t = elem_of(x, what);
  check_same(x, y, what);
  nvfp4_last_dim(x, what);
  Nvfp4Scalars k = nvfp4_scalars(amax, division, what);
#ifdef QARL_HAVE_CUDA
  launch_nvfp4_fake_quant(t, x.data(), y.data(), x.numel(), k, stream);
#else
  (void)t; (void)k; no_cuda(what);
#endif
}

Tensor fake_quant_fp8(const Tensor& x, float amax) {
  elem_of(x, "CUDA FP8 fake quant");
  Tensor y = Tensor::empty(x.shape(), x.dtype(), Device::CUDA);
  fake_quant_fp8(x, amax, y);
  return y;
}
Tensor fake_quant_nvfp4(const Tensor& x, float amax, quant::Nvfp4Division division) {
  elem_of(x, "CUDA NVFP4 fake quant");
  nvfp4_last_dim(x, "CUDA NVFP4 fake quant");
  Tensor y = Tensor::empty(x.shape(), x.dtype(), Device::CUDA);
  fake_quant_nvfp4(x, amax, y, nullptr, division);
  return y;
}

void fake_quant_backward(const Tensor& dy, const Tensor& x, float amax, bool pass_through,
                         const Tensor& dx, void* stream) {
  const char* what = "CUDA fake quant backward";
  Elem t = elem_of(dy, what);
  check_same(dy, dx, what);
  if (pass_through) {
    if (dx.data() != dy.data()) Tensor(dx).copy_from(dy);  // handle copy, same storage
    return;
  }
  check_same(dy, x, what);
  if (!std::isfinite(amax)) throw err("{}: amax {} is not finite", what, amax);
#ifdef QARL_HAVE_CUDA
  launch_clipped_backward(t, dy.data(), x.data(), dx.data(), dy.numel(), amax, stream);
#else
  (void)t; no_cuda(what);
#endif
}

void encode_fp8(const Tensor& x, float amax, const Tensor& codes, void* stream) {
  const char* what = "CUDA FP8 encode";
  Elem t = elem_of(x, what);
  check_codes(codes, x.shape(), what);
  quant::Fp8Scales k = fp8_scales(amax, what);
#ifdef QARL_HAVE_CUDA
  launch_fp8_encode(t, x.data(), codes.data_as<uint8_t>(), x.numel(), k.scale, stream);
#else
  (void)t; (void)k; no_cuda(what);
#endif
}

void decode_fp8(const Tensor& codes, float amax, const Tensor& y, void* stream) {
  const char* what = "CUDA FP8 decode";
  Elem t = elem_of(y, what);
  check_codes(codes, y.shape(), what);
  quant::Fp8Scales k = fp8_scales(amax, what);
#ifdef QARL_HAVE_CUDA
  launch_fp8_decode(t, codes.data_as<uint8_t>(), y.data(), y.numel(), k.inv_scale, stream);
#else
  (void)t; (void)k; no_cuda(what);
#endif
}

void encode_nvfp4(const Tensor& x, float amax, const Tensor& packed, const Tensor& scales,
                  void* stream, quant::Nvfp4Division division) {
  const char* what = "CUDA NVFP4 encode";
  Elem t = elem_of(x, what);
  int64_t d = nvfp4_last_dim(x, what);
  check_codes(packed, with_last(x.shape(), d / 2), what);
  check_codes(scales, with_last(x.shape(), d / 16), what);
  Nvfp4Scalars k = nvfp4_scalars(amax, division, what);
#ifdef QARL_HAVE_CUDA
  launch_nvfp4_encode(t, x.data(), packed.data_as<uint8_t>(), scales.data_as<uint8_t>(),
                      x.numel(), k, stream);
#else
  (void)t; (void)k; no_cuda(what);
#endif
}

void decode_nvfp4(const Tensor& packed, const Tensor& scales, float amax, const Tensor& y,
                  void* stream) {
  const char* what = "CUDA NVFP4 decode";
  Elem t = elem_of(y, what);
  int64_t d = nvfp4_last_dim(y, what);
  check_codes(packed, with_last(y.shape(), d / 2), what);
  check_codes(scales, with_last(y.shape(), d / 16), what);
  float gs = nvfp4_scalars(amax, quant::Nvfp4Division::kTriton, what).gs;
#ifdef QARL_HAVE_CUDA
  launch_nvfp4_decode(t, packed.data_as<uint8_t>(), scales.data_as<uint8_t>(), y.data(),
                      y.numel(), gs, stream);
#else
  (void)t; (void)gs; no_cuda(what);
#endif
}

}  // namespace qarl::kernels::gpu
