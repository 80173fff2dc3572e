// attention_backward (attention_gpu.h): the simple form, per sequence with cuBLAS fp32 GEMMs
// on tensor cores in TF32 over head-major fp32 copies of q, k, v, dout. q, k, v and dout are
// bf16 values, exact in TF32, so S and dP are as exact as fp32 GEMMs; P and dS are rounded to
// TF32 (10-bit mantissa, finer than the bf16 a fused kernel would use) for the second
// products. Measured on the H200 at 8 x 1024, 16/8 heads, hd 128: 6.66 ms per layer in plain
// fp32 SGEMM (57% of the Qwen3-0.6B training step), 2.93 ms in TF32. For KV head g its `group` query
// heads share K and V, so their rows stack into one [group*T, hd] operand:
//   S_g  = scale * Q_g K_g^T           [group*T, T]
//   dP_g = dO_g V_g^T
//   P = exp(S - lse) (causal), dS = P * (dP - rowsum(dO*O))     (attention_backward.cu)
//   dV_g = P_g^T dO_g,  dK_g = scale * dS_g^T Q_g               (sums over the group's heads)
//   dQ_h = scale * dS_h K_g
// Workspace: 2 * n_heads * T^2 floats for the largest T plus the fp32 copies.
// (A fused tensor-core backward is the later optimization.)
#include "qarl/kernels/cuda/attention_gpu.h"

#include <algorithm>

#include "qarl/core/error.h"

#ifdef QARL_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "qarl/kernels/cuda/attention_internal.h"

namespace qarl::kernels::gpu {
namespace {

cublasHandle_t cublas() {
  thread_local cublasHandle_t h = [] {
    cublasHandle_t x = nullptr;
    if (cublasCreate(&x) != CUBLAS_STATUS_SUCCESS)
      throw runtime_err("attention backward: cublasCreate failed");
    cublasSetMathMode(x, CUBLAS_TF32_TENSOR_OP_MATH);  // see the top of the file
    return x;
  }();
  return h;
}

// Row-major C[M,N] = alpha * op(A)[M,K] op(B)[K,N] + beta * C, strided-batched; A is stored
// [M,K] (or [K,M] when ta), B [K,N] (or [N,K] when tb). Column-major cuBLAS sees C^T = B^T A^T.
void gemm(cudaStream_t st, bool ta, bool tb, int M, int N, int K, float alpha, const float* A,
          int64_t lda, int64_t sa, const float* B, int64_t ldb, int64_t sb, float beta,
          float* C, int64_t ldc, int64_t sc, int batch) {
  cublasHandle_t h = cublas();
  cublasSetStream(h, st);
  cublasStatus_t s = cublasSgemmStridedBatched(
      h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B,
      int(ldb), sb, A, int(lda), sa, &beta, C, int(ldc), sc, batch);
  if (s != CUBLAS_STATUS_SUCCESS)
    throw runtime_err("attention backward: cublasSgemmStridedBatched failed ({})", int(s));
}

}  // namespace

void attention_backward(const std::vector<AttnSegment>& segs,
                        const std::vector<int64_t>& kv_first_row, const bf16* q,
                        int64_t q_stride, const bf16* k, const bf16* v, int64_t kv_stride,
                        const bf16* out, const bf16* dout, int64_t o_stride, const float* lse,
                        int n_heads, int n_kv_heads, int head_dim, float scale, float* dq,
                        int64_t dq_stride, float* dk, float* dv, int64_t dkv_stride,
                        AttentionWorkspace& ws, void* stream) {
  if (segs.size() != kv_first_row.size())
    throw usage_err("attention backward: {} segments but {} K/V row offsets", segs.size(),
                    kv_first_row.size());
  if (n_kv_heads <= 0 || n_heads <= 0 || n_heads % n_kv_heads != 0)
    throw usage_err("attention backward: {} query heads are not a multiple of {} KV heads",
                    n_heads, n_kv_heads);
  if (head_dim <= 0) throw usage_err("attention backward: head_dim {}", head_dim);
  const int H = n_heads, HK = n_kv_heads, D = head_dim, group = H / HK;
  int64_t t_max = 0;
  for (const AttnSegment& s : segs) {
    if (s.n_rows < 0 || s.first_pos != 0)
      throw usage_err("attention backward: segment of sequence {} must start at position 0 "
                      "(first_pos {}, n_rows {})", s.seq, s.first_pos, s.n_rows);
    t_max = std::max<int64_t>(t_max, s.n_rows);
  }
  if (t_max == 0) return;
  // Workspace: S, dP [H][T][T]; Q, dO [H][T][D]; K, V [HK][T][D]; dsum [H][T].
  const int64_t tt = int64_t(H) * t_max * t_max, qd = int64_t(H) * t_max * D,
                kd = int64_t(HK) * t_max * D;
  float* base = static_cast<float*>(
      ws.reserve(sizeof(float) * size_t(2 * tt + 2 * qd + 2 * kd + int64_t(H) * t_max)));
  float *S = base, *dP = S + tt, *Qh = dP + tt, *dOh = Qh + qd, *Kh = dOh + qd, *Vh = Kh + kd,
        *dsum = Vh + kd;
  auto st = static_cast<cudaStream_t>(stream);
  for (size_t i = 0; i < segs.size(); ++i) {
    const int T = segs[i].n_rows;
    if (T == 0) continue;
    const int64_t r0 = segs[i].first_row, k0 = kv_first_row[i];
    attn::launch_to_head_major(q + r0 * q_stride, q_stride, T, H, D, Qh, stream);
    attn::launch_to_head_major(dout + r0 * o_stride, o_stride, T, H, D, dOh, stream);
    attn::launch_to_head_major(k + k0 * kv_stride, kv_stride, T, HK, D, Kh, stream);
    attn::launch_to_head_major(v + k0 * kv_stride, kv_stride, T, HK, D, Vh, stream);
    attn::launch_row_dot(dout + r0 * o_stride, out + r0 * o_stride, o_stride, T, H, D, dsum,
                         stream);
    const int64_t gT = int64_t(group) * T, sQ = gT * D, sK = int64_t(T) * D, sS = gT * T;
    // S_g = scale * Q_g K_g^T, dP_g = dO_g V_g^T (batched over KV heads).
    gemm(st, false, true, int(gT), T, D, scale, Qh, D, sQ, Kh, D, sK, 0.0f, S, T, sS, HK);
    gemm(st, false, true, int(gT), T, D, 1.0f, dOh, D, sQ, Vh, D, sK, 0.0f, dP, T, sS, HK);
    attn::launch_softmax_grad(S, dP, lse, r0, dsum, T, H, stream);
    // dV_g = P_g^T dO_g and dK_g = scale * dS_g^T Q_g, straight into the strided outputs.
    gemm(st, true, false, T, D, int(gT), 1.0f, S, T, sS, dOh, D, sQ, 0.0f, dv + k0 * dkv_stride,
         dkv_stride, D, HK);
    gemm(st, true, false, T, D, int(gT), scale, dP, T, sS, Qh, D, sQ, 0.0f,
         dk + k0 * dkv_stride, dkv_stride, D, HK);
    // dQ_h = scale * dS_h K_g, one call per head of the group (batched over KV heads).
    for (int hh = 0; hh < group; ++hh)
      gemm(st, false, false, T, D, T, scale, dP + int64_t(hh) * T * T, T, sS, Kh, D, sK, 0.0f,
           dq + r0 * dq_stride + int64_t(hh) * D, dq_stride, int64_t(group) * D, HK);
  }
}

}  // namespace qarl::kernels::gpu
#endif  // QARL_HAVE_CUDA
