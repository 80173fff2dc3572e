// The operand forms a wgmma attention needs, checked on the device before anyone builds on
// them (bench/gpu/wgmma_probe.cu checked the GEMM form: both operands K-major in shared
// memory). FlashAttention's P V and dS^T Q products take A from registers (the previous
// product's accumulators, rounded to bf16: mma.sync's A-fragment layout per warp) and B
// N-major (V and Q tiles stored keys x head_dim, head_dim contiguous: imm-trans-b = 1), in
// the 128-byte swizzle layout: 64-element column blocks of N, each rows (k) x 128 bytes,
// chunk c of row k at c ^ (k % 8). Which descriptor strides say that is not spelled out
// plainly in the PTX manual, so this tries the two readings and reports which one computes
// A B (fp64 reference) and whether it equals the mma.sync chain bitwise.
//
// Built by CMake in CUDA builds (build/bench/wgmma_forms_probe), or by hand:
//   nvcc -std=c++20 -O2 -gencode arch=compute_90a,code=sm_90a -I src -I . bench/gpu/wgmma_forms_probe.cu -o wgmma_forms_probe
// Run there:   ./wgmma_forms_probe   (exit 0: a reading works and is bitwise mma.sync's)
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "bench/gpu/probe_util.h"
#include "qarl/kernels/cuda/mma_ptx.cuh"
#include "qarl/kernels/cuda/attention_wgmma.cuh"
#include "qarl/kernels/cuda/wgmma_ptx.cuh"

namespace {
namespace wg = qarl::kernels::gpu::wgmma;
constexpr int kM = 64, kK = 64, kN = 128;  // A 64 x 64 (registers), B 64 x 128 (N-major)


__device__ uint32_t dpair(const uint16_t* p) { return uint32_t(p[0]) | (uint32_t(p[1]) << 16); }

// Reference: the mma.sync chain, A row-major M x K, B row-major K x N (n contiguous).
__global__ void mma_ref(const uint16_t* A, const uint16_t* B, float* C) {
  const int lane = threadIdx.x, g = lane / 4, tq = lane % 4;
  const int m0 = blockIdx.y * 16, n0 = blockIdx.x * 8;
  float acc[4] = {0, 0, 0, 0};
  for (int k0 = 0; k0 < kK; k0 += 16) {
    uint32_t a[4];
    a[0] = dpair(A + (m0 + g) * kK + k0 + 2 * tq);
    a[1] = dpair(A + (m0 + g + 8) * kK + k0 + 2 * tq);
    a[2] = dpair(A + (m0 + g) * kK + k0 + 2 * tq + 8);
    a[3] = dpair(A + (m0 + g + 8) * kK + k0 + 2 * tq + 8);
    auto bv = [&](int k) { return B[k * kN + n0 + g]; };
    const uint32_t b0 = uint32_t(bv(k0 + 2 * tq)) | (uint32_t(bv(k0 + 2 * tq + 1)) << 16);
    const uint32_t b1 = uint32_t(bv(k0 + 2 * tq + 8)) | (uint32_t(bv(k0 + 2 * tq + 9)) << 16);
    qarl::kernels::gpu::ptx::mma_bf16(acc, a, b0, b1);
  }
  const int r = m0 + g, c = n0 + 2 * tq;
  C[r * kN + c] = acc[0];
  C[r * kN + c + 1] = acc[1];
  C[(r + 8) * kN + c] = acc[2];
  C[(r + 8) * kN + c + 1] = acc[3];
}

__global__ void wgmma_rs_nmajor(const uint16_t* A, const uint16_t* B, float* C, uint32_t lbo, uint32_t sbo) {
  __shared__ __align__(1024) uint16_t sb[kK * kN];  // two column blocks of 64 x 64
  for (int e = threadIdx.x; e < kK * kN / 8; e += blockDim.x) {  // 16-byte chunks
    const int k = e / (kN / 8), n = (e % (kN / 8)) * 8, blk = n / 64, chunk = (n % 64) / 8;
    *reinterpret_cast<uint4*>(sb + blk * kK * 64 + k * 64 + ((chunk ^ (k % 8)) * 8)) =
        *reinterpret_cast<const uint4*>(B + k * kN + n);
  }
  wg::fence_proxy_async();
  __syncthreads();
  const int w = threadIdx.x / 32, l = threadIdx.x % 32, g = l / 4, tq = l % 4;
  float d[64];
  for (int i = 0; i < 64; ++i) d[i] = 0.0f;
  wg::fence_operand(d);
  wg::fence();
  for (int j = 0; j < kK / 16; ++j) {
    const int r = 16 * w + g, k0 = 16 * j;
    const uint32_t a[4] = {dpair(A + r * kK + k0 + 2 * tq), dpair(A + (r + 8) * kK + k0 + 2 * tq),
                           dpair(A + r * kK + k0 + 2 * tq + 8), dpair(A + (r + 8) * kK + k0 + 2 * tq + 8)};
    // k16 step j: rows 16j .. 16j+15 of each column block (2 x 1024-byte atoms)
    const uint64_t addr = static_cast<uint64_t>(__cvta_generic_to_shared(sb + 16 * j * 64));
    uint64_t desc = (addr & 0x3FFFF) >> 4;
    desc |= uint64_t((lbo & 0x3FFFF) >> 4) << 16;
    desc |= uint64_t((sbo & 0x3FFFF) >> 4) << 32;
    desc |= uint64_t(1) << 62;
    qarl::kernels::gpu::attn::wg::wgmma_rs_n128(d, a, desc);
  }
  wg::commit();
  wg::wait<0>();
  wg::fence_operand(d);
  for (int i = 0; i < 64; ++i) {
    const int q = i / 4, e = i % 4;
    C[(16 * w + g + 8 * (e / 2)) * kN + 8 * q + 2 * tq + (e % 2)] = d[i];
  }
}

}  // namespace

int main() {
  uint16_t *dA, *dB;
  float *dR, *dW;
  cudaMalloc(&dA, kM * kK * 2);
  cudaMalloc(&dB, kK * kN * 2);
  cudaMalloc(&dR, kM * kN * 4);
  cudaMalloc(&dW, kM * kN * 4);
  struct Reading { const char* name; uint32_t lbo, sbo; };
  const Reading readings[] = {{"LBO = column-block stride (8192), SBO = 8-row group (1024)", 8192, 1024},
                              {"LBO = 8-row group (1024), SBO = column-block stride (8192)", 1024, 8192}};
  int good = -1;
  for (int ri = 0; ri < 2; ++ri) {
    long long diff = 0, wrong = 0, total = 0;
    for (int trial = 0; trial < 16; ++trial) {
      std::mt19937_64 rng(977 * trial + 13);
      std::normal_distribution<float> nd;
      std::uniform_real_distribution<float> ud(0.f, 1.f);
      std::vector<uint16_t> A(kM * kK), B(kK * kN);
      for (auto& x : A) x = probe::to_bf16(trial % 2 ? nd(rng) : std::ldexp(1.f + ud(rng), int(rng() % 41) - 20) * ((rng() & 1) ? -1.f : 1.f));
      for (auto& x : B) x = probe::to_bf16(nd(rng));
      cudaMemcpy(dA, A.data(), A.size() * 2, cudaMemcpyHostToDevice);
      cudaMemcpy(dB, B.data(), B.size() * 2, cudaMemcpyHostToDevice);
      cudaMemset(dR, 0xff, kM * kN * 4);
      cudaMemset(dW, 0xff, kM * kN * 4);
      mma_ref<<<dim3(kN / 8, kM / 16), 32>>>(dA, dB, dR);
      wgmma_rs_nmajor<<<1, 128>>>(dA, dB, dW, readings[ri].lbo, readings[ri].sbo);
      const cudaError_t e = cudaDeviceSynchronize();
      if (e != cudaSuccess) {
        std::printf("%s: %s\n", readings[ri].name, cudaGetErrorString(e));
        return 2;
      }
      std::vector<float> r(kM * kN), w(kM * kN);
      cudaMemcpy(r.data(), dR, r.size() * 4, cudaMemcpyDeviceToHost);
      cudaMemcpy(w.data(), dW, w.size() * 4, cudaMemcpyDeviceToHost);
      for (int i = 0; i < kM; ++i)
        for (int j = 0; j < kN; ++j) {
          double ref = 0, mag = 0;
          for (int k = 0; k < kK; ++k) {
            const double p = probe::from_bf16(A[i * kK + k]) * probe::from_bf16(B[k * kN + j]);
            ref += p;
            mag += std::fabs(p);
          }
          ++total;
          if (!(std::fabs(w[i * kN + j] - ref) <= 1e-5 * mag + 1e-30)) ++wrong;
          if (std::memcmp(&w[i * kN + j], &r[i * kN + j], 4) != 0) ++diff;
        }
    }
    std::printf("%-62s  wrong vs fp64 %6lld / %lld   differing bits vs mma.sync %6lld\n", readings[ri].name, wrong,
                total, diff);
    if (wrong == 0 && diff == 0 && good < 0) good = ri;
  }
  std::printf(good >= 0 ? "RESULT: register A + N-major B works (%s) and equals mma.sync bitwise\n"
                        : "RESULT: no reading worked%s\n",
              good >= 0 ? readings[good].name : "");
  return good >= 0 ? 0 : 1;
}
