// Finite-difference helpers for the kernel and model gradient checks: compare the analytic
// directional derivative <grad, v> with a central difference of a scalar function.
#pragma once
#include <cmath>
#include <functional>
#include <vector>

#include <gtest/gtest.h>

namespace qarl::test {

inline double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * double(b[i]);
  return s;
}

// f: scalar function of x (computed in double from float outputs). Checks
// the central difference along v ~= <grad, v> within rel_tol (relative to the larger of the
// two magnitudes, floored at abs_floor) plus abs_noise, the fp32 rounding noise of f over 2h.
inline void expect_directional_derivative(const std::function<double(const std::vector<float>&)>& f,
                                          const std::vector<float>& x,
                                          const std::vector<float>& grad,
                                          const std::vector<float>& v, double h,
                                          double rel_tol, double abs_floor = 1e-3,
                                          double abs_noise = 1e-4) {
  // Fourth-order central difference (8 (f(x+h) - f(x-h)) - (f(x+2h) - f(x-2h))) / 12h: its
  // truncation error is O(h^4), so curvature (RMSNorm, softmax) cannot masquerade as a wrong
  // gradient at the h that keeps fp32 rounding noise small (a 2-point difference failed a few
  // seeds in a thousand on RMSNorm).
  auto at = [&](double t) {
    std::vector<float> xt(x);
    for (size_t i = 0; i < x.size(); ++i) xt[i] = x[i] + float(t) * v[i];
    return f(xt);
  };
  const double fd = (8.0 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12.0 * h);
  const double an = dot(grad, v);
  const double scale = std::max({std::fabs(fd), std::fabs(an), abs_floor});
  EXPECT_NEAR(fd, an, rel_tol * scale + abs_noise) << "finite difference " << fd << " vs analytic " << an;
}

}  // namespace qarl::test
