// Elementwise helpers of the cuBLAS attention backward (attention_backward.cpp).
#include <cuda_runtime.h>

#include <cstdint>

#include "qarl/kernels/cuda/attention_internal.h"
#include "qarl/kernels/cuda/launch.h"
#include "qarl/kernels/cuda/launch_config.cuh"

namespace qarl::kernels::gpu::attn {
namespace {

__device__ __forceinline__ float bf(bf16 h) { return __uint_as_float(uint32_t(h) << 16); }

__global__ void to_head_major_kernel(const bf16* __restrict__ x, int64_t ld, int T, int H,
                                     int D, float* __restrict__ y) {
  const int64_t n = int64_t(T) * H * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = i % D, h = (i / D) % H, t = i / (int64_t(D) * H);
    y[(h * T + t) * D + d] = bf(x[t * ld + h * D + d]);
  }
}

__global__ void row_dot_kernel(const bf16* __restrict__ dout, const bf16* __restrict__ out,
                               int64_t ld, int T, int H, int D, float* __restrict__ dsum) {
  const int64_t n = int64_t(T) * H;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t h = i % H, t = i / H;
    const bf16* a = dout + t * ld + h * D;
    const bf16* b = out + t * ld + h * D;
    float acc = 0.0f;
    for (int d = 0; d < D; ++d) acc = __fmaf_rn(bf(a[d]), bf(b[d]), acc);
    dsum[h * T + t] = acc;
  }
}

__global__ void softmax_grad_kernel(float* __restrict__ s, float* __restrict__ dp,
                                    const float* __restrict__ lse, int64_t row0,
                                    const float* __restrict__ dsum, int T, int H) {
  const int64_t n = int64_t(H) * T * T;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = i % T, r = (i / T) % T, h = i / (int64_t(T) * T);
    const float p = j <= r ? expf(s[i] - lse[(row0 + r) * H + h]) : 0.0f;
    s[i] = p;
    dp[i] = j <= r ? p * (dp[i] - dsum[h * T + r]) : 0.0f;
  }
}

}  // namespace

void launch_to_head_major(const bf16* x, int64_t ld, int T, int n_heads, int head_dim,
                          float* y, void* stream) {
  const int th = 256;
  to_head_major_kernel<<<grid_for(to_head_major_kernel, th, int64_t(T) * n_heads * head_dim),
                         th, 0, static_cast<cudaStream_t>(stream)>>>(x, ld, T, n_heads,
                                                                     head_dim, y);
  check_last_launch("attention backward (to head-major)");
}

void launch_row_dot(const bf16* dout, const bf16* out, int64_t ld, int T, int n_heads,
                    int head_dim, float* dsum, void* stream) {
  const int th = 256;
  row_dot_kernel<<<grid_for(row_dot_kernel, th, int64_t(T) * n_heads), th, 0,
                   static_cast<cudaStream_t>(stream)>>>(dout, out, ld, T, n_heads, head_dim,
                                                        dsum);
  check_last_launch("attention backward (rowsum dO*O)");
}

void launch_softmax_grad(float* s, float* dp, const float* lse, int64_t row0, const float* dsum,
                         int T, int n_heads, void* stream) {
  const int th = 256;
  softmax_grad_kernel<<<grid_for(softmax_grad_kernel, th, int64_t(n_heads) * T * T), th, 0,
                        static_cast<cudaStream_t>(stream)>>>(s, dp, lse, row0, dsum, T,
                                                             n_heads);
  check_last_launch("attention backward (softmax grad)");
}

}  // namespace qarl::kernels::gpu::attn
