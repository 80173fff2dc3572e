// Does Hopper's wgmma give the same bits as mma.sync? The exact GEMM's contract
// (src/qarl/kernels/cuda/gemm_exact.cu) is a chain of mma.sync.m16n8k16 bf16 -> f32 over
// ascending k16 for every C(i, j). If wgmma.m64nNk16 computes each k16 link with the same
// arithmetic, the large-M exact tiles can move to wgmma (~2x the issue rate) and stay
// bitwise equal to the decode tiles; if not, they cannot. This program answers it on the
// device, on inputs chosen to expose alignment, truncation and rounding differences, and
// checks both against an fp64 reference (which also validates the wgmma operand layout).
//
// Built by CMake in CUDA builds (build/bench/wgmma_probe), or by hand (no GPU needed):
//   nvcc -std=c++20 -O2 -gencode arch=compute_90a,code=sm_90a -I src -I . bench/gpu/wgmma_probe.cu -o wgmma_probe
//   ./wgmma_probe            # prints a table; exit 0 = bitwise equal everywhere, 1 = not, 2 = error
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "bench/gpu/probe_util.h"
#include "qarl/kernels/cuda/mma_ptx.cuh"
#include "qarl/kernels/cuda/wgmma_ptx.cuh"

namespace {

namespace wg = qarl::kernels::gpu::wgmma;
constexpr int kM = 64, kK = 1024, kBK = 64;

// The exact GEMM's per-element chain, fragments straight from global memory: one warp per
// 16 x 8 output block. A: M x K row-major, W: N x K row-major (C = A W^T).
__global__ void mma_chain_kernel(const uint16_t* A, const uint16_t* W, float* C, int N) {
  const int lane = threadIdx.x, g = lane / 4, tq = lane % 4;
  const int m0 = blockIdx.y * 16, n0 = blockIdx.x * 8;
  float acc[4] = {0, 0, 0, 0};
  auto pair = [](const uint16_t* p) { return uint32_t(p[0]) | (uint32_t(p[1]) << 16); };
  for (int k0 = 0; k0 < kK; k0 += 16) {
    uint32_t a[4];
    a[0] = pair(A + (m0 + g) * kK + k0 + 2 * tq);
    a[1] = pair(A + (m0 + g + 8) * kK + k0 + 2 * tq);
    a[2] = pair(A + (m0 + g) * kK + k0 + 2 * tq + 8);
    a[3] = pair(A + (m0 + g + 8) * kK + k0 + 2 * tq + 8);
    const uint32_t b0 = pair(W + (n0 + g) * kK + k0 + 2 * tq);
    const uint32_t b1 = pair(W + (n0 + g) * kK + k0 + 2 * tq + 8);
    qarl::kernels::gpu::ptx::mma_bf16(acc, a, b0, b1);
  }
  C[(m0 + g) * N + n0 + 2 * tq] = acc[0];
  C[(m0 + g) * N + n0 + 2 * tq + 1] = acc[1];
  C[(m0 + g + 8) * N + n0 + 2 * tq] = acc[2];
  C[(m0 + g + 8) * N + n0 + 2 * tq + 1] = acc[3];
}

// Writes rows x 64 bf16 (row-major, leading dimension ld) into the 128-byte swizzle layout.
__device__ void load_sw128(uint16_t* smem, const uint16_t* g, int rows, int ld) {
  for (int c = threadIdx.x; c < rows * 8; c += blockDim.x) {
    const int r = c / 8, chunk = c % 8;
    const uint4 v = *reinterpret_cast<const uint4*>(g + r * ld + chunk * 8);
    *reinterpret_cast<uint4*>(smem + r * 64 + ((chunk ^ (r % 8)) * 8)) = v;
  }
}

// One warpgroup, the whole 64 x N output, the same ascending k16 chain through wgmma.
template <int N>
__global__ void wgmma_chain_kernel(const uint16_t* A, const uint16_t* W, float* C) {
  extern __shared__ __align__(1024) uint16_t smem[];
  uint16_t* sa = smem;             // 64 x 64
  uint16_t* sb = smem + kM * kBK;  // N x 64
  float d[N / 2];
  for (int i = 0; i < N / 2; ++i) d[i] = 0.0f;
  for (int k0 = 0; k0 < kK; k0 += kBK) {
    load_sw128(sa, A + k0, kM, kK);
    load_sw128(sb, W + k0, N, kK);
    wg::fence_proxy_async();
    __syncthreads();
    wg::fence_operand(d);
    wg::fence();
#pragma unroll
    for (int j = 0; j < kBK / 16; ++j) {
      const uint64_t da = wg::desc_sw128(sa + 16 * j), db = wg::desc_sw128(sb + 16 * j);
      if constexpr (N == 64) wg::wgmma_m64n64k16(d, da, db);
      else if constexpr (N == 128) wg::wgmma_m64n128k16(d, da, db);
      else wg::wgmma_m64n256k16(d, da, db);
    }
    wg::commit();
    wg::wait<0>();
    wg::fence_operand(d);
    __syncthreads();
  }
  const int w = threadIdx.x / 32, l = threadIdx.x % 32;
  for (int i = 0; i < N / 2; ++i) {
    const int q = i / 4, e = i % 4;
    const int row = 16 * w + l / 4 + 8 * (e / 2), col = 8 * q + 2 * (l % 4) + (e % 2);
    C[row * N + col] = d[i];
  }
}


// Input families: each stresses a different part of a dot-product unit.
const char* const kFamilies[] = {
    "normal(0,1)",
    "exponents 2^-20..2^20",
    "normal + 1/8 at 2^12 (cancellation)",
    "huge early k, tiny later k",
    "random finite bits, |e| <= 60",
    "subnormal-range values",
    "+-1 pairs that cancel exactly"};
constexpr int kNumFamilies = 7;

float draw(int family, std::mt19937_64& rng, int row, int k) {
  std::normal_distribution<float> nd;
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  const float s = (rng() & 1) ? -1.f : 1.f;
  switch (family) {
    case 0: return nd(rng);
    case 1: return s * std::ldexp(1.f + ud(rng), int(rng() % 41) - 20);
    case 2: return (rng() % 8 == 0) ? s * std::ldexp(1.f + ud(rng), 12) : nd(rng);
    case 3: return k < 64 ? s * std::ldexp(1.f + ud(rng), 30) : s * std::ldexp(1.f + ud(rng), -10);
    case 4: return s * std::ldexp(1.f + ud(rng), int(rng() % 121) - 60);
    case 5: return s * std::ldexp(1.f + ud(rng), -120 - int(rng() % 12));
    default: return (k % 2 == 0 ? 1.f : -1.f) * (row % 3 == 0 ? 1.f : 0.5f) * (1.f + float(k % 7) / 8);
  }
}

#define CK(x) probe::check((x), #x)

template <int N>
int run(int trials) {
  const size_t smem = size_t(kM + N) * kBK * 2;
  CK(cudaFuncSetAttribute(wgmma_chain_kernel<N>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  uint16_t *dA, *dW;
  float *dC1, *dC2;
  CK(cudaMalloc(&dA, kM * kK * 2));
  CK(cudaMalloc(&dW, size_t(N) * kK * 2));
  CK(cudaMalloc(&dC1, kM * N * 4));
  CK(cudaMalloc(&dC2, kM * N * 4));
  int bad_families = 0;
  for (int f = 0; f < kNumFamilies; ++f) {
    long long diff = 0, total = 0, nan_mismatch = 0;
    double err_mma = 0, err_wg = 0;
    for (int t = 0; t < trials; ++t) {
      std::mt19937_64 rng(1000003ull * f + 7919ull * t + N);
      std::vector<uint16_t> A(kM * kK), W(size_t(N) * kK);
      for (int i = 0; i < kM; ++i)
        for (int k = 0; k < kK; ++k) A[i * kK + k] = probe::to_bf16(draw(f, rng, i, k));
      for (int j = 0; j < N; ++j)
        for (int k = 0; k < kK; ++k) W[j * kK + k] = probe::to_bf16(draw(f == 6 ? 0 : f, rng, j, k));
      CK(cudaMemcpy(dA, A.data(), A.size() * 2, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(dW, W.data(), W.size() * 2, cudaMemcpyHostToDevice));
      CK(cudaMemset(dC1, 0xff, kM * N * 4));
      CK(cudaMemset(dC2, 0xff, kM * N * 4));
      mma_chain_kernel<<<dim3(N / 8, kM / 16), 32>>>(dA, dW, dC1, N);
      wgmma_chain_kernel<N><<<1, 128, smem>>>(dA, dW, dC2);
      CK(cudaGetLastError());
      CK(cudaDeviceSynchronize());
      std::vector<float> c1(kM * N), c2(kM * N);
      CK(cudaMemcpy(c1.data(), dC1, c1.size() * 4, cudaMemcpyDeviceToHost));
      CK(cudaMemcpy(c2.data(), dC2, c2.size() * 4, cudaMemcpyDeviceToHost));
      for (int i = 0; i < kM; ++i)
        for (int j = 0; j < N; ++j) {
          double ref = 0, mag = 0;
          for (int k = 0; k < kK; ++k) {
            const double p = probe::from_bf16(A[i * kK + k]) * probe::from_bf16(W[j * kK + k]);
            ref += p;
            mag += std::fabs(p);
          }
          const float a = c1[i * N + j], b = c2[i * N + j];
          uint32_t ua, ub;
          std::memcpy(&ua, &a, 4);
          std::memcpy(&ub, &b, 4);
          ++total;
          if (ua != ub) {
            ++diff;
            if (std::isnan(a) != std::isnan(b)) ++nan_mismatch;
          }
          if (mag > 0 && std::isfinite(mag)) {
            err_mma = std::max(err_mma, std::fabs(a - ref) / mag);
            err_wg = std::max(err_wg, std::fabs(b - ref) / mag);
          }
        }
    }
    std::printf("N=%3d  %-38s  differing bits %8lld / %8lld  (NaN-ness %lld)  max |err|/sum|p|: mma %.2e  wgmma %.2e\n",
                N, kFamilies[f], diff, total, nan_mismatch, err_mma, err_wg);
    if (diff) ++bad_families;
    if (f == 0 && err_wg > 1e-5) {
      std::printf("wgmma result is wrong on normal inputs (operand layout?): stopping\n");
      return 2;
    }
  }
  cudaFree(dA);
  cudaFree(dW);
  cudaFree(dC1);
  cudaFree(dC2);
  return bad_families ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int trials = argc > 1 ? std::atoi(argv[1]) : 8;
  int worst = 0;
  for (int r : {run<64>(trials), run<128>(trials), run<256>(trials)}) worst = std::max(worst, r);
  std::printf(worst == 0 ? "RESULT: wgmma == mma.sync bitwise on every input\n"
                         : worst == 1 ? "RESULT: wgmma and mma.sync differ\n" : "RESULT: error\n");
  return worst;
}
