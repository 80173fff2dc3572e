// Linear layer y = x W^T (+ b) with W[out, in] in the HF layout, on the deterministic GEMM
// (gemm.h). Forward: bias added after the full K reduction. Backward: dx = dy W,
// dW += dy^T x, db += column sums of dy (all fixed-order; the backward need not be
// batch-invariant, only deterministic).
#pragma once
#include <cstdint>

#include "qarl/kernels/cpu/gemm.h"

namespace qarl::kernels {

// x: [rows, in] (row stride ldx), W packed (pack_b_from_nk), y: [rows, out] (row stride ldy).
void linear_forward(const float* x, int64_t ldx, int64_t rows, const PackedB& W,
                    const float* bias, float* y, int64_t ldy);
// W: the unpacked [out, in] weight. dx written (ldx stride, may be nullptr); dW, db
// accumulated (db may be nullptr).
void linear_backward(const float* dy, int64_t ldy, const float* x, int64_t ldx, int64_t rows,
                     const float* W, int64_t out, int64_t in, float* dx, int64_t lddx,
                     float* dW, float* db);

}  // namespace qarl::kernels
