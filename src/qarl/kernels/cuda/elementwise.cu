// Small elementwise and reduction helpers of the GPU model (model_ops.h): casts, bias add and
// its backward, strided row copies, the clipped straight-through mask, gradient-norm sums and
// scaling. Reductions are deterministic (fixed partitions, partial sums added in order).
#include <algorithm>
#include <cstdint>
#include <cuda_runtime.h>

#include "qarl/kernels/cuda/launch_config.cuh"
#include "qarl/kernels/cuda/model_ops.h"
#include "qarl/kernels/cuda/model_ops_device.cuh"

namespace qarl::kernels::gpu {
namespace {

constexpr int kThreads = 256;

#define QARL_GRID_STRIDE(i, n)                                                  \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

template <class DF, class DT>
__global__ void cast_kernel(const typename DF::raw* __restrict__ x,
                            typename DT::raw* __restrict__ y, int64_t n) {
  QARL_GRID_STRIDE(i, n) y[i] = DT::store(DF::load(x[i]));
}

template <class D>
__global__ void add_bias_kernel(typename D::raw* y, int64_t rows, int64_t cols, int64_t stride,
                                const float* __restrict__ b) {
  QARL_GRID_STRIDE(i, rows * cols) {
    const int64_t r = i / cols, c = i - r * cols;
    typename D::raw* p = y + r * stride + c;
    *p = D::store(D::load(*p) + b[c]);
  }
}

template <class D>
struct BiasTerm {
  const typename D::raw* dy;
  int64_t stride;
  __device__ double operator()(int64_t r, int64_t c) const {
    return double(D::load(dy[r * stride + c]));
  }
};

template <class D>
__global__ void clip_mask_kernel(float* dy, int64_t dys, const typename D::raw* __restrict__ x,
                                 int64_t xs, int64_t rows, int64_t cols, float amax) {
  QARL_GRID_STRIDE(i, rows * cols) {
    const int64_t r = i / cols, c = i - r * cols;
    if (!(fabsf(D::load(x[r * xs + c])) <= amax)) dy[r * dys + c] = 0.0f;  // NaN x -> 0
  }
}

// Sum of squares: block b sums elements b*kThreads + t + k*kSumBlocks*kThreads (fixed for a
// given n), then one block adds the block sums in a fixed tree.
__global__ void __launch_bounds__(kThreads)
    sum_squares_partial_kernel(const float* __restrict__ x, int64_t n,
                               double* __restrict__ part) {
  __shared__ double shm[32];
  double s = 0.0;
  QARL_GRID_STRIDE(i, n) {
    const double v = x[i];
    s += v * v;
  }
  s = ops::block_reduce<ops::SumOp, kThreads>(s, 0.0, shm);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}
__global__ void __launch_bounds__(kThreads)
    sum_finish_kernel(const double* __restrict__ part, int nparts, double* __restrict__ out) {
  __shared__ double shm[32];
  double s = 0.0;
  for (int i = threadIdx.x; i < nparts; i += kThreads) s += part[i];
  s = ops::block_reduce<ops::SumOp, kThreads>(s, 0.0, shm);
  if (threadIdx.x == 0) out[0] += s;
}

__global__ void scale_kernel(float* __restrict__ x, int64_t n, float s) {
  QARL_GRID_STRIDE(i, n) x[i] = x[i] * s;
}

size_t elem_size(Elem t) { return t == Elem::F32 ? 4 : 2; }

}  // namespace

void launch_cast(Elem from, const void* x, Elem to, void* y, int64_t n, void* stream) {
  if (n <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  ops::by_elem(from, [&](auto df) {
    ops::by_elem(to, [&](auto dt) {
      using DF = decltype(df);
      using DT = decltype(dt);
      auto k = cast_kernel<DF, DT>;
      k<<<grid_for(k, kThreads, n), kThreads, 0, st>>>(
          static_cast<const typename DF::raw*>(x), static_cast<typename DT::raw*>(y), n);
    });
  });
  check_last_launch("cast");
}

void launch_add_bias(Elem t, void* y, int64_t rows, int64_t cols, int64_t stride,
                     const float* b, void* stream) {
  if (rows <= 0 || cols <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  ops::by_elem(t, [&](auto d) {
    using D = decltype(d);
    auto k = add_bias_kernel<D>;
    k<<<grid_for(k, kThreads, rows * cols), kThreads, 0, st>>>(
        static_cast<typename D::raw*>(y), rows, cols, stride, b);
  });
  check_last_launch("add bias");
}

void launch_bias_backward(Elem t, const void* dy, int64_t rows, int64_t cols, int64_t stride,
                          float* db, void* stream) {
  if (rows <= 0 || cols <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  ops::by_elem(t, [&](auto d) {
    using D = decltype(d);
    ops::column_sum_add(BiasTerm<D>{static_cast<const typename D::raw*>(dy), stride}, rows,
                        cols, db, st, "bias backward");
  });
}

void launch_copy_rows(Elem t, const void* src, int64_t src_stride, void* dst,
                      int64_t dst_stride, int64_t rows, int64_t cols, void* stream) {
  if (rows <= 0 || cols <= 0) return;
  const size_t es = elem_size(t);
  ops::check_cuda(cudaMemcpy2DAsync(dst, size_t(dst_stride) * es, src, size_t(src_stride) * es,
                                    size_t(cols) * es, size_t(rows), cudaMemcpyDeviceToDevice,
                                    static_cast<cudaStream_t>(stream)),
                  "copy rows (cudaMemcpy2DAsync)");
}

void launch_clip_mask(float* dy, int64_t dy_stride, Elem x_t, const void* x, int64_t x_stride,
                      int64_t rows, int64_t cols, float amax, void* stream) {
  if (rows <= 0 || cols <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  ops::by_elem(x_t, [&](auto d) {
    using D = decltype(d);
    auto k = clip_mask_kernel<D>;
    k<<<grid_for(k, kThreads, rows * cols), kThreads, 0, st>>>(
        dy, dy_stride, static_cast<const typename D::raw*>(x), x_stride, rows, cols, amax);
  });
  check_last_launch("clip mask");
}

void launch_sum_squares(const float* x, int64_t n, double* out, void* stream) {
  if (n <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  // The partition depends on n only (not on the device), so the sum is reproducible.
  const int nparts = int(std::min<int64_t>(1024, (n + 4 * kThreads - 1) / (4 * kThreads)));
  ops::Scratch part(size_t(nparts) * sizeof(double), st);
  sum_squares_partial_kernel<<<nparts, kThreads, 0, st>>>(x, n, part.as<double>());
  sum_finish_kernel<<<1, kThreads, 0, st>>>(part.as<double>(), nparts, out);
  check_last_launch("sum of squares");
}

void launch_scale(float* x, int64_t n, float s, void* stream) {
  if (n <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  scale_kernel<<<grid_for(scale_kernel, kThreads, n), kThreads, 0, st>>>(x, n, s);
  check_last_launch("scale");
}

}  // namespace qarl::kernels::gpu
