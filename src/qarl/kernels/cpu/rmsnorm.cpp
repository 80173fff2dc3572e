#include "qarl/kernels/cpu/rmsnorm.h"

#include <cmath>
#include <vector>

namespace qarl::kernels {

void rmsnorm_forward(const float* x, const float* w, int64_t rows, int64_t dim, int64_t stride,
                     float eps, float* y, float* rstd) {
#pragma omp parallel for schedule(static) if (rows * dim > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * stride;
    float* yr = y + r * stride;
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) ss += double(xr[i]) * double(xr[i]);
    const float var = float(ss / double(dim));
    const float rs = 1.0f / std::sqrt(var + eps);
    if (rstd) rstd[r] = rs;
    for (int64_t i = 0; i < dim; ++i) yr[i] = w[i] * (xr[i] * rs);
  }
}

void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd,
                      int64_t rows, int64_t dim, int64_t stride, float* dx, float* dw) {
  // y_i = w_i x_i r, r = (mean(x^2)+eps)^-1/2, dr/dx_j = -r^3 x_j / dim.
#pragma omp parallel for schedule(static) if (rows * dim > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * stride;
    const float* gr = dy + r * stride;
    float* dxr = dx + r * stride;
    const double rs = rstd[r];
    double dot = 0.0;  // sum_i g_i w_i x_i
    for (int64_t i = 0; i < dim; ++i) dot += double(gr[i]) * double(w[i]) * double(xr[i]);
    const double c = dot * rs * rs * rs / double(dim);
    for (int64_t i = 0; i < dim; ++i)
      dxr[i] = float(double(gr[i]) * double(w[i]) * rs - c * double(xr[i]));
  }
  if (!dw) return;
  // Columns in parallel, rows in order: a fixed sum order per weight.
#pragma omp parallel for schedule(static) if (rows * dim > 32768)
  for (int64_t i = 0; i < dim; ++i) {
    double s = 0.0;
    for (int64_t r = 0; r < rows; ++r) s += double(dy[r * stride + i]) * double(x[r * stride + i]) * double(rstd[r]);
    dw[i] += float(s);
  }
}

}  // namespace qarl::kernels
