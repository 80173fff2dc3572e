// Native FP8 / NVFP4 KV-cache codecs: store codes (+ block scales) instead of fake-quantized
// values, and decode them to exactly the values fake quantization gives (same device
// arithmetic from quant_device.cuh). Simple grid-stride kernels: the KV write and read of
// one decode step move few bytes; correctness is what matters here.
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
__global__ void fp8_encode_kernel(const typename D::raw* __restrict__ x, uint8_t* __restrict__ c,
                                  int64_t n, float s) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    c[i] = fp8_code(D::load(x[i]), s);
}

template <class D>
__global__ void fp8_decode_kernel(const uint8_t* __restrict__ c, typename D::raw* __restrict__ y,
                                  int64_t n, float inv) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = D::store(fp8_dequant(c[i], inv));
}

// One thread per 16-element block: 8 packed bytes and one scale code.
template <class D, bool kTriton>
__global__ void nvfp4_encode_kernel(const typename D::raw* __restrict__ x,
                                    uint8_t* __restrict__ packed, uint8_t* __restrict__ scales,
                                    int64_t nblocks, Nvfp4Scale k) {
  for (int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; b < nblocks;
       b += int64_t(gridDim.x) * blockDim.x) {
    float f[16], m = 0.0f;
#pragma unroll
    for (int e = 0; e < 16; ++e) { f[e] = D::load(x[b * 16 + e]); m = fmaxf(m, fabsf(f[e])); }
    const Nvfp4Block<kTriton> blk(m, k);
    scales[b] = blk.code;
#pragma unroll
    for (int e = 0; e < 16; e += 2)
      packed[b * 8 + e / 2] = uint8_t(e2m1_code(f[e], blk) | (e2m1_code(f[e + 1], blk) << 4));
  }
}

template <class D>
__global__ void nvfp4_decode_kernel(const uint8_t* __restrict__ packed,
                                    const uint8_t* __restrict__ scales,
                                    typename D::raw* __restrict__ y, int64_t nblocks, float gs) {
  for (int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; b < nblocks;
       b += int64_t(gridDim.x) * blockDim.x) {
    float S = __fmul_rn(e4m3_decode(scales[b]), gs);
#pragma unroll
    for (int e = 0; e < 16; e += 2) {
      uint32_t p = packed[b * 8 + e / 2];
      y[b * 16 + e] = D::store(e2m1_dequant(p & 15u, S));
      y[b * 16 + e + 1] = D::store(e2m1_dequant(p >> 4, S));
    }
  }
}

template <template <class> class K, class F>
void by_elem(Elem t, F&& f) {
  switch (t) {
    case Elem::F32: f(K<F32>{}); break;
    case Elem::BF16: f(K<BF16>{}); break;
    case Elem::F16: f(K<F16>{}); break;
  }
}
template <class D> struct Tag { using type = D; };

}  // namespace

void launch_fp8_encode(Elem t, const void* x, uint8_t* codes, int64_t n, float s, void* stream) {
  if (n == 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  by_elem<Tag>(t, [&](auto tag) {
    using D = typename decltype(tag)::type;
    fp8_encode_kernel<D><<<grid_for(fp8_encode_kernel<D>, kThreads, n), kThreads, 0, st>>>(
        static_cast<const typename D::raw*>(x), codes, n, s);
  });
  check_last_launch("fp8 encode");
}

void launch_fp8_decode(Elem t, const uint8_t* codes, void* y, int64_t n, float inv, void* stream) {
  if (n == 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  by_elem<Tag>(t, [&](auto tag) {
    using D = typename decltype(tag)::type;
    fp8_decode_kernel<D><<<grid_for(fp8_decode_kernel<D>, kThreads, n), kThreads, 0, st>>>(
        codes, static_cast<typename D::raw*>(y), n, inv);
  });
  check_last_launch("fp8 decode");
}

void launch_nvfp4_encode(Elem t, const void* x, uint8_t* packed, uint8_t* scales, int64_t n,
                         Nvfp4Scalars s, void* stream) {
  if (n == 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  const Nvfp4Scale k{s.gs, s.six_gs, s.rcp_six_gs};
  by_elem<Tag>(t, [&](auto tag) {
    using D = typename decltype(tag)::type;
    auto go = [&](auto kern) {
      kern<<<grid_for(kern, kThreads, n / 16), kThreads, 0, st>>>(
          static_cast<const typename D::raw*>(x), packed, scales, n / 16, k);
    };
    if (s.triton) go(nvfp4_encode_kernel<D, true>);
    else go(nvfp4_encode_kernel<D, false>);
  });
  check_last_launch("nvfp4 encode");
}

void launch_nvfp4_decode(Elem t, const uint8_t* packed, const uint8_t* scales, void* y,
                         int64_t n, float gs, void* stream) {
  if (n == 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  by_elem<Tag>(t, [&](auto tag) {
    using D = typename decltype(tag)::type;
    nvfp4_decode_kernel<D><<<grid_for(nvfp4_decode_kernel<D>, kThreads, n / 16), kThreads, 0, st>>>(
        packed, scales, static_cast<typename D::raw*>(y), n / 16, gs);
  });
  check_last_launch("nvfp4 decode");
}

}  // namespace qarl::kernels::gpu
