// RMSNorm on the GPU (model_ops.h), the arithmetic of kernels::rmsnorm_forward/backward:
// sum of squares in double, var = float(ss / dim), rstd = 1 / sqrt(var + eps) in fp32,
// y = w * (x * rstd). One group of `dim` elements is normalized by T threads (a warp for
// dim <= 1024, a 256-thread block above), each summing its strided elements in index order,
// then a fixed butterfly/tree: the pattern depends only on dim, so a group's result is the
// same in any launch. dw is a deterministic column sum (model_ops_device.cuh).
#include <cstdint>
#include <cuda_runtime.h>

#include "qarl/kernels/cuda/model_ops.h"
#include "qarl/kernels/cuda/model_ops_device.cuh"

namespace qarl::kernels::gpu {
namespace {

constexpr int kBlock = 256;

template <class DI, class DO, int T>
__global__ void __launch_bounds__(kBlock)
    rmsnorm_forward_kernel(const typename DI::raw* x, int64_t xs, const float* __restrict__ w,
                           int64_t nq, int groups, int dim, float eps, typename DO::raw* y,
                           int64_t ys, float* __restrict__ rstd) {
  __shared__ double shm[32];
  const int t = threadIdx.x % T;
  const int64_t q = int64_t(blockIdx.x) * (kBlock / T) + threadIdx.x / T;
  if (q >= nq) return;  // whole groups only: T == 32 exits by warps, T == kBlock never
  const int64_t r = q / groups, g = q - r * groups;
  const typename DI::raw* xr = x + r * xs + g * dim;
  typename DO::raw* yr = y + r * ys + g * dim;
  double ss = 0.0;
  for (int i = t; i < dim; i += T) {
    const double v = DI::load(xr[i]);
    ss += v * v;
  }
  ss = ops::block_reduce<ops::SumOp, T>(ss, 0.0, shm);
  const float var = __double2float_rn(ss / double(dim));
  const float rs = 1.0f / sqrtf(var + eps);
  if (rstd && t == 0) rstd[q] = rs;
  for (int i = t; i < dim; i += T) yr[i] = DO::store(w[i] * (DI::load(xr[i]) * rs));
}

template <class DG, class DI, int T>
__global__ void __launch_bounds__(kBlock)
    rmsnorm_backward_kernel(const typename DG::raw* dy, int64_t dys, const typename DI::raw* x,
                            int64_t xs, const float* __restrict__ w,
                            const float* __restrict__ rstd, int64_t nq, int groups, int dim,
                            float* dx, int64_t dxs, bool accumulate) {
  __shared__ double shm[32];
  const int t = threadIdx.x % T;
  const int64_t q = int64_t(blockIdx.x) * (kBlock / T) + threadIdx.x / T;
  if (q >= nq) return;
  const int64_t r = q / groups, g = q - r * groups;
  const typename DG::raw* gr = dy + r * dys + g * dim;
  const typename DI::raw* xr = x + r * xs + g * dim;
  float* dxr = dx + r * dxs + g * dim;
  double dot = 0.0;  // sum_i g_i w_i x_i
  for (int i = t; i < dim; i += T)
    dot += double(DG::load(gr[i])) * double(w[i]) * double(DI::load(xr[i]));
  dot = ops::block_reduce<ops::SumOp, T>(dot, 0.0, shm);
  const double rs = rstd[q];
  const double c = dot * rs * rs * rs / double(dim);
  // Each thread rewrites only the elements it read itself: dx may alias dy.
  for (int i = t; i < dim; i += T) {
    const float v = __double2float_rn(double(DG::load(gr[i])) * double(w[i]) * rs -
                                      c * double(DI::load(xr[i])));
    dxr[i] = accumulate ? dxr[i] + v : v;
  }
}

// d/dw_c of group item j: dy * x * rstd, the CPU's product order.
template <class DG, class DI>
struct DwTerm {
  const typename DG::raw* dy;
  int64_t dys;
  const typename DI::raw* x;
  int64_t xs;
  const float* rstd;
  int64_t groups, dim;
  __device__ double operator()(int64_t j, int64_t c) const {
    const int64_t r = j / groups, g = j - r * groups;
    return double(DG::load(dy[r * dys + g * dim + c])) *
           double(DI::load(x[r * xs + g * dim + c])) * double(rstd[j]);
  }
};

template <class Kernel>
void launch_groups(Kernel k, bool warp_per_group, int64_t nq, cudaStream_t st, auto&&... args) {
  const int64_t per_block = warp_per_group ? kBlock / 32 : 1;
  k<<<unsigned((nq + per_block - 1) / per_block), kBlock, 0, st>>>(args...);
}

bool warp_per_group(int dim) { return dim <= 1024; }

}  // namespace

void launch_rmsnorm_forward(Elem in_t, const void* x, int64_t x_stride, const float* w,
                            int64_t rows, int groups, int dim, float eps, Elem out_t, void* y,
                            int64_t y_stride, float* rstd, void* stream) {
  const int64_t nq = rows * groups;
  if (nq <= 0 || dim <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  const bool wpg = warp_per_group(dim);
  ops::by_elem(in_t, [&](auto di) {
    ops::by_elem(out_t, [&](auto dout) {
      using DI = decltype(di);
      using DO = decltype(dout);
      auto xp = static_cast<const typename DI::raw*>(x);
      auto yp = static_cast<typename DO::raw*>(y);
      if (wpg)
        launch_groups(rmsnorm_forward_kernel<DI, DO, 32>, true, nq, st, xp, x_stride, w, nq,
                      groups, dim, eps, yp, y_stride, rstd);
      else
        launch_groups(rmsnorm_forward_kernel<DI, DO, kBlock>, false, nq, st, xp, x_stride, w,
                      nq, groups, dim, eps, yp, y_stride, rstd);
    });
  });
  check_last_launch("rmsnorm forward");
}

void launch_rmsnorm_backward(Elem dy_t, const void* dy, int64_t dy_stride, Elem in_t,
                             const void* x, int64_t x_stride, const float* w, const float* rstd,
                             int64_t rows, int groups, int dim, float* dx, int64_t dx_stride,
                             bool accumulate, float* dw, void* stream) {
  const int64_t nq = rows * groups;
  if (nq <= 0 || dim <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  const bool wpg = warp_per_group(dim);
  ops::by_elem(dy_t, [&](auto dg) {
    ops::by_elem(in_t, [&](auto di) {
      using DG = decltype(dg);
      using DI = decltype(di);
      auto gp = static_cast<const typename DG::raw*>(dy);
      auto xp = static_cast<const typename DI::raw*>(x);
      // dw first: dx may overwrite dy.
      if (dw)
        ops::column_sum_add(DwTerm<DG, DI>{gp, dy_stride, xp, x_stride, rstd, groups, dim}, nq,
                            dim, dw, st, "rmsnorm backward (dw)");
      if (wpg)
        launch_groups(rmsnorm_backward_kernel<DG, DI, 32>, true, nq, st, gp, dy_stride, xp,
                      x_stride, w, rstd, nq, groups, dim, dx, dx_stride, accumulate);
      else
        launch_groups(rmsnorm_backward_kernel<DG, DI, kBlock>, false, nq, st, gp, dy_stride, xp,
                      x_stride, w, rstd, nq, groups, dim, dx, dx_stride, accumulate);
    });
  });
  check_last_launch("rmsnorm backward");
}

}  // namespace qarl::kernels::gpu
