// kFast forward and the backward products through cuBLAS (cublasGemmEx, bf16 inputs,
// CUBLAS_COMPUTE_32F). cuBLAS is column-major; a row-major X[r, c] with row stride ld is
// the column-major X^T[c, r] with leading dimension ld, so each row-major product is issued
// as its transpose:
//   forward        C[M,N]  = A[M,K] W[N,K]^T   <=>  C^T[N,M]  = op_T(Wbuf[K,N]) . Abuf[K,M]
//   backward data  dA[M,K] = dC[M,N] W[N,K]    <=>  dA^T[K,M] = Wbuf[K,N] . dCbuf[N,M]
//   backward wt.   dW[N,K] += dC^T A           <=>  dW^T[K,N] += Abuf[K,M] . op_T(dCbuf[N,M])
// (Xbuf = the row-major buffer read column-major, i.e. X^T.)
// One handle per device, created lazily under a mutex; each call sets the stream and a
// workspace owned by that (device, stream) pair, so concurrent streams never share one.
#ifdef QARL_HAVE_CUDA
#include <climits>
#include <map>
#include <mutex>
#include <utility>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "qarl/core/error.h"
#include "qarl/kernels/cuda/gemm_internal.h"

namespace qarl::kernels::gpu::detail {
namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // cuBLAS's recommendation for Hopper

struct Handles {
  std::mutex mu;
  std::map<int, cublasHandle_t> handle;                 // device -> handle
  std::map<std::pair<int, void*>, void*> workspace;     // (device, stream) -> buffer
};
Handles& handles() {
  static Handles* h = new Handles;  // never destroyed: handles outlive static destructors
  return *h;
}

void check_int(const char* what, int64_t v, const char* name) {
  if (v > INT_MAX) throw usage_err("{}: {} = {} exceeds cuBLAS's 32-bit limit", what, name, v);
}

// Runs fn(handle) with the handle bound to `stream` and its workspace, under the lock (the
// calls only enqueue work, so holding the lock is cheap).
template <class Fn>
void with_handle(void* stream, const std::string& what, Fn fn) {
  int dev = 0;
  cudaError_t ce = cudaGetDevice(&dev);
  if (ce != cudaSuccess) throw runtime_err("{}: cudaGetDevice failed: {}", what, cudaGetErrorString(ce));
  Handles& h = handles();
  std::lock_guard<std::mutex> lock(h.mu);
  auto it = h.handle.find(dev);
  if (it == h.handle.end()) {
    cublasHandle_t hd = nullptr;
    cublasStatus_t s = cublasCreate(&hd);
    if (s != CUBLAS_STATUS_SUCCESS)
      throw runtime_err("{}: cublasCreate failed: {}", what, cublasGetStatusString(s));
    // Reductions (split-K) in fp32, never in a bf16 output type: without this, cuBLAS's
    // bf16-output products were off by ~2^-12 of sum |a w| on the H200 (the test's bound).
    s = cublasSetMathMode(hd, cublasMath_t(CUBLAS_DEFAULT_MATH |
                                           CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION));
    if (s != CUBLAS_STATUS_SUCCESS)
      throw runtime_err("{}: cublasSetMathMode failed: {}", what, cublasGetStatusString(s));
    it = h.handle.emplace(dev, hd).first;
  }
  void*& ws = h.workspace[{dev, stream}];
  if (!ws) {
    ce = cudaMalloc(&ws, kWorkspaceBytes);
    if (ce != cudaSuccess) {
      ws = nullptr;
      throw runtime_err("{}: cuBLAS workspace cudaMalloc failed: {}", what, cudaGetErrorString(ce));
    }
  }
  cublasHandle_t hd = it->second;
  cublasStatus_t s = cublasSetStream(hd, static_cast<cudaStream_t>(stream));
  if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetWorkspace(hd, ws, kWorkspaceBytes);
  if (s == CUBLAS_STATUS_SUCCESS) s = fn(hd);
  if (s != CUBLAS_STATUS_SUCCESS) throw runtime_err("{} failed: {}", what, cublasGetStatusString(s));
}

cudaDataType_t cuda_type(Elem t) { return t == Elem::F32 ? CUDA_R_32F : CUDA_R_16BF; }
int ld(int64_t v) { return int(v > 0 ? v : 1); }

}  // namespace

void cublas_forward(int64_t M, int64_t N, int64_t K, const bf16* A, int64_t lda, const bf16* W,
                    int64_t ldw, Elem c_t, void* C, int64_t ldc, bool accumulate, void* stream) {
  const std::string what =
      fmt::format("cuBLAS GEMM forward C[{},{}] = A[{},{}] W[{},{}]^T", M, N, M, K, N, K);
  for (auto [v, n] : {std::pair{M, "M"}, {N, "N"}, {K, "K"}, {lda, "lda"}, {ldw, "ldw"}, {ldc, "ldc"}})
    check_int(what.c_str(), v, n);
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  with_handle(stream, what, [&](cublasHandle_t h) {
    return cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(M), int(K), &alpha, W,
                        CUDA_R_16BF, ld(ldw), A, CUDA_R_16BF, ld(lda), &beta, C, cuda_type(c_t),
                        ld(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  });
}

void cublas_backward_data(int64_t M, int64_t N, int64_t K, const bf16* dC, int64_t lddc,
                          const bf16* W, int64_t ldw, Elem da_t, void* dA, int64_t ldda,
                          bool accumulate, void* stream) {
  const std::string what =
      fmt::format("cuBLAS GEMM backward data dA[{},{}] = dC[{},{}] W[{},{}]", M, K, M, N, N, K);
  for (auto [v, n] : {std::pair{M, "M"}, {N, "N"}, {K, "K"}, {lddc, "lddc"}, {ldw, "ldw"}, {ldda, "ldda"}})
    check_int(what.c_str(), v, n);
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  with_handle(stream, what, [&](cublasHandle_t h) {
    return cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, int(K), int(M), int(N), &alpha, W,
                        CUDA_R_16BF, ld(ldw), dC, CUDA_R_16BF, ld(lddc), &beta, dA,
                        cuda_type(da_t), ld(ldda), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  });
}

void cublas_backward_weight(int64_t M, int64_t N, int64_t K, const bf16* dC, int64_t lddc,
                            const bf16* A, int64_t lda, float* dW, int64_t lddw, void* stream) {
  const std::string what = fmt::format(
      "cuBLAS GEMM backward weight dW[{},{}] += dC[{},{}]^T A[{},{}]", N, K, M, N, M, K);
  for (auto [v, n] : {std::pair{M, "M"}, {N, "N"}, {K, "K"}, {lddc, "lddc"}, {lda, "lda"}, {lddw, "lddw"}})
    check_int(what.c_str(), v, n);
  const float alpha = 1.0f, beta = 1.0f;
  with_handle(stream, what, [&](cublasHandle_t h) {
    return cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, int(K), int(N), int(M), &alpha, A,
                        CUDA_R_16BF, ld(lda), dC, CUDA_R_16BF, ld(lddc), &beta, dW, CUDA_R_32F,
                        ld(lddw), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  });
}

}  // namespace qarl::kernels::gpu::detail
#endif  // QARL_HAVE_CUDA
