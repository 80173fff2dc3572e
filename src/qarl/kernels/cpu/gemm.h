// Deterministic, batch-invariant fp32 GEMM: C[M,N] (+)= A[M,K] * B[K,N].
//
// The contract every path keeps: each output element is the fused-multiply-add chain
//   c = init; for k = 0..K-1: c = fma(A[i,k], B[k,j], c)
// in exactly that order (init = 0, or C's old value when accumulating). Vector width, register
// tile, cache tile, thread split, M and N change which elements are computed together, never
// the order of one element's chain, so the result is bitwise identical for a row whether it is
// alone or in a batch, with AVX-512, AVX2 or the scalar path, with any number of threads.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qarl::kernels {

// Panel width of packed B (columns per panel); AVX-512 uses 2 zmm, AVX2 4 ymm per row.
inline constexpr int kGemmNR = 32;

// B packed in panels of kGemmNR columns, k-major inside a panel, zero-padded past N:
// element (k, j) at data[((j / NR) * K + k) * NR + j % NR].
struct PackedB {
  int64_t K = 0, N = 0;
  std::vector<float> data;
  bool empty() const { return N == 0; }
};

// From a linear layer weight W[N,K] (row-major, HF layout: y = x W^T), i.e. B = W^T.
void pack_b_from_nk(const float* W, int64_t N, int64_t K, PackedB& out);
// From a row-major B[K,N] (leading dimension ldb).
void pack_b_from_kn(const float* B, int64_t K, int64_t N, int64_t ldb, PackedB& out);
// Appends the rows of another [N2,K] weight as extra output columns (fused projections).
void pack_b_from_nk_multi(const std::vector<const float*>& Ws, const std::vector<int64_t>& Ns,
                          int64_t K, PackedB& out);

// A(i, k) = A[i * a_row + k * a_col]; C row-major with leading dimension ldc.
struct GemmA {
  const float* data;
  int64_t row_stride;
  int64_t col_stride = 1;
};

void gemm(GemmA A, int64_t M, const PackedB& B, float* C, int64_t ldc, bool accumulate = false);
// Reference (scalar std::fma chain over unpacked B[K,N] with leading dimension ldb).
void gemm_reference(GemmA A, int64_t M, const float* B, int64_t K, int64_t N, int64_t ldb,
                    float* C, int64_t ldc, bool accumulate = false);

// Which instruction set gemm() uses: "avx512", "avx2" or "scalar". QARL_GEMM_ISA overrides the
// CPU detection (for tests and benchmarks); set_gemm_isa too ("" = detect).
std::string gemm_isa();
void set_gemm_isa(const std::string& isa);

}  // namespace qarl::kernels
