// Shared by the GPU matrix-product tests (cuda_gemm_test.cpp, cuda_gemm_lt_test.cpp): random
// bf16 operands, device upload/download, a double-precision reference with sum |a w|, and the
// per-element check against the error bound:
//   |got - want| <= L * 2^-22 * sum_l |a_l w_l|  +  u_out * (|want| + |dot|)
// with want = old (if accumulating) + dot (exact), u_out = 2^-7 for a BF16 output and 2^-22
// for F32 (cuda_gemm_test.cpp says why).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "qarl/core/half.h"
#include "qarl/core/tensor.h"
#include "qarl/kernels/cuda/gemm.h"
#include "test_util.h"

namespace qarl::gemm_ref {

using kernels::gpu::Elem;

// bf16 bits of `n` random normal values (the inputs are exactly representable, so the
// reference sees the same numbers as the GPU).
inline std::vector<uint16_t> random_bf16(size_t n, float scale, uint64_t seed) {
  std::vector<float> v = test::random_normal(n, scale, seed);
  std::vector<uint16_t> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = f32_to_bf16(v[i]);
  return b;
}
// A [rows, cols] matrix with row stride ld; the gap columns hold random junk (never read).
inline std::vector<uint16_t> random_matrix(int64_t rows, int64_t cols, int64_t ld, float scale, uint64_t seed) {
  return random_bf16(size_t(std::max<int64_t>(rows * ld, 1)), scale, seed);
}

template <class T>
inline Tensor upload(const std::vector<T>& v) {
  const DType dt = sizeof(T) == 4 ? DType::F32 : DType::BF16;
  Tensor h = Tensor::empty({int64_t(v.size())}, dt);
  std::memcpy(h.data(), v.data(), v.size() * sizeof(T));
  return h.to_device(Device::CUDA);
}
template <class T>
inline std::vector<T> download(const Tensor& d) {
  Tensor h = d.to_device(Device::CPU);
  std::vector<T> v(size_t(h.numel()));
  std::memcpy(v.data(), h.data(), v.size() * sizeof(T));
  return v;
}
inline const uint16_t* bf(const Tensor& t) { return static_cast<const uint16_t*>(t.data()); }

// Exact products in double, with sum |a w| for the bound.
struct Ref { std::vector<double> val, mag; };
// out[i][j] = sum_l X[i*xs_i + l*xs_l] * Y[j*ys_j + l*ys_l], i < R, j < C, l < L.
inline Ref dot_ref(int64_t R, int64_t C, int64_t L, const std::vector<uint16_t>& X, int64_t xs_i,
                   int64_t xs_l, const std::vector<uint16_t>& Y, int64_t ys_j, int64_t ys_l) {
  std::vector<double> x(X.size()), y(Y.size());
  for (size_t i = 0; i < X.size(); ++i) x[i] = bf16_to_f32(X[i]);
  for (size_t i = 0; i < Y.size(); ++i) y[i] = bf16_to_f32(Y[i]);
  Ref r{std::vector<double>(size_t(R * C)), std::vector<double>(size_t(R * C))};
#pragma omp parallel for
  for (int64_t i = 0; i < R; ++i)
    for (int64_t j = 0; j < C; ++j) {
      double s = 0, m = 0;
      for (int64_t l = 0; l < L; ++l) {
        double p = x[size_t(i * xs_i + l * xs_l)] * y[size_t(j * ys_j + l * ys_l)];
        s += p;
        m += std::fabs(p);
      }
      r.val[size_t(i * C + j)] = s;
      r.mag[size_t(i * C + j)] = m;
    }
  return r;
}

// The output buffer [rows, ld]: old values (random, or NaN poison when not accumulating) in
// the [rows, cols] part, NaN poison in the gap columns.
inline std::vector<float> old_values(int64_t rows, int64_t cols, int64_t ld, bool accumulate, uint64_t seed) {
  std::vector<float> v(size_t(std::max<int64_t>(rows * ld, 1)), std::nanf(""));
  std::vector<float> r = test::random_normal(v.size(), 2.0f, seed);
  if (accumulate)
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) v[size_t(i * ld + j)] = r[size_t(i * ld + j)];
  return v;
}
inline Tensor upload_out(const std::vector<float>& old, Elem t) {
  if (t == Elem::F32) return upload(old);
  std::vector<uint16_t> b(old.size());
  for (size_t i = 0; i < old.size(); ++i) b[i] = std::isnan(old[i]) ? uint16_t(0xffff) : f32_to_bf16(old[i]);
  return upload(b);
}
// The output as floats plus whether every gap element kept its poison bits.
inline std::vector<float> download_out(const Tensor& d, Elem t) {
  if (t == Elem::F32) return download<float>(d);
  std::vector<uint16_t> b = download<uint16_t>(d);
  std::vector<float> v(b.size());
  for (size_t i = 0; i < b.size(); ++i) v[i] = bf16_to_f32(b[i]);
  return v;
}

// Checks out[rows, cols] (stride ld) against old + ref within the stated bound, and that the
// gap columns are untouched (NaN). Returns the largest |err| / bound seen.
inline ::testing::AssertionResult check_result(const std::vector<float>& got, const std::vector<float>& old_in,
                                               Elem t, bool accumulate, const Ref& ref, int64_t rows,
                                               int64_t cols, int64_t ld, int64_t L, double* worst) {
  const double u_out = t == Elem::BF16 ? std::ldexp(1.0, -7) : std::ldexp(1.0, -22);
  const double u_acc = double(L) * std::ldexp(1.0, -22);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < ld; ++j) {
      const float g = got[size_t(i * ld + j)];
      if (j >= cols) {
        if (!std::isnan(g))
          return ::testing::AssertionFailure() << fmt::format("gap element ({}, {}) overwritten: {}", i, j, g);
        continue;
      }
      double old = 0;
      if (accumulate) old = t == Elem::BF16 ? round_bf16(old_in[size_t(i * ld + j)]) : old_in[size_t(i * ld + j)];
      const double want = old + ref.val[size_t(i * cols + j)];
      const double bound = u_acc * ref.mag[size_t(i * cols + j)] +
                           u_out * (std::fabs(want) + std::fabs(ref.val[size_t(i * cols + j)])) + 1e-30;
      const double e = std::fabs(double(g) - want);
      if (!(e <= bound))
        return ::testing::AssertionFailure()
               << fmt::format("element ({}, {}): got {} want {} (|err| {:.3g} > bound {:.3g})", i, j, g,
                              want, e, bound);
      *worst = std::max(*worst, e / bound);
    }
  return ::testing::AssertionSuccess();
}

}  // namespace qarl::gemm_ref
