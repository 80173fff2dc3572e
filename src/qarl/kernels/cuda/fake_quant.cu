// CUDA fake quantization (FP8 per-tensor, NVFP4 block-16) at memory bandwidth.
// Layout of the work: each thread moves 16-byte vectors (8 bf16/f16 or 4 f32), UNROLL of
// them loaded before any is used (several loads in flight), grid-stride over a grid that
// just fills the GPU. NVFP4: the 16-element block spans 16/E adjacent lanes, whose block
// max is combined with xor shuffles (one per halving), so no shared memory is needed.
// Scalar kernels handle misaligned pointers and the FP8 tail.
#include <cstdint>
#include <cuda_runtime.h>

#include "qarl/kernels/cuda/launch.h"
#include "qarl/kernels/cuda/launch_config.cuh"
#include "qarl/kernels/cuda/quant_device.cuh"

namespace qarl::kernels::gpu {
namespace {

using namespace dev;
constexpr int kThreads = 256;

template <class D>
struct Vec {
  using raw = typename D::raw;
  static constexpr int E = 16 / int(sizeof(raw));
  __device__ static void unpack(const uint4& v, float (&f)[E]) {
    const raw* p = reinterpret_cast<const raw*>(&v);
#pragma unroll
    for (int i = 0; i < E; ++i) f[i] = D::load(p[i]);
  }
  __device__ static uint4 pack(const float (&f)[E]) {  // exact for every value (NaN too)
    uint4 v;
    raw* p = reinterpret_cast<raw*>(&v);
#pragma unroll
    for (int i = 0; i < E; ++i) p[i] = D::store(f[i]);
    return v;
  }
  // Hardware conversions, two at a time: equal to pack() when no value is NaN.
  __device__ static uint4 pack_finite(const float (&f)[E]) {
    if constexpr (E == 4) {
      return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]),
                        __float_as_uint(f[3]));
    } else {
      return make_uint4(D::pack2(f[0], f[1]), D::pack2(f[2], f[3]), D::pack2(f[4], f[5]),
                        D::pack2(f[6], f[7]));
    }
  }
};

template <class D, int UNROLL>
__global__ void __launch_bounds__(kThreads) fp8_vec_kernel(const uint4* __restrict__ x,
                                                           uint4* __restrict__ y, int64_t nvec,
                                                           Fp8Scale k) {
  using V = Vec<D>;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < nvec; i += stride * UNROLL) {
    uint4 v[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u)
      if (i + u * stride < nvec) v[u] = __ldcs(x + i + u * stride);
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      if (i + u * stride >= nvec) break;
      float f[V::E], o[V::E];
      V::unpack(v[u], f);
      bool nan = false;
#pragma unroll
      for (int e = 0; e < V::E; e += 2) {  // pairs: one cvt each way for two elements
        float2 d = e4m3x2_decode(e4m3x2_encode(__fmul_rn(f[e], k.s), __fmul_rn(f[e + 1], k.s)));
        o[e] = __fmul_rn(d.x, k.inv);
        o[e + 1] = __fmul_rn(d.y, k.inv);
        nan |= (f[e] != f[e]) | (f[e + 1] != f[e + 1]);
      }
      if (nan) {  // rare: the CPU's NaN (sign kept) and the exact conversions
#pragma unroll
        for (int e = 0; e < V::E; ++e) o[e] = f[e] != f[e] ? cpu_nan_like(f[e]) : o[e];
        __stcs(y + i + u * stride, V::pack(o));
      } else {
        __stcs(y + i + u * stride, V::pack_finite(o));
      }
    }
  }
}

template <class D>
__global__ void fp8_scalar_kernel(const typename D::raw* __restrict__ x,
                                  typename D::raw* __restrict__ y, int64_t begin, int64_t n,
                                  Fp8Scale k) {
  for (int64_t i = begin + int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = D::store(fp8_fake(D::load(x[i]), k));
}

template <class D, int UNROLL, bool kTriton>
__global__ void __launch_bounds__(kThreads) nvfp4_vec_kernel(const uint4* __restrict__ x,
                                                             uint4* __restrict__ y,
                                                             int64_t nvec, Nvfp4Scale k) {
  using V = Vec<D>;
  constexpr int TPB = 16 / V::E;  // lanes per 16-element block: 2 (16-bit) or 4 (f32)
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t warp_first = tid & ~int64_t(31);
  // Warp-uniform loop: every lane runs every shuffle; out-of-range lanes only skip memory.
  for (int64_t base = 0; base + warp_first < nvec; base += stride * UNROLL) {
    uint4 v[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      int64_t i = base + u * stride + tid;
      v[u] = i < nvec ? __ldcs(x + i) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      int64_t i = base + u * stride + tid;
      float f[V::E];
      V::unpack(v[u], f);
      float m = 0.0f;
#pragma unroll
      for (int e = 0; e < V::E; ++e) m = fmaxf(m, fabsf(f[e]));
#pragma unroll
      for (int off = 1; off < TPB; off <<= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
      const Nvfp4Block<kTriton> blk(m, k);
#pragma unroll
      for (int e = 0; e < V::E; ++e) f[e] = nvfp4_fake_fast(f[e], blk);
      if (i < nvec) __stcs(y + i, V::pack_finite(f));  // NVFP4 outputs are never NaN
    }
  }
}

// One thread per 16-element block (misaligned pointers).
template <class D, bool kTriton>
__global__ void nvfp4_scalar_kernel(const typename D::raw* __restrict__ x,
                                    typename D::raw* __restrict__ y, int64_t nblocks,
                                    Nvfp4Scale k) {
  for (int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; b < nblocks;
       b += int64_t(gridDim.x) * blockDim.x) {
    float f[16], m = 0.0f;
    for (int e = 0; e < 16; ++e) { f[e] = D::load(x[b * 16 + e]); m = fmaxf(m, fabsf(f[e])); }
    const Nvfp4Block<kTriton> blk(m, k);
    for (int e = 0; e < 16; ++e) y[b * 16 + e] = D::store(nvfp4_fake(f[e], blk));
  }
}

template <class D>
__global__ void clipped_backward_kernel(const typename D::raw* __restrict__ dy,
                                        const typename D::raw* __restrict__ x,
                                        typename D::raw* __restrict__ dx, int64_t n, float amax) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = fabsf(D::load(x[i])) <= amax ? dy[i] : typename D::raw(0);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <class D>
void fp8_dispatch(const void* x, void* y, int64_t n, Fp8Scale k, cudaStream_t st) {
  using raw = typename D::raw;
  constexpr int E = Vec<D>::E;
  int64_t done = 0;
  if (aligned16(x) && aligned16(y)) {
    int64_t nvec = n / E;
    if (nvec > 0) {
      constexpr int U = 4;
      fp8_vec_kernel<D, U><<<grid_for(fp8_vec_kernel<D, U>, kThreads, nvec), kThreads, 0, st>>>(
          static_cast<const uint4*>(x), static_cast<uint4*>(y), nvec, k);
    }
    done = nvec * E;
  }
  if (done < n)
    fp8_scalar_kernel<D><<<grid_for(fp8_scalar_kernel<D>, kThreads, n - done), kThreads, 0, st>>>(
        static_cast<const raw*>(x), static_cast<raw*>(y), done, n, k);
}

template <class D, bool kTriton>
void nvfp4_dispatch(const void* x, void* y, int64_t n, Nvfp4Scale k, cudaStream_t st) {
  using raw = typename D::raw;
  if (aligned16(x) && aligned16(y)) {
    constexpr int U = 4;
    int64_t nvec = n / Vec<D>::E;
    auto kern = nvfp4_vec_kernel<D, U, kTriton>;
    kern<<<grid_for(kern, kThreads, nvec), kThreads, 0, st>>>(
        static_cast<const uint4*>(x), static_cast<uint4*>(y), nvec, k);
  } else {
    auto kern = nvfp4_scalar_kernel<D, kTriton>;
    kern<<<grid_for(kern, kThreads, n / 16), kThreads, 0, st>>>(
        static_cast<const raw*>(x), static_cast<raw*>(y), n / 16, k);
  }
}
template <bool kTriton>
void nvfp4_by_elem(Elem t, const void* x, void* y, int64_t n, Nvfp4Scale k, cudaStream_t st) {
  switch (t) {
    case Elem::F32: nvfp4_dispatch<F32, kTriton>(x, y, n, k, st); break;
    case Elem::BF16: nvfp4_dispatch<BF16, kTriton>(x, y, n, k, st); break;
    case Elem::F16: nvfp4_dispatch<F16, kTriton>(x, y, n, k, st); break;
  }
}

}  // namespace

void launch_fp8_fake_quant(Elem t, const void* x, void* y, int64_t n, float s, float inv,
                           void* stream) {
  if (n == 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  Fp8Scale k{s, inv};
  switch (t) {
    case Elem::F32: fp8_dispatch<F32>(x, y, n, k, st); break;
    case Elem::BF16: fp8_dispatch<BF16>(x, y, n, k, st); break;
    case Elem::F16: fp8_dispatch<F16>(x, y, n, k, st); break;
  }
  check_last_launch("fp8 fake quant");
}

void launch_nvfp4_fake_quant(Elem t, const void* x, void* y, int64_t n, Nvfp4Scalars s,
                             void* stream) {
  if (n == 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  Nvfp4Scale k{s.gs, s.six_gs, s.rcp_six_gs};
  if (s.triton) nvfp4_by_elem<true>(t, x, y, n, k, st);
  else nvfp4_by_elem<false>(t, x, y, n, k, st);
  check_last_launch("nvfp4 fake quant");
}

void launch_clipped_backward(Elem t, const void* dy, const void* x, void* dx, int64_t n,
                             float amax, void* stream) {
  if (n == 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  auto go = [&](auto tag) {
    using D = decltype(tag);
    using raw = typename D::raw;
    clipped_backward_kernel<D><<<grid_for(clipped_backward_kernel<D>, kThreads, n), kThreads, 0, st>>>(
        static_cast<const raw*>(dy), static_cast<const raw*>(x), static_cast<raw*>(dx), n, amax);
  };
  switch (t) {
    case Elem::F32: go(F32{}); break;
    case Elem::BF16: go(BF16{}); break;
    case Elem::F16: go(F16{}); break;
  }
  check_last_launch("fake quant clipped backward");
}

}  // namespace qarl::kernels::gpu
