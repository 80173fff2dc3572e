// RMSNorm as Hugging Face computes it in fp32: rstd = 1/sqrt(mean(x^2) + eps),
// y = w * (x * rstd). The sum of squares is accumulated in double in index order (fixed
// order per row, independent of the batch).
#pragma once
#include <cstdint>

namespace qarl::kernels {

// x, y: [rows, dim] with row stride `stride` (y may equal x); rstd: [rows] or nullptr.
void rmsnorm_forward(const float* x, const float* w, int64_t rows, int64_t dim, int64_t stride,
                     float eps, float* y, float* rstd);
// dx = d/dx, written (not accumulated) with the same strides; dw += d/dw (may be nullptr).
void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd,
                      int64_t rows, int64_t dim, int64_t stride, float* dx, float* dw);

}  // namespace qarl::kernels
