// A measurement for the benchmark (qarl bench, model_decode_gemm): how long one link of the
// exact GEMM's per-element chain takes, i.e. one mma.sync.m16n8k16 (bf16 -> f32) that depends
// on the previous one's accumulator, with `chains` independent accumulators interleaved in one
// warp (1: pure latency; more: how much of it the issue can overlap). The exact contract makes
// a batch-1 product of depth K at least ceil(K/16) such links long, whatever the tiling.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "qarl/kernels/cuda/gemm_exact_ptx.cuh"
#include "qarl/kernels/cuda/gemm_internal.h"

namespace qarl::kernels::gpu::detail {
namespace {

template <int kChains>
__global__ void mma_chain_kernel(int links, float* out, long long* cycles) {
  uint32_t a[4], b0, b1;
  const uint32_t t = threadIdx.x;
  for (int i = 0; i < 4; ++i) a[i] = 0x3c003c00u ^ (t * 0x00010001u * uint32_t(i + 1));
  b0 = 0x3c003c00u ^ t;
  b1 = 0x3c003c00u ^ (t << 3);
  float acc[kChains][4];
  for (int c = 0; c < kChains; ++c)
    for (int e = 0; e < 4; ++e) acc[c][e] = 0.0f;
  const long long t0 = clock64();
  for (int l = 0; l < links; ++l)
#pragma unroll
    for (int c = 0; c < kChains; ++c) mma_bf16(acc[c], a, b0, b1);
  const long long t1 = clock64();
  float s = 0;
  for (int c = 0; c < kChains; ++c)
    for (int e = 0; e < 4; ++e) s += acc[c][e];
  out[t] = s;
  if (t == 0) *cycles = t1 - t0;
}

}  // namespace

std::string mma_chain_probe(int links, int chains, double* ns_per_link, double* cycles_per_link) {
  float* out = nullptr;
  long long* cyc = nullptr;
  cudaEvent_t e0, e1;
  if (cudaMalloc(&out, 32 * sizeof(float)) != cudaSuccess || cudaMalloc(&cyc, sizeof(long long)) != cudaSuccess)
    return "cudaMalloc failed";
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  auto launch = [&] {
    if (chains == 1) mma_chain_kernel<1><<<1, 32>>>(links, out, cyc);
    else mma_chain_kernel<4><<<1, 32>>>(links, out, cyc);
  };
  launch();  // warm-up
  cudaEventRecord(e0);
  launch();
  cudaEventRecord(e1);
  cudaEventSynchronize(e1);
  float ms = 0;
  cudaEventElapsedTime(&ms, e0, e1);
  long long c = 0;
  cudaMemcpy(&c, cyc, sizeof(c), cudaMemcpyDeviceToHost);
  const cudaError_t err = cudaGetLastError();
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(out);
  cudaFree(cyc);
  if (err != cudaSuccess) return cudaGetErrorString(err);
  *ns_per_link = double(ms) * 1e6 / links;
  *cycles_per_link = double(c) / links;
  return "";
}

}  // namespace qarl::kernels::gpu::detail
