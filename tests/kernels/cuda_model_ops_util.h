// Host-side helpers of the CUDA model-op tests (cuda_model_ops_test.cpp): strided device
// matrices with poisoned gaps, element conversions, bitwise and normalized comparisons.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "qarl/core/half.h"
#include "qarl/core/tensor.h"
#include "qarl/kernels/cuda/device.h"
#include "qarl/kernels/cuda/launch.h"
#include "qarl/kernels/cuda/model_ops.h"
#include "test_util.h"

#define SEEDED()                                   \
  const uint64_t seed = ::qarl::test::fresh_seed(); \
  SCOPED_TRACE(::testing::Message() << "seed " << seed)

namespace qarl::test::gpu_ops {

using kernels::gpu::Elem;

inline DType dtype_of(Elem e) {
  return e == Elem::F32 ? DType::F32 : e == Elem::BF16 ? DType::BF16 : DType::F16;
}
inline const char* elem_name(Elem e) {
  return e == Elem::F32 ? "f32" : e == Elem::BF16 ? "bf16" : "f16";
}

inline void put(void* base, DType dt, int64_t i, float v) {
  if (dt == DType::F32) static_cast<float*>(base)[i] = v;
  else if (dt == DType::BF16) static_cast<uint16_t*>(base)[i] = f32_to_bf16(v);
  else static_cast<uint16_t*>(base)[i] = f32_to_f16(v);
}
inline float get(const void* base, DType dt, int64_t i) {
  if (dt == DType::F32) return static_cast<const float*>(base)[i];
  if (dt == DType::BF16) return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
  return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
}
// v rounded to dt (RNE), as float.
inline std::vector<float> rounded(std::vector<float> v, DType dt) {
  for (float& f : v) f = dt == DType::F32 ? f : dt == DType::BF16 ? round_bf16(f) : round_f16(f);
  return v;
}

// A [rows, cols] matrix on the device with row stride `stride` (elements) of type dt; the
// gap elements (and everything when vals is empty) hold 0xff bytes (NaN for floats).
inline Tensor upload(const std::vector<float>& vals, int64_t rows, int64_t cols, int64_t stride,
                     DType dt) {
  Tensor h = Tensor::empty({rows * stride}, dt);
  std::memset(h.data(), 0xff, h.nbytes());
  if (!vals.empty())
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) put(h.data(), dt, r * stride + c, vals[size_t(r * cols + c)]);
  return h.to_device(Device::CUDA);
}
inline Tensor upload(const std::vector<float>& vals, DType dt = DType::F32) {
  return upload(vals, 1, int64_t(vals.size()), int64_t(vals.size()), dt);
}
inline Tensor poisoned(int64_t n, DType dt) { return upload({}, 1, n, n, dt); }
inline Tensor upload_i32(const std::vector<int32_t>& v) {
  Tensor h = Tensor::empty({int64_t(v.size())}, DType::I32);
  std::memcpy(h.data(), v.data(), v.size() * 4);
  return h.to_device(Device::CUDA);
}

// Synchronizes (surfacing asynchronous errors), then the [rows, cols] values as float.
inline std::vector<float> download(const Tensor& d, int64_t rows, int64_t cols, int64_t stride) {
  kernels::gpu::synchronize();
  Tensor h = d.to_device(Device::CPU);
  std::vector<float> v(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) v[size_t(r * cols + c)] = get(h.data(), h.dtype(), r * stride + c);
  return v;
}
inline std::vector<float> download(const Tensor& d) {
  return download(d, 1, d.numel(), d.numel());
}
// Raw element bits of [rows, cols] (for bitwise checks of 16-bit outputs).
inline std::vector<uint32_t> download_bits(const Tensor& d, int64_t rows, int64_t cols,
                                           int64_t stride) {
  kernels::gpu::synchronize();
  Tensor h = d.to_device(Device::CPU);
  const size_t es = dtype_size(h.dtype());
  std::vector<uint32_t> v(size_t(rows * cols), 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      std::memcpy(&v[size_t(r * cols + c)], static_cast<const char*>(h.data()) + (r * stride + c) * es, es);
  return v;
}
// Bits of `want` in dt (what a kernel that rounds once to dt must produce).
inline std::vector<uint32_t> bits_in(const std::vector<float>& want, DType dt) {
  std::vector<uint32_t> v(want.size());
  for (size_t i = 0; i < want.size(); ++i)
    v[i] = dt == DType::F32 ? f32_bits(want[i]) : dt == DType::BF16 ? f32_to_bf16(want[i]) : f32_to_f16(want[i]);
  return v;
}

// The elements outside the [rows, cols] view are still 0xff bytes.
inline ::testing::AssertionResult gaps_untouched(const Tensor& d, int64_t rows, int64_t cols,
                                                 int64_t stride) {
  Tensor h = d.to_device(Device::CPU);
  const size_t es = dtype_size(h.dtype());
  const auto* p = static_cast<const unsigned char*>(h.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = cols; c < stride; ++c)
      for (size_t b = 0; b < es; ++b)
        if (p[size_t(r * stride + c) * es + b] != 0xff)
          return ::testing::AssertionFailure() << "gap element (" << r << ", " << c << ") was written";
  return ::testing::AssertionSuccess();
}

template <class T>
::testing::AssertionResult same_bits(const std::vector<T>& got, const std::vector<T>& want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "sizes " << got.size() << " vs " << want.size();
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0) {
      uint64_t a = 0, b = 0;
      std::memcpy(&a, &got[i], sizeof(T));
      std::memcpy(&b, &want[i], sizeof(T));
      return ::testing::AssertionFailure()
             << fmt::format("element {} of {}: got {:#x} want {:#x}", i, got.size(), a, b)
             << " (" << double(got[i]) << " vs " << double(want[i]) << ")";
    }
  return ::testing::AssertionSuccess();
}

// max |got - want| / max |want| (infinite when got has a non-finite value where want does not).
inline double norm_err(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isfinite(want[i]) && !std::isfinite(got[i])) return INFINITY;
    num = std::max(num, std::fabs(double(got[i]) - double(want[i])));
    den = std::max(den, std::fabs(double(want[i])));
  }
  return den > 0 ? num / den : num;
}
inline ::testing::AssertionResult close(const std::vector<float>& got,
                                        const std::vector<float>& want, double bound) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "sizes " << got.size() << " vs " << want.size();
  const double e = norm_err(got, want);
  if (e <= bound) return ::testing::AssertionSuccess();
  size_t worst = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= std::fabs(got[worst] - want[worst]))) worst = i;
  return ::testing::AssertionFailure() << "normalized error " << e << " > " << bound
                                       << " (worst element " << worst << ": " << got[worst]
                                       << " vs " << want[worst] << ")";
}

// Pointer to element `i` of a device tensor.
inline void* at(const Tensor& t, int64_t i) {
  return static_cast<char*>(t.data()) + i * int64_t(dtype_size(t.dtype()));
}

inline std::vector<int32_t> random_ints(size_t n, int32_t hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = int32_t(rng() % uint64_t(hi));
  return v;
}
inline kernels::gpu::bf16* bf16p(const Tensor& t) { return static_cast<kernels::gpu::bf16*>(t.data()); }
inline float* f32p(const Tensor& t) { return static_cast<float*>(t.data()); }
inline int32_t* i32p(const Tensor& t) { return static_cast<int32_t*>(t.data()); }

// RMSNorm shapes: rows of `groups` groups of `dim` elements.
struct NormCase { int64_t rows; int groups; int dim; };
inline constexpr Elem kTypes[] = {Elem::F32, Elem::BF16};

}  // namespace qarl::test::gpu_ops
