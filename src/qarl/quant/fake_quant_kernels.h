// Internal: the per-row fake-quant kernels as always-inline templates. fake_quant.cpp
// instantiates them once per instruction set (default x86-64, AVX2, AVX-512) under
// __attribute__((target)) and picks one at run time. The arithmetic is the same scalar IEEE
// fp32 sequence in every instantiation (no FMA contraction, no reassociation: the block
// max is a tree of exact max operations, which is order-independent), so every path is
// bitwise identical to the scalar reference.
#pragma once
#include <cmath>
#include <cstdint>

#include "qarl/core/dtype.h"
#include "qarl/core/half.h"
#include "qarl/quant/formats.h"
#include "qarl/quant/triton_rcp.h"

#define QARL_QK_INLINE inline __attribute__((always_inline))

namespace qarl::quant::detail {

template <DType D> QARL_QK_INLINE float load(const void* p, int64_t i) {
  if constexpr (D == DType::F32) return static_cast<const float*>(p)[i];
  else if constexpr (D == DType::BF16) return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  else return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
}
template <DType D> QARL_QK_INLINE void store(void* p, int64_t i, float v) {
  if constexpr (D == DType::F32) static_cast<float*>(p)[i] = v;
  else if constexpr (D == DType::BF16) static_cast<uint16_t*>(p)[i] = f32_to_bf16(v);
  else static_cast<uint16_t*>(p)[i] = f32_to_f16(v);
}

template <DType D>
QARL_QK_INLINE void fp8_row(const void* in, void* out, int64_t n, float s, float inv) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) store<D>(out, i, e4m3_round(load<D>(in, i) * s) * inv);
}

// The E4M3 block scale s8 of 16 values: e4m3(min(m / (6*gs), 448)), where the division is
// Triton's (m * rcp(6*gs), `rcp_six_gs`) or IEEE (m / six_gs). NaN inputs are ignored by
// the block max (replaced by 0); inf gives m = inf -> 448.
template <bool kTriton>
QARL_QK_INLINE float nvfp4_block_s8(const float* x, float six_gs, float rcp_six_gs) {
  float a[16];
#pragma omp simd
  for (int i = 0; i < 16; ++i) {
    float v = std::fabs(x[i]);
    a[i] = v == v ? v : 0.0f;
  }
  for (int w = 8; w >= 1; w /= 2) {
#pragma omp simd
    for (int i = 0; i < w; ++i) a[i] = a[i + w] > a[i] ? a[i + w] : a[i];
  }
  float sr = kTriton ? a[0] * rcp_six_gs : a[0] / six_gs;  // 6*gs computed first
  sr = sr < kE4M3Max ? sr : kE4M3Max;
  return e4m3_round(sr);
}

template <DType D, bool kTriton>
QARL_QK_INLINE void nvfp4_row(const void* in, void* out, int64_t n, float gs, float six_gs,
                              float rcp_six_gs) {
  for (int64_t b = 0; b < n; b += 16) {
    float x[16];
#pragma omp simd
    for (int i = 0; i < 16; ++i) x[i] = load<D>(in, b + i);
    const float S = nvfp4_block_s8<kTriton>(x, six_gs, rcp_six_gs) * gs;
    const float rS = kTriton ? triton_rcp(S) : 0.0f;
#pragma omp simd
    for (int i = 0; i < 16; ++i) {
      // S == 0: |x|/0 is inf or NaN, the ladder gives 6, and 6*0 = 0 (ModelOpt HEAD).
      const float a = std::fabs(x[i]);
      const float r = kTriton ? a * rS : a / S;
      const float v = e2m1_round_magnitude(r) * S;
      // Triton's unary minus is 0 - v (so -(+0) = +0); PyTorch's is a true negation.
      store<D>(out, b + i, x[i] >= 0.0f ? v : (kTriton ? 0.0f - v : -v));
    }
  }
}

}  // namespace qarl::quant::detail
