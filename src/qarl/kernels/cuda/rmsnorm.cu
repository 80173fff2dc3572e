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

// A warp's group (dim <= 1024 = 32 x kPerLane) is loaded into registers in one go, each lane
// its elements t, t+32, ... (kPerLane independent loads in flight instead of a load-then-add
// chain), then summed in the same order as the strided loop: the bits do not change.
constexpr int kPerLane = 32;

template <class DI, class DO, int T>
__global__ void __launch_bounds__(kBlock)
    rmsnorm_forward_kernel(const typename DI::raw* x, int64_t xs, const float* __restrict__ w,
                           int64_t nq, int groups, int dim, float eps, typename DO::raw* y,
                           int64_t ys, float* __restrict__ rstd,
                           typename DI::raw* __restrict__ x_copy) {
  __shared__ double shm[32];
  const int t = threadIdx.x % T;
  const int64_t q = int64_t(blockIdx.x) * (kBlock / T) + threadIdx.x / T;
  if (q >= nq) return;  // whole groups only: T == 32 exits by warps, T == kBlock never
  const int64_t r = q / groups, g = q - r * groups;
  const typename DI::raw* xr = x + r * xs + g * dim;
  typename DO::raw* yr = y + r * ys + g * dim;
  typename DI::raw* cr = x_copy ? x_copy + r * xs + g * dim : nullptr;
  if constexpr (T == 32) {
    float xv[kPerLane];
#pragma unroll
    for (int k = 0; k < kPerLane; ++k) xv[k] = t + 32 * k < dim ? DI::load(xr[t + 32 * k]) : 0.0f;
    if (cr)  // the raw input, not its float value: a copy of the bits
#pragma unroll
      for (int k = 0; k < kPerLane; ++k)
        if (t + 32 * k < dim) cr[t + 32 * k] = xr[t + 32 * k];
    double ss = 0.0;
#pragma unroll
    for (int k = 0; k < kPerLane; ++k)
      if (t + 32 * k < dim) {
        const double v = xv[k];
        ss += v * v;
      }
    ss = ops::warp_reduce<ops::SumOp>(ss);
    const float var = __double2float_rn(ss / double(dim));
    const float rs = 1.0f / sqrtf(var + eps);
    if (rstd && t == 0) rstd[q] = rs;
#pragma unroll
    for (int k = 0; k < kPerLane; ++k)
      if (t + 32 * k < dim) yr[t + 32 * k] = DO::store(w[t + 32 * k] * (xv[k] * rs));
  } else {
    double ss = 0.0;
    for (int i = t; i < dim; i += T) {
      const double v = DI::load(xr[i]);
      ss += v * v;
      if (cr) cr[i] = xr[i];
    }
    ss = ops::block_reduce<ops::SumOp, T>(ss, 0.0, shm);
    const float var = __double2float_rn(ss / double(dim));
    const float rs = 1.0f / sqrtf(var + eps);
    if (rstd && t == 0) rstd[q] = rs;
    for (int i = t; i < dim; i += T) yr[i] = DO::store(w[i] * (DI::load(xr[i]) * rs));
  }
}

// One group's dx (T == 32: from registers, as the forward). Each thread rewrites only the
// elements it read itself: dx may alias dy.
template <class DG, class DI, int T>
__device__ __forceinline__ void rmsnorm_backward_group(const typename DG::raw* gr,
                                                       const typename DI::raw* xr,
                                                       const float* __restrict__ w, double rs,
                                                       int dim, float* dxr, bool accumulate,
                                                       uint16_t* dx16r, double* shm) {
  const int t = threadIdx.x % T;
  if constexpr (T == 32) {
    // Two passes with 8 loads in flight per lane (few registers: many warps per SM); the
    // second pass re-reads dy and x from L1.
    double dot = 0.0;  // sum_i g_i w_i x_i
#pragma unroll 8
    for (int i = t; i < dim; i += 32)
      dot += double(DG::load(gr[i])) * double(w[i]) * double(DI::load(xr[i]));
    dot = ops::warp_reduce<ops::SumOp>(dot);
    const double c = dot * rs * rs * rs / double(dim);
#pragma unroll 8
    for (int i = t; i < dim; i += 32) {
      const float v = __double2float_rn(double(DG::load(gr[i])) * double(w[i]) * rs -
                                        c * double(DI::load(xr[i])));
      const float out = accumulate ? dxr[i] + v : v;
      dxr[i] = out;
      if (dx16r) dx16r[i] = dev::BF16::store(out);
    }
  } else {
    double dot = 0.0;
    for (int i = t; i < dim; i += T)
      dot += double(DG::load(gr[i])) * double(w[i]) * double(DI::load(xr[i]));
    dot = ops::block_reduce<ops::SumOp, T>(dot, 0.0, shm);
    const double c = dot * rs * rs * rs / double(dim);
    for (int i = t; i < dim; i += T) {
      const float v = __double2float_rn(double(DG::load(gr[i])) * double(w[i]) * rs -
                                        c * double(DI::load(xr[i])));
      const float out = accumulate ? dxr[i] + v : v;
      dxr[i] = out;
      if (dx16r) dx16r[i] = dev::BF16::store(out);
    }
  }
}

template <class DG, class DI, int T>
__global__ void __launch_bounds__(kBlock)
    rmsnorm_backward_kernel(const typename DG::raw* dy, int64_t dys, const typename DI::raw* x,
                            int64_t xs, const float* __restrict__ w,
                            const float* __restrict__ rstd, int64_t nq, int groups, int dim,
                            float* dx, int64_t dxs, bool accumulate, uint16_t* dx16) {
  __shared__ double shm[32];
  const int64_t q = int64_t(blockIdx.x) * (kBlock / T) + threadIdx.x / T;
  if (q >= nq) return;
  const int64_t r = q / groups, g = q - r * groups;
  rmsnorm_backward_group<DG, DI, T>(dy + r * dys + g * dim, x + r * xs + g * dim, w, rstd[q], dim,
                                    dx + r * dxs + g * dim, accumulate,
                                    dx16 ? dx16 + r * dxs + g * dim : nullptr, shm);
}

// One row per group (groups == 1, dim <= 1024), dw fused: a block takes kChunkRows rows, a
// warp per row for dx, then each thread sums dy * x * rstd (DwTerm's product order) over the
// block's rows in order for its columns while dy and x are still in L2, instead of a second
// pass reading them from memory; column_finish_kernel adds the blocks' sums. The chunks are
// 8 rows, not column_sum_add's 32 (more blocks in flight), so dw may differ from that path in
// the last bit (both are double sums rounded once). dx must not alias dy.
constexpr int kChunkRows = kBlock / 32;
template <class DG, class DI>
__global__ void __launch_bounds__(kBlock)
    rmsnorm_backward_dw_kernel(const typename DG::raw* dy, int64_t dys, const typename DI::raw* x,
                               int64_t xs, const float* __restrict__ w,
                               const float* __restrict__ rstd, int64_t rows, int dim, float* dx,
                               int64_t dxs, bool accumulate, uint16_t* dx16,
                               double* __restrict__ part) {
  const int warp = threadIdx.x / 32;
  const int64_t r0 = int64_t(blockIdx.x) * kChunkRows;
  const int nr = int(min(int64_t(kChunkRows), rows - r0));
  if (warp < nr) {
    const int64_t r = r0 + warp;
    rmsnorm_backward_group<DG, DI, 32>(dy + r * dys, x + r * xs, w, rstd[r], dim, dx + r * dxs,
                                       accumulate, dx16 ? dx16 + r * dxs : nullptr, nullptr);
  }
  // A column's terms are loaded 8 rows at a time, then added in row order.
  for (int c = threadIdx.x; c < dim; c += kBlock) {
    double s = 0.0;
    for (int u0 = 0; u0 < kChunkRows; u0 += 8) {
      float gv[8], xv[8], rv[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        const bool in = u0 + u < nr;
        const int64_t r = r0 + u0 + u;
        gv[u] = in ? DG::load(dy[r * dys + c]) : 0.0f;
        xv[u] = in ? DI::load(x[r * xs + c]) : 0.0f;
        rv[u] = in ? rstd[r] : 0.0f;
      }
#pragma unroll
      for (int u = 0; u < 8; ++u)
        if (u0 + u < nr) s += double(gv[u]) * double(xv[u]) * double(rv[u]);
    }
    part[int64_t(c) * gridDim.x + blockIdx.x] = s;  // column-major (column_finish_kernel)
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
                            int64_t y_stride, float* rstd, void* stream, void* x_copy) {
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
      auto cp = static_cast<typename DI::raw*>(x_copy);
      if (wpg)
        launch_groups(rmsnorm_forward_kernel<DI, DO, 32>, true, nq, st, xp, x_stride, w, nq,
                      groups, dim, eps, yp, y_stride, rstd, cp);
      else
        launch_groups(rmsnorm_forward_kernel<DI, DO, kBlock>, false, nq, st, xp, x_stride, w,
                      nq, groups, dim, eps, yp, y_stride, rstd, cp);
    });
  });
  check_last_launch("rmsnorm forward");
}

void launch_rmsnorm_backward(Elem dy_t, const void* dy, int64_t dy_stride, Elem in_t,
                             const void* x, int64_t x_stride, const float* w, const float* rstd,
                             int64_t rows, int groups, int dim, float* dx, int64_t dx_stride,
                             bool accumulate, float* dw, void* stream, uint16_t* dx_bf16) {
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
      // The fused dw path: one row per group, a warp per row, dx apart from dy.
      const int64_t chunks = (nq + kChunkRows - 1) / kChunkRows;
      if (dw && groups == 1 && wpg &&
          static_cast<const void*>(dx) != static_cast<const void*>(dy)) {
        ops::Scratch part(size_t(chunks) * size_t(dim) * sizeof(double), st);
        rmsnorm_backward_dw_kernel<DG, DI><<<unsigned(chunks), kBlock, 0, st>>>(
            gp, dy_stride, xp, x_stride, w, rstd, nq, dim, dx, dx_stride, accumulate, dx_bf16,
            part.as<double>());
        constexpr int kF = 256;  // column_sum_add's finish: a warp per column
        ops::column_finish_kernel<><<<unsigned((int64_t(dim) * 32 + kF - 1) / kF), kF, 0, st>>>(
            part.as<double>(), chunks, dim, dw);
        return;
      }
      // dw first: dx may overwrite dy.
      if (dw)
        ops::column_sum_add(DwTerm<DG, DI>{gp, dy_stride, xp, x_stride, rstd, groups, dim}, nq,
                            dim, dw, st, "rmsnorm backward (dw)");
      if (wpg)
        launch_groups(rmsnorm_backward_kernel<DG, DI, 32>, true, nq, st, gp, dy_stride, xp,
                      x_stride, w, rstd, nq, groups, dim, dx, dx_stride, accumulate, dx_bf16);
      else
        launch_groups(rmsnorm_backward_kernel<DG, DI, kBlock>, false, nq, st, gp, dy_stride, xp,
                      x_stride, w, rstd, nq, groups, dim, dx, dx_stride, accumulate, dx_bf16);
    });
  });
  check_last_launch("rmsnorm backward");
}

}  // namespace qarl::kernels::gpu
