#include "qarl/kernels/cpu/swiglu.h"

#include <cmath>

namespace qarl::kernels {

void swiglu_forward(const float* gu, int64_t rows, int64_t inter, float* h) {
#pragma omp parallel for schedule(static) if (rows * inter > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const float* g = gu + r * 2 * inter;
    const float* u = g + inter;
    float* hr = h + r * inter;
    for (int64_t i = 0; i < inter; ++i) hr[i] = (g[i] / (1.0f + std::exp(-g[i]))) * u[i];
  }
}

void swiglu_backward(const float* dh, const float* gu, int64_t rows, int64_t inter, float* dgu) {
#pragma omp parallel for schedule(static) if (rows * inter > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const float* g = gu + r * 2 * inter;
    const float* u = g + inter;
    const float* d = dh + r * inter;
    float* dg = dgu + r * 2 * inter;
    float* du = dg + inter;
    for (int64_t i = 0; i < inter; ++i) {
      const float sig = 1.0f / (1.0f + std::exp(-g[i]));
      const float silu = g[i] * sig;
      du[i] = d[i] * silu;
      dg[i] = d[i] * u[i] * (sig * (1.0f + g[i] * (1.0f - sig)));
    }
  }
}

}  // namespace qarl::kernels
