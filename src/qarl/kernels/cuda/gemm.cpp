// Argument checks and dispatch of the GPU matrix products (gemm.h): kFast and the backward
// products go to cuBLAS (gemm_cublas.cpp), except kFast with 1-4 rows of aligned operands
// (decode), which takes the W-streaming GEMV (gemm_gemv.cu); kExact goes to qarl's
// batch-invariant kernel (gemm_exact.cu). Compiled in every build; without CUDA the products throw.
#include "qarl/kernels/cuda/gemm.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "qarl/core/env.h"
#include "qarl/core/error.h"
#include "qarl/kernels/cuda/gemm_internal.h"
#ifdef QARL_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace qarl::kernels::gpu {

const char* gemm_mode_name(GemmMode m) { return m == GemmMode::kExact ? "exact" : "fast"; }

GemmMode parse_gemm_mode(const char* s) {
  if (s && std::strcmp(s, "fast") == 0) return GemmMode::kFast;
  if (s && std::strcmp(s, "exact") == 0) return GemmMode::kExact;
  throw usage_err("GEMM mode '{}' is not 'fast' or 'exact'", s ? s : "(null)");
}

const char* gemm_autotune_name(GemmAutotune a) {
  return a == GemmAutotune::kLegacy ? "legacy" : a == GemmAutotune::kHeuristic ? "0" : "1";
}

GemmAutotune parse_gemm_autotune(const char* v) {
  if (!v || std::strcmp(v, "1") == 0) return GemmAutotune::kTimed;
  if (std::strcmp(v, "0") == 0) return GemmAutotune::kHeuristic;
  if (std::strcmp(v, "legacy") == 0) return GemmAutotune::kLegacy;
  throw usage_err("QARL_GEMM_AUTOTUNE='{}' is not 0 (cuBLASLt heuristic), 1 (cuBLASLt, timed: the "
                  "default) or legacy (cublasGemmEx)", v);
}

GemmAutotune gemm_autotune_from_env() {
  const auto v = env_choice("QARL_GEMM_AUTOTUNE");  // core/env.h: checks the value
  return parse_gemm_autotune(v ? v->c_str() : nullptr);
}

namespace {
std::atomic<int> g_autotune{-1};  // -1: not yet read from the environment
}  // namespace

GemmAutotune gemm_autotune() {
  int v = g_autotune.load(std::memory_order_relaxed);
  if (v < 0) {  // two threads may both parse: same answer
    v = int(gemm_autotune_from_env());
    g_autotune.store(v, std::memory_order_relaxed);
  }
  return GemmAutotune(v);
}

void set_gemm_autotune(GemmAutotune a) { g_autotune.store(int(a), std::memory_order_relaxed); }

std::vector<std::string> gemm_algo_choices() {
#ifdef QARL_HAVE_CUDA
  return detail::lt_cache_lines();
#else
  return {};
#endif
}

namespace {

// Row-major operand [rows, cols] with row stride ld: needs ld >= cols and a pointer unless
// it is empty.
void check_operand(const char* what, const char* name, int64_t rows, int64_t cols,
                   const void* p, int64_t ld) {
  if (rows < 0 || cols < 0) throw usage_err("{}: {} has negative shape [{}, {}]", what, name, rows, cols);
  if (ld < cols)
    throw usage_err("{}: {} [{}, {}] has row stride {} < {}", what, name, rows, cols, ld, cols);
  if (rows > 0 && cols > 0 && p == nullptr)
    throw usage_err("{}: {} [{}, {}] is a null pointer", what, name, rows, cols);
}
void check_out_type(const char* what, Elem t) {
  if (t != Elem::F32 && t != Elem::BF16) throw usage_err("{}: output type must be F32 or BF16", what);
}
#ifndef QARL_HAVE_CUDA
[[noreturn]] void no_cuda(const char* what) {
  throw runtime_err("{}: this qarl was built without CUDA", what);
}
#endif

}  // namespace

void gemm_forward(GemmMode mode, int64_t M, int64_t N, int64_t K, const bf16* A, int64_t lda,
                  const bf16* W, int64_t ldw, Elem c_t, void* C, int64_t ldc, bool accumulate,
                  void* stream, const void* c_in) {
  const char* what = mode == GemmMode::kExact ? "GEMM forward (exact)" : "GEMM forward (fast)";
  check_operand(what, "A", M, K, A, lda);
  check_operand(what, "W", N, K, W, ldw);
  check_operand(what, "C", M, N, C, ldc);
  check_out_type(what, c_t);
  if (!accumulate || c_in == C) c_in = nullptr;  // nothing apart to add
  if (c_in) check_operand(what, "C_in", M, N, c_in, ldc);
  if (M == 0 || N == 0) return;
#ifdef QARL_HAVE_CUDA
  if (mode == GemmMode::kExact) {
    const std::string e =
        detail::launch_gemm_exact(M, N, K, A, lda, W, ldw, c_t, C, ldc, accumulate, stream, c_in);
    if (!e.empty())
      throw runtime_err("{} C[{},{}] = A[{},{}] W[{},{}]^T ({}): {}", what, M, N, M, K, N, K,
                        detail::gemm_exact_config(M, N, K, detail::gemm_exact_aligned(K, A, lda, W, ldw)), e);
  } else if (detail::gemv_fast_applies(M, K, A, lda, W, ldw)) {
    const std::string e =
        detail::launch_gemv_fast(M, N, K, A, lda, W, ldw, c_t, C, ldc, accumulate, stream, c_in);
    if (!e.empty()) throw runtime_err("{} C[{},{}] = A[{},{}] W[{},{}]^T (GEMV): {}", what, M, N, M, K, N, K, e);
  } else {
    detail::cublas_forward(M, N, K, A, lda, W, ldw, c_t, C, ldc, accumulate, stream, c_in);
  }
#else
  no_cuda(what);
#endif
}

void gemm_backward_data(int64_t M, int64_t N, int64_t K, const bf16* dC, int64_t lddc,
                        const bf16* W, int64_t ldw, Elem da_t, void* dA, int64_t ldda,
                        bool accumulate, void* stream) {
  const char* what = "GEMM backward data";
  check_operand(what, "dC", M, N, dC, lddc);
  check_operand(what, "W", N, K, W, ldw);
  check_operand(what, "dA", M, K, dA, ldda);
  check_out_type(what, da_t);
  if (M == 0 || K == 0) return;
#ifdef QARL_HAVE_CUDA
  detail::cublas_backward_data(M, N, K, dC, lddc, W, ldw, da_t, dA, ldda, accumulate, stream);
#else
  no_cuda(what);
#endif
}

void gemm_backward_weight(int64_t M, int64_t N, int64_t K, const bf16* dC, int64_t lddc,
                          const bf16* A, int64_t lda, float* dW, int64_t lddw, bool accumulate,
                          void* stream) {
  const char* what = "GEMM backward weight";
  check_operand(what, "dC", M, N, dC, lddc);
  check_operand(what, "A", M, K, A, lda);
  check_operand(what, "dW", N, K, dW, lddw);
  if (N == 0 || K == 0) return;
#ifdef QARL_HAVE_CUDA
  if (M == 0) {  // an empty sum: dW += 0, or dW = 0
    if (!accumulate) {
      cudaError_t e = cudaMemset2DAsync(dW, size_t(lddw) * sizeof(float), 0, size_t(K) * sizeof(float),
                                        size_t(N), static_cast<cudaStream_t>(stream));
      if (e != cudaSuccess) throw runtime_err("{}: cudaMemset2DAsync failed: {}", what, cudaGetErrorString(e));
    }
    return;
  }
  detail::cublas_backward_weight(M, N, K, dC, lddc, A, lda, dW, lddw, accumulate, stream);
#else
  no_cuda(what);
#endif
}

}  // namespace qarl::kernels::gpu
