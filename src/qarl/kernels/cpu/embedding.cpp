#include "qarl/kernels/cpu/embedding.h"

#include <cstring>

namespace qarl::kernels {

void embedding_forward(const float* table, int64_t dim, const int32_t* tokens, int64_t rows,
                       float* out) {
#pragma omp parallel for schedule(static) if (rows * dim > 65536)
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(out + r * dim, table + int64_t(tokens[r]) * dim, sizeof(float) * size_t(dim));
}

void embedding_backward(const float* dout, int64_t dim, const int32_t* tokens, int64_t rows,
                        float* dtable) {
  // Parallel over columns: every element still receives its rows in order 0..rows-1.
  const int64_t chunk = 64;
#pragma omp parallel for schedule(static) if (rows * dim > 65536)
  for (int64_t c0 = 0; c0 < dim; c0 += chunk) {
    const int64_t c1 = c0 + chunk < dim ? c0 + chunk : dim;
    for (int64_t r = 0; r < rows; ++r) {
      float* dst = dtable + int64_t(tokens[r]) * dim;
      const float* src = dout + r * dim;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

}  // namespace qarl::kernels
