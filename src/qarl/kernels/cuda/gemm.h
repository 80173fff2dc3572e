// Matrix products of the GPU model, bf16 inputs with fp32 accumulation, in two modes:
//   kFast  - cuBLAS (cublasLt, algorithm timed per shape, or cublasGemmEx: GemmAutotune); for 1-4 rows of
//            aligned operands (decode) a W-streaming GEMV (gemm_gemv.cu) instead;
//   kExact - qarl's own batch-invariant kernel: tile configurations chosen by shape that all
//            run the same per-element mma.sync k16 chain (no split-K, K reduced in one fixed
//            order), so element (i, j) of C is the same bits for every M, every position of
//            row i in A, and whatever the other rows hold.
// Only the forward product has an exact variant: it is what makes the rollout's logprobs
// equal the trainer's (docs/cuda.md). Backward products always use cuBLAS.
// Layout: row-major everywhere; weights are [N, K] (Hugging Face's [out, in]).
// Tests: tests/kernels/cuda_gemm_test.cpp. Launches are asynchronous on `stream`.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "qarl/kernels/cuda/launch.h"

namespace qarl::kernels::gpu {

using bf16 = uint16_t;  // bf16 bits in device memory

enum class GemmMode : uint8_t { kFast, kExact };
const char* gemm_mode_name(GemmMode m);  // "fast" / "exact"
GemmMode parse_gemm_mode(const char* s);   // Error (usage) naming the value otherwise

// C[M, N] = A[M, K] . W[N, K]^T, plus C's old value when accumulate (C = C + acc, one fp32
// add per element, then rounded to c_t). c_t: F32 or BF16. lda/ldw/ldc: row strides in
// elements. M may be 0 (no-op). c_in (with accumulate): the old value comes from this buffer
// (C's type, shape and stride; not written) instead of C, C = c_in + acc with the same
// per-element arithmetic: the trainer's residual stream keeps each layer's input that way
// instead of copying it.
void gemm_forward(GemmMode mode, int64_t M, int64_t N, int64_t K, const bf16* A, int64_t lda,
                  const bf16* W, int64_t ldw, Elem c_t, void* C, int64_t ldc, bool accumulate,
                  void* stream, const void* c_in = nullptr);

// How the cuBLAS products (kFast beyond the GEMV, and both backward products) are issued,
// from QARL_GEMM_AUTOTUNE (docs/cuda.md):
//   kLegacy    ("legacy") - cublasGemmEx(CUBLAS_GEMM_DEFAULT), as before cuBLASLt;
//   kHeuristic ("0")      - cublasLtMatmul with the heuristic's first algorithm;
//   kTimed     ("1", unset: the default) - cublasLtMatmul with the fastest of the heuristic's
//              top 8, timed once per shape key on the first uncaptured call, then fixed for
//              the process (the same inputs give the same bits call after call).
enum class GemmAutotune : uint8_t { kLegacy, kHeuristic, kTimed };
const char* gemm_autotune_name(GemmAutotune a);  // "legacy" / "0" / "1"
// nullptr (unset) or "1" -> kTimed, "0", "legacy"; otherwise a usage Error naming
// QARL_GEMM_AUTOTUNE.
GemmAutotune parse_gemm_autotune(const char* value);
GemmAutotune gemm_autotune_from_env();  // parses getenv("QARL_GEMM_AUTOTUNE") now
// The mode in force: the last set_gemm_autotune, else the environment's (read on first use).
GemmAutotune gemm_autotune();
void set_gemm_autotune(GemmAutotune a);  // e.g. the benchmark, comparing the three in one run
// One line per cuBLASLt cache entry: the product's key and the algorithm it uses (with the
// candidates' timings for timed keys). Empty without CUDA or before any Lt product.
std::vector<std::string> gemm_algo_choices();

// dA[M, K] = dC[M, N] . W[N, K] (+ dA when accumulate); da_t F32 or BF16.
void gemm_backward_data(int64_t M, int64_t N, int64_t K, const bf16* dC, int64_t lddc,
                        const bf16* W, int64_t ldw, Elem da_t, void* dA, int64_t ldda,
                        bool accumulate, void* stream);

// dW[N, K] += dC[M, N]^T . A[M, K] (fp32 dW); with accumulate = false, dW = that product.
void gemm_backward_weight(int64_t M, int64_t N, int64_t K, const bf16* dC, int64_t lddc,
                          const bf16* A, int64_t lda, float* dW, int64_t lddw, bool accumulate,
                          void* stream);

}  // namespace qarl::kernels::gpu
