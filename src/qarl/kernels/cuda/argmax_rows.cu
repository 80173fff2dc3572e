// launch_argmax_rows (argmax_gpu.h): two passes. Pass 1: CTA (chunk, row) reduces kChunk
// logits of a row to a (value, index) candidate; pass 2: one warp per row reduces the
// candidates. The reduction rule picks, of two candidates, the one with a value (not NaN),
// then the larger value, then (equal values, -0 == +0 included) the smaller index: it is
// commutative and associative, and its result over a whole row is the first index of the
// largest non-NaN value, what the host's sequential scan returns, whatever the tree shape.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>

#include "qarl/kernels/cuda/argmax_gpu.h"

namespace qarl::kernels::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = 2048;  // logits per pass-1 CTA: 8 loads per thread, all in flight

struct Cand {
  float v;
  int32_t i;  // -1: no candidate (every value NaN so far)
};

__device__ __forceinline__ Cand better(Cand a, Cand b) {
  if (b.i < 0) return a;
  if (a.i < 0) return b;
  if (b.v > a.v) return b;
  if (a.v > b.v) return a;
  return b.i < a.i ? b : a;
}

__device__ __forceinline__ Cand warp_best(Cand c) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    Cand d;
    d.v = __shfl_xor_sync(0xffffffffu, c.v, o);
    d.i = __shfl_xor_sync(0xffffffffu, c.i, o);
    c = better(c, d);
  }
  return c;
}

__global__ void __launch_bounds__(kThreads) argmax_pass1(const float* logits, int64_t ld, int64_t vocab,
                                                         int chunks, Cand* part) {
  const int64_t row = blockIdx.y, k0 = int64_t(blockIdx.x) * kChunk;
  const float* x = logits + row * ld;
  const int64_t k1 = k0 + kChunk < vocab ? k0 + kChunk : vocab;
  Cand c{0.0f, -1};
  float v[kChunk / kThreads];
#pragma unroll
  for (int u = 0; u < kChunk / kThreads; ++u) {
    const int64_t k = k0 + threadIdx.x + int64_t(u) * kThreads;
    v[u] = k < k1 ? x[k] : __int_as_float(0x7fc00000);  // NaN: no candidate
  }
#pragma unroll
  for (int u = 0; u < kChunk / kThreads; ++u)
    if (v[u] == v[u]) c = better(c, Cand{v[u], int32_t(k0 + threadIdx.x + int64_t(u) * kThreads)});
  c = warp_best(c);
  __shared__ Cand s[kThreads / 32];
  if ((threadIdx.x & 31) == 0) s[threadIdx.x >> 5] = c;
  __syncthreads();
  if (threadIdx.x < 32) {
    c = threadIdx.x < kThreads / 32 ? s[threadIdx.x] : Cand{0.0f, -1};
    c = warp_best(c);
    if (threadIdx.x == 0) part[row * chunks + blockIdx.x] = c;
  }
}

__global__ void argmax_pass2(const float* logits, int64_t ld, int64_t rows, int chunks, const Cand* part,
                             int32_t* index, float* value) {
  const int64_t row = int64_t(blockIdx.x) * 4 + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int lane = int(threadIdx.x) & 31;
  Cand c{0.0f, -1};
  for (int k = lane; k < chunks; k += 32) c = better(c, part[row * chunks + k]);
  c = warp_best(c);
  if (lane == 0) {
    const int32_t i = c.i < 0 ? 0 : c.i;
    index[row] = i;
    value[row] = logits[row * ld + i];
  }
}

int chunks_of(int64_t vocab) { return int((vocab + kChunk - 1) / kChunk); }

}  // namespace

int64_t argmax_scratch_bytes(int64_t rows, int64_t vocab) {
  return rows * chunks_of(vocab) * int64_t(sizeof(Cand));
}

void launch_argmax_rows(const float* logits, int64_t ld, int64_t rows, int64_t vocab, void* scratch,
                        int32_t* index, float* value, void* stream) {
  if (rows <= 0) return;
  if (vocab <= 0 || rows > 65535 || vocab > INT32_MAX) throw std::invalid_argument("argmax_rows: bad sizes");
  const int chunks = chunks_of(vocab);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  Cand* part = static_cast<Cand*>(scratch);
  argmax_pass1<<<dim3(unsigned(chunks), unsigned(rows)), kThreads, 0, s>>>(logits, ld, vocab, chunks, part);
  argmax_pass2<<<unsigned((rows + 3) / 4), 128, 0, s>>>(logits, ld, rows, chunks, part, index, value);
}

}  // namespace qarl::kernels::gpu
