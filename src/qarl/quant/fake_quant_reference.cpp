// The simple scalar references for the fake-quant kernels: one element at a time, written
// straight from the formulas (reference-spec 2.2/2.3), using the readable E4M3 codec of
// formats.cpp rather than the branch-free rounding. Tests hold the fast paths to these.
#include <cmath>

#include "qarl/core/error.h"
#include "qarl/quant/fake_quant.h"
#include "qarl/quant/formats.h"
#include "qarl/quant/triton_rcp.h"

namespace qarl::quant {

namespace {
float e4m3(float v) { return e4m3_decode(e4m3_encode(v)); }

Tensor as_f32_values(const Tensor& x, std::vector<float>& v) {
  v = x.to_f32_vector();
  return Tensor::empty(x.shape(), x.dtype());
}

Tensor from_values(const std::vector<float>& y, const Tensor& like) {
  // Tensor::from_f32 rounds to the dtype with RNE, as torch's .to(dtype) does.
  return Tensor::from_f32(y, like.shape(), like.dtype());
}
}  // namespace

Tensor fake_quant_fp8_reference(const Tensor& x, float amax) {
  if (!std::isfinite(amax)) throw err("FP8 reference: amax {} is not finite", amax);
  float a = amax <= std::ldexp(1.0f, -24) ? 1.0f : amax;
  float s = 448.0f / a;
  float inv = 1.0f / s;
  std::vector<float> v;
  as_f32_values(x, v);
  for (float& xi : v) xi = e4m3(xi * s) * inv;
  return from_values(v, x);
}

Tensor fake_quant_nvfp4_reference(const Tensor& x, float amax, Nvfp4Division division) {
  if (!std::isfinite(amax)) throw err("NVFP4 reference: amax {} is not finite", amax);
  if (x.ndim() == 0 || x.dim(-1) % 16 != 0) throw err("NVFP4 reference: bad last dimension");
  // The division as ModelOpt's Triton kernel does it, or IEEE.
  auto div = [&](float a, float b) {
    return division == Nvfp4Division::kTriton ? triton_div(a, b) : a / b;
  };
  float gs = amax * float(1.0 / 2688.0);  // PyTorch CUDA: divide by a scalar = multiply by 1/b
  if (!(gs > 0.0f)) gs = 1e-12f;
  std::vector<float> v;
  as_f32_values(x, v);
  for (size_t b = 0; b < v.size(); b += 16) {
    float m = 0.0f;
    for (int i = 0; i < 16; ++i) {
      float a = std::fabs(v[b + i]);
      if (a > m) m = a;  // NaN never wins
    }
    float sr = div(m, 6.0f * gs);
    if (sr > 448.0f) sr = 448.0f;
    float S = e4m3(sr) * gs;
    for (int i = 0; i < 16; ++i) {
      float xi = v[b + i];
      float r = div(std::fabs(xi), S);
      float q;
      if (r <= 0.25f) q = 0.0f;
      else if (r < 0.75f) q = 0.5f;
      else if (r <= 1.25f) q = 1.0f;
      else if (r < 1.75f) q = 1.5f;
      else if (r <= 2.5f) q = 2.0f;
      else if (r < 3.5f) q = 3.0f;
      else if (r <= 5.0f) q = 4.0f;
      else q = 6.0f;
      float y = q * S;
      // Triton's unary minus is 0 - y (-(+0) = +0); PyTorch negates (-(+0) = -0).
      v[b + i] = xi >= 0.0f ? y : (division == Nvfp4Division::kTriton ? 0.0f - y : -y);
    }
  }
  return from_values(v, x);
}

}  // namespace qarl::quant
