// Token embedding lookup: out[r] = table[tokens[r]]. Backward scatters rows back (in row
// order, single thread per output column range, so the sum order is fixed).
#pragma once
#include <cstdint>

namespace qarl::kernels {

// Tokens must be in [0, vocab); callers validate (the model throws a clear Error).
void embedding_forward(const float* table, int64_t dim, const int32_t* tokens, int64_t rows,
                       float* out);
// dtable[tokens[r]] += dout[r], rows visited in order 0..rows-1.
void embedding_backward(const float* dout, int64_t dim, const int32_t* tokens, int64_t rows,
                        float* dtable);

}  // namespace qarl::kernels
