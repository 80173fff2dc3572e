// kFast forward and the backward products through cuBLAS (bf16 inputs, CUBLAS_COMPUTE_32F):
// cublasLtMatmul with an algorithm chosen per shape (gemm_cublaslt.cpp), or cublasGemmEx
// with QARL_GEMM_AUTOTUNE=legacy (gemm.h: GemmAutotune). cuBLAS is column-major; a row-major X[r, c] with row stride ld is
// the column-major X^T[c, r] with leading dimension ld, so each row-major product is issued
// as its transpose:
//   forward        C[M,N]  = A[M,K] W[N,K]^T   <=>  C^T[N,M]  = op_T(Wbuf[K,N]) . Abuf[K,M]
//   backward data  dA[M,K] = dC[M,N] W[N,K]    <=>  dA^T[K,M] = Wbuf[K,N] . dCbuf[N,M]
//   backward wt.   dW[N,K] += dC^T A           <=>  dW^T[K,N] += Abuf[K,M] . op_T(dCbuf[N,M])
// (Xbuf = the row-major buffer read column-major, i.e. X^T.)
// One handle per device, created lazily under a mutex; each call uses a workspace owned by
// its (device, stream) pair, so concurrent streams never share one.
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

cudaDataType_t cuda_type(Elem t) { return t == Elem::F32 ? CUDA_R_32F : CUDA_R_16BF; }
int ld(int64_t v) { return int(v > 0 ? v : 1); }

cublasHandle_t legacy_handle(Handles& h, int dev, const std::string& what) {
  auto it = h.handle.find(dev);
  if (it != h.handle.end()) return it->second;
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
  return h.handle.emplace(dev, hd).first->second;
}

// Issues g on `stream` under the lock (the calls only enqueue work, so holding the lock is
// cheap; a cuBLASLt key's first uncaptured call also times its candidates, once), through
// cublasLtMatmul or, in legacy mode (and for k = 0, which is C = beta C, or a key cuBLASLt
// has no algorithm for), cublasGemmEx exactly as before cuBLASLt.
void issue(const ColumnGemm& g, void* stream, const std::string& what) {
  const GemmAutotune mode = gemm_autotune();  // may throw the usage error: before the lock
  int dev = 0;
  cudaError_t ce = cudaGetDevice(&dev);
  if (ce != cudaSuccess) throw runtime_err("{}: cudaGetDevice failed: {}", what, cudaGetErrorString(ce));
  Handles& h = handles();
  std::lock_guard<std::mutex> lock(h.mu);
  void*& ws = h.workspace[{dev, stream}];
  if (!ws) {
    ce = cudaMalloc(&ws, kWorkspaceBytes);
    if (ce != cudaSuccess) {
      ws = nullptr;
      throw runtime_err("{}: cuBLAS workspace cudaMalloc failed: {}", what, cudaGetErrorString(ce));
    }
  }
  if (mode != GemmAutotune::kLegacy && g.k > 0 &&
      lt_matmul(dev, g, mode == GemmAutotune::kTimed, ws, kWorkspaceBytes, stream, what))
    return;
  cublasHandle_t hd = legacy_handle(h, dev, what);
  if (g.accumulate && g.c_in) {  // cublasGemmEx adds in place: start C as a copy of c_in
    const size_t el = g.c_t == Elem::F32 ? 4 : 2;
    ce = cudaMemcpy2DAsync(g.c, size_t(g.ldc) * el, g.c_in, size_t(g.ldc) * el, size_t(g.m) * el, size_t(g.n),
                           cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(stream));
    if (ce != cudaSuccess) throw runtime_err("{}: copying C's input failed: {}", what, cudaGetErrorString(ce));
  }
  const float alpha = 1.0f, beta = g.accumulate ? 1.0f : 0.0f;
  cublasStatus_t s = cublasSetStream(hd, static_cast<cudaStream_t>(stream));
  if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetWorkspace(hd, ws, kWorkspaceBytes);
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasGemmEx(hd, g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                     g.m, g.n, g.k, &alpha, g.a, CUDA_R_16BF, g.lda, g.b, CUDA_R_16BF, g.ldb, &beta,
                     g.c, cuda_type(g.c_t), g.ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS) throw runtime_err("{} failed: {}", what, cublasGetStatusString(s));
}

}  // namespace

std::mutex& cublas_mutex() { return handles().mu; }

const char* cublas_product_name(CublasProduct p) {
  return p == CublasProduct::kForward ? "forward"
         : p == CublasProduct::kBackwardData ? "backward data" : "backward weight";
}

void cublas_forward(int64_t M, int64_t N, int64_t K, const bf16* A, int64_t lda, const bf16* W,
                    int64_t ldw, Elem c_t, void* C, int64_t ldc, bool accumulate, void* stream,
                    const void* c_in) {
  const std::string what =
      fmt::format("cuBLAS GEMM forward C[{},{}] = A[{},{}] W[{},{}]^T", M, N, M, K, N, K);
  for (auto [v, n] : {std::pair{M, "M"}, {N, "N"}, {K, "K"}, {lda, "lda"}, {ldw, "ldw"}, {ldc, "ldc"}})
    check_int(what.c_str(), v, n);
  issue({CublasProduct::kForward, true, false, int(N), int(M), int(K), W, ld(ldw), A, ld(lda), c_t, C,
         ld(ldc), accumulate, accumulate && c_in != C ? c_in : nullptr},
        stream, what);
}

void cublas_backward_data(int64_t M, int64_t N, int64_t K, const bf16* dC, int64_t lddc,
                          const bf16* W, int64_t ldw, Elem da_t, void* dA, int64_t ldda,
                          bool accumulate, void* stream) {
  const std::string what =
      fmt::format("cuBLAS GEMM backward data dA[{},{}] = dC[{},{}] W[{},{}]", M, K, M, N, N, K);
  for (auto [v, n] : {std::pair{M, "M"}, {N, "N"}, {K, "K"}, {lddc, "lddc"}, {ldw, "ldw"}, {ldda, "ldda"}})
    check_int(what.c_str(), v, n);
  issue({CublasProduct::kBackwardData, false, false, int(K), int(M), int(N), W, ld(ldw), dC, ld(lddc),
         da_t, dA, ld(ldda), accumulate},
        stream, what);
}

void cublas_backward_weight(int64_t M, int64_t N, int64_t K, const bf16* dC, int64_t lddc,
                            const bf16* A, int64_t lda, float* dW, int64_t lddw, bool accumulate,
                            void* stream) {
  const std::string what = fmt::format("cuBLAS GEMM backward weight dW[{},{}] {} dC[{},{}]^T A[{},{}]", N,
                                       K, accumulate ? "+=" : "=", M, N, M, K);
  for (auto [v, n] : {std::pair{M, "M"}, {N, "N"}, {K, "K"}, {lddc, "lddc"}, {lda, "lda"}, {lddw, "lddw"}})
    check_int(what.c_str(), v, n);
  issue({CublasProduct::kBackwardWeight, false, true, int(K), int(N), int(M), A, ld(lda), dC, ld(lddc),
         Elem::F32, dW, ld(lddw), accumulate},
        stream, what);
}

}  // namespace qarl::kernels::gpu::detail
#endif  // QARL_HAVE_CUDA
