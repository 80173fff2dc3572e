#include "qarl/kernels/cpu/linear.h"

namespace qarl::kernels {

void linear_forward(const float* x, int64_t ldx, int64_t rows, const PackedB& W,
                    const float* bias, float* y, int64_t ldy) {
  gemm(GemmA{x, ldx, 1}, rows, W, y, ldy);
  if (!bias) return;
  const int64_t n = W.N;
#pragma omp parallel for schedule(static) if (rows * n > 65536)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) y[r * ldy + j] += bias[j];
}

void linear_backward(const float* dy, int64_t ldy, const float* x, int64_t ldx, int64_t rows,
                     const float* W, int64_t out, int64_t in, float* dx, int64_t lddx,
                     float* dW, float* db) {
  if (dx) {
    PackedB Wkn;  // B[k = out index, n = in index] = W[out, in]
    pack_b_from_kn(W, out, in, in, Wkn);
    gemm(GemmA{dy, ldy, 1}, rows, Wkn, dx, lddx);
  }
  if (dW) {
    PackedB X;  // B[k = row, n = in] = x[row, in]
    pack_b_from_kn(x, rows, in, ldx, X);
    // A(i = out index, k = row) = dy[row, out]
    gemm(GemmA{dy, 1, ldy}, out, X, dW, in, /*accumulate=*/true);
  }
  if (db) {
#pragma omp parallel for schedule(static) if (rows * out > 65536)
    for (int64_t j = 0; j < out; ++j) {
      float s = 0.0f;
      for (int64_t r = 0; r < rows; ++r) s += dy[r * ldy + j];
      db[j] += s;
    }
  }
}

}  // namespace qarl::kernels
