// Internal launchers behind gemm.h (gemm.cpp checks arguments and dispatches to these).
// Defined only in CUDA builds: gemm_exact.cu and gemm_cublas.cpp.
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "qarl/kernels/cuda/gemm.h"

namespace qarl::kernels::gpu::detail {

// The batch-invariant kernel (gemm_exact.cu); arguments already checked, M, N > 0.
// Returns "" when launched, else what failed (the caller throws).
// c_in: null (accumulate into C in place) or a buffer of C's shape and stride to add instead.
std::string launch_gemm_exact(int64_t M, int64_t N, int64_t K, const bf16* A, int64_t lda,
                       const bf16* W, int64_t ldw, Elem c_t, void* C, int64_t ldc,
                       bool accumulate, void* stream, const void* c_in = nullptr);
// Whether the operands take the 16-byte cp.async path (K, lda, ldw multiples of 8, A and W
// 16-byte aligned); the guarded 2-byte path otherwise.
bool gemm_exact_aligned(int64_t K, const bf16* A, int64_t lda, const bf16* W, int64_t ldw);
// Which tile configuration launch_gemm_exact uses for M x N ("large 128x256x64", ...), for
// error messages, benchmark notes and tests.
const char* gemm_exact_config(int64_t M, int64_t N, int64_t K, bool aligned);
// Every configuration by index 0 .. gemm_exact_config_count() - 1, and a launch forcing one
// (tests check that all of them give the same bits). The large tiles need aligned operands
// (else the launch returns an error); the others take any shape.
int gemm_exact_config_count();
const char* gemm_exact_config_name(int config);
std::string launch_gemm_exact_as(int config, int64_t M, int64_t N, int64_t K, const bf16* A,
                                 int64_t lda, const bf16* W, int64_t ldw, Elem c_t, void* C,
                                 int64_t ldc, bool accumulate, void* stream,
                                 const void* c_in = nullptr);

// kFast for decode-sized M (gemm_gemv.cu): a W-streaming GEMV for 1 .. kGemvMaxM rows of
// aligned operands (gemv_fast_applies); "" when launched, else what failed.
inline constexpr int64_t kGemvMaxM = 4;
bool gemv_fast_applies(int64_t M, int64_t K, const bf16* A, int64_t lda, const bf16* W, int64_t ldw);
std::string launch_gemv_fast(int64_t M, int64_t N, int64_t K, const bf16* A, int64_t lda,
                             const bf16* W, int64_t ldw, Elem c_t, void* C, int64_t ldc,
                             bool accumulate, void* stream, const void* c_in = nullptr);

// Benchmark probe (mma_chain_probe.cu): one warp runs `links` dependent mma.sync.m16n8k16 on
// each of `chains` (1 or 4) interleaved accumulators; ns and SM cycles per link. "" or what failed.
std::string mma_chain_probe(int links, int chains, double* ns_per_link, double* cycles_per_link);

// cuBLAS (gemm_cublas.cpp), arguments already checked, output non-empty.
void cublas_forward(int64_t M, int64_t N, int64_t K, const bf16* A, int64_t lda, const bf16* W,
                    int64_t ldw, Elem c_t, void* C, int64_t ldc, bool accumulate, void* stream,
                    const void* c_in = nullptr);
void cublas_backward_data(int64_t M, int64_t N, int64_t K, const bf16* dC, int64_t lddc,
                          const bf16* W, int64_t ldw, Elem da_t, void* dA, int64_t ldda,
                          bool accumulate, void* stream);
void cublas_backward_weight(int64_t M, int64_t N, int64_t K, const bf16* dC, int64_t lddc,
                            const bf16* A, int64_t lda, float* dW, int64_t lddw, bool accumulate,
                            void* stream);

// One product as cuBLAS is asked for it (column-major, gemm_cublas.cpp says how each row-major
// product maps onto it): C[m, n] = op(A) op(B) (+ C when accumulate), op = transpose or not,
// bf16 A and B, fp32 compute and scale, C F32 or BF16.
enum class CublasProduct : uint8_t { kForward, kBackwardData, kBackwardWeight };
const char* cublas_product_name(CublasProduct p);  // "forward", "backward data", ...
struct ColumnGemm {
  CublasProduct product;
  bool trans_a, trans_b;
  int m, n, k;
  const bf16* a;
  int lda;
  const bf16* b;
  int ldb;
  Elem c_t;
  void* c;
  int ldc;
  bool accumulate;
  // With accumulate: C = c_in + product into c (another buffer of c's layout), or null (in place).
  const void* c_in = nullptr;
};

// The lock over the cuBLAS handles, the per-(device, stream) workspaces and the cuBLASLt
// algorithm cache (gemm_cublas.cpp).
std::mutex& cublas_mutex();
// cuBLASLt (gemm_cublaslt.cpp), with cublas_mutex() held, k > 0: issues g on `stream` with
// the cached algorithm for its key, choosing it first (timed or the heuristic's first, per
// `timed`). Returns false, issuing nothing, when cuBLASLt offers no algorithm for the key
// (the caller then takes cublasGemmEx). Throws on failure.
bool lt_matmul(int device, const ColumnGemm& g, bool timed, void* workspace, size_t workspace_bytes,
               void* stream, const std::string& what);
std::vector<std::string> lt_cache_lines();  // gemm_algo_choices(); takes the lock

}  // namespace qarl::kernels::gpu::detail
