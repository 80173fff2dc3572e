// SwiGLU on the GPU (model_ops.h): h = silu(g) * u on bf16 rows [gate | up], computed in fp32
// with the expressions of kernels::swiglu_forward/backward (expf instead of std::exp, so
// results agree to a few fp32 ulps before the single rounding to bf16).
#include <cstdint>
#include <cuda_runtime.h>

#include "qarl/kernels/cuda/launch_config.cuh"
#include "qarl/kernels/cuda/model_ops.h"
#include "qarl/kernels/cuda/model_ops_device.cuh"

namespace qarl::kernels::gpu {
namespace {

constexpr int kThreads = 256;
using dev::BF16;

__global__ void swiglu_forward_kernel(const bf16* __restrict__ gu, int64_t rows, int64_t inter,
                                      bf16* __restrict__ h) {
  const int64_t n = rows * inter;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / inter, i = idx - r * inter;
    const float g = BF16::load(gu[r * 2 * inter + i]);
    const float u = BF16::load(gu[r * 2 * inter + inter + i]);
    h[idx] = BF16::store((g / (1.0f + expf(-g))) * u);
  }
}

// No __restrict__ on gu/dgu: each thread reads its (g, u) before writing them, so dgu may
// alias gu (in-place backward).
__global__ void swiglu_backward_kernel(const bf16* __restrict__ dh, const bf16* gu,
                                       int64_t rows, int64_t inter, bf16* dgu) {
  const int64_t n = rows * inter;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / inter, i = idx - r * inter;
    const float g = BF16::load(gu[r * 2 * inter + i]);
    const float u = BF16::load(gu[r * 2 * inter + inter + i]);
    const float d = BF16::load(dh[idx]);
    const float sig = 1.0f / (1.0f + expf(-g));
    const float silu = g * sig;
    dgu[r * 2 * inter + inter + i] = BF16::store(d * silu);
    dgu[r * 2 * inter + i] = BF16::store(d * u * (sig * (1.0f + g * (1.0f - sig))));
  }
}

}  // namespace

void launch_swiglu_forward(const bf16* gu, int64_t rows, int64_t inter, bf16* h, void* stream) {
  if (rows <= 0 || inter <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  swiglu_forward_kernel<<<grid_for(swiglu_forward_kernel, kThreads, rows * inter), kThreads, 0,
                          st>>>(gu, rows, inter, h);
  check_last_launch("swiglu forward");
}

void launch_swiglu_backward(const bf16* dh, const bf16* gu, int64_t rows, int64_t inter,
                            bf16* dgu, void* stream) {
  if (rows <= 0 || inter <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  swiglu_backward_kernel<<<grid_for(swiglu_backward_kernel, kThreads, rows * inter), kThreads,
                           0, st>>>(dh, gu, rows, inter, dgu);
  check_last_launch("swiglu backward");
}

}  // namespace qarl::kernels::gpu
