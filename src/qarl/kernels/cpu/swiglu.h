// SwiGLU activation of the fused gate/up projection: h = silu(g) * u, silu(g) = g / (1 + e^-g).
#pragma once
#include <cstdint>

namespace qarl::kernels {

// gu: [rows, 2*inter] (gate in the first half of a row, up in the second); h: [rows, inter].
void swiglu_forward(const float* gu, int64_t rows, int64_t inter, float* h);
// dgu: [rows, 2*inter] written from dh.
void swiglu_backward(const float* dh, const float* gu, int64_t rows, int64_t inter, float* dgu);

}  // namespace qarl::kernels
