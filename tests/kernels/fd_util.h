// Finite-difference helpers for the kernel and model gradient checks: compare the analytic
// directional derivative <grad, v> with the central difference of a scalar function.
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
// (f(x + h v) - f(x - h v)) / 2h ~= <grad, v> within rel_tol (relative to the larger of the
// two magnitudes, floored at abs_floor) plus abs_noise, the fp32 rounding noise of f over 2h.
inline void expect_directional_derivative(const std::function<double(const std::vector<float>&)>& f,
                                          const std::vector<float>& x,
                                          const std::vector<float>& grad,
                                          const std::vector<float>& v, double h,
                                          double rel_tol, double abs_floor = 1e-3,
                                          double abs_noise = 1e-4) {
  std::vector<float> xp(x), xm(x);
  for (size_t i = 0; i < x.size(); ++i) {
    xp[i] = x[i] + float(h) * v[i];
    xm[i] = x[i] - float(h) * v[i];
  }
  const double fd = (f(xp) - f(xm)) / (2.0 * h);
  const double an = dot(grad, v);
  const double scale = std::max({std::fabs(fd), std::fabs(an), abs_floor});
  EXPECT_NEAR(fd, an, rel_tol * scale + abs_noise) << "finite difference " << fd << " vs analytic " << an;
}

}  // namespace qarl::test
