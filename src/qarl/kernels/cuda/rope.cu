// RoPE on the GPU (model_ops.h): the rotate_half rotation of kernels::rope_forward/backward
// with cos/sin read from host-computed tables (kernels::rope_tables), so the angles are the
// CPU's bit for bit; the rotation itself is the same fp32 expression (no FMA: --fmad=false),
// so fp32 results equal the CPU's exactly and bf16 results are the CPU's rounded once.
#include <cstdint>
#include <cuda_runtime.h>

#include "qarl/kernels/cuda/launch_config.cuh"
#include "qarl/kernels/cuda/model_ops.h"
#include "qarl/kernels/cuda/model_ops_device.cuh"

namespace qarl::kernels::gpu {
namespace {

constexpr int kThreads = 256;

// One thread per (row, head, i < half) pair (x_i, x_{i+half}).
template <class D, bool kBackward>
__global__ void rope_kernel(typename D::raw* x, int64_t rows, int64_t stride, int n_heads,
                            int head_dim, const int32_t* __restrict__ positions,
                            const float* __restrict__ cos_t, const float* __restrict__ sin_t) {
  const int half = head_dim / 2;
  const int64_t per_row = int64_t(n_heads) * half;
  const int64_t n = rows * per_row;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / per_row;
    const int64_t rem = idx - r * per_row;
    const int64_t h = rem / half;
    const int i = int(rem - h * half);
    const int64_t t = int64_t(positions[r]) * half + i;
    const float c = cos_t[t], s = sin_t[t];
    typename D::raw* v = x + r * stride + h * head_dim;
    const float x1 = D::load(v[i]), x2 = D::load(v[i + half]);
    if (!kBackward) {
      v[i] = D::store(x1 * c - x2 * s);
      v[i + half] = D::store(x2 * c + x1 * s);
    } else {
      v[i] = D::store(x1 * c + x2 * s);
      v[i + half] = D::store(x2 * c - x1 * s);
    }
  }
}

}  // namespace

void launch_rope_forward(Elem t, void* x, int64_t rows, int64_t stride, int n_heads,
                         int head_dim, const int32_t* positions, const float* cos_t,
                         const float* sin_t, void* stream) {
  const int64_t n = rows * n_heads * (head_dim / 2);
  if (n <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  ops::by_elem(t, [&](auto d) {
    using D = decltype(d);
    auto k = rope_kernel<D, false>;
    k<<<grid_for(k, kThreads, n), kThreads, 0, st>>>(static_cast<typename D::raw*>(x), rows,
                                                     stride, n_heads, head_dim, positions,
                                                     cos_t, sin_t);
  });
  check_last_launch("rope forward");
}

void launch_rope_backward(float* dx, int64_t rows, int64_t stride, int n_heads, int head_dim,
                          const int32_t* positions, const float* cos_t, const float* sin_t,
                          void* stream) {
  const int64_t n = rows * n_heads * (head_dim / 2);
  if (n <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  auto k = rope_kernel<dev::F32, true>;
  k<<<grid_for(k, kThreads, n), kThreads, 0, st>>>(dx, rows, stride, n_heads, head_dim,
                                                   positions, cos_t, sin_t);
  check_last_launch("rope backward");
}

}  // namespace qarl::kernels::gpu
