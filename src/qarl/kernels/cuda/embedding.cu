// Token embedding on the GPU (model_ops.h): bf16 table rows widened to the fp32 residual
// stream; the backward scatters fp32 gradient rows with atomic adds (order not fixed).
#include <cstdint>
#include <cuda_runtime.h>

#include "qarl/kernels/cuda/launch_config.cuh"
#include "qarl/kernels/cuda/model_ops.h"
#include "qarl/kernels/cuda/model_ops_device.cuh"

namespace qarl::kernels::gpu {
namespace {

constexpr int kThreads = 256;

__global__ void embedding_forward_kernel(const bf16* __restrict__ table, int64_t dim,
                                         const int32_t* __restrict__ tokens, int64_t rows,
                                         float* __restrict__ out) {
  const int64_t n = rows * dim;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / dim, c = i - r * dim;
    out[i] = dev::BF16::load(table[int64_t(tokens[r]) * dim + c]);
  }
}

__global__ void embedding_backward_kernel(const float* __restrict__ dout, int64_t dim,
                                          const int32_t* __restrict__ tokens, int64_t rows,
                                          float* __restrict__ dtable) {
  const int64_t n = rows * dim;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / dim, c = i - r * dim;
    atomicAdd(dtable + int64_t(tokens[r]) * dim + c, dout[i]);
  }
}

}  // namespace

void launch_embedding_forward(const bf16* table, int64_t dim, const int32_t* tokens,
                              int64_t rows, float* out, void* stream) {
  if (rows <= 0 || dim <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  embedding_forward_kernel<<<grid_for(embedding_forward_kernel, kThreads, rows * dim), kThreads,
                             0, st>>>(table, dim, tokens, rows, out);
  check_last_launch("embedding forward");
}

void launch_embedding_backward(const float* dout, int64_t dim, const int32_t* tokens,
                               int64_t rows, float* dtable, void* stream) {
  if (rows <= 0 || dim <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  embedding_backward_kernel<<<grid_for(embedding_backward_kernel, kThreads, rows * dim),
                              kThreads, 0, st>>>(dout, dim, tokens, rows, dtable);
  check_last_launch("embedding backward");
}

}  // namespace qarl::kernels::gpu
