// Device helpers shared by the model-op kernels (embedding, rmsnorm, rope, swiglu, logprobs,
// adamw, elementwise .cu files): element-type dispatch, block reductions in one fixed pattern
// (so a row's statistic never depends on the launch it is in), a deterministic column sum
// (chunks of rows in a fixed partition, then the chunks in order), and stream-ordered scratch.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

#include "qarl/kernels/cuda/launch.h"
#include "qarl/kernels/cuda/quant_device.cuh"

namespace qarl::kernels::gpu::ops {

// f(dev::F32{}) / f(dev::BF16{}) / f(dev::F16{}) for the runtime element type.
template <class F>
void by_elem(Elem t, F&& f) {
  switch (t) {
    case Elem::F32: f(dev::F32{}); break;
    case Elem::BF16: f(dev::BF16{}); break;
    case Elem::F16: f(dev::F16{}); break;
  }
}

// Throws qarl::Error (runtime) "CUDA <what> failed: <message>" (model_ops_error.cpp: fmt's
// compile-time format checks do not build under nvcc).
[[noreturn]] void throw_cuda_error(const char* what, const char* message);
inline void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear it: the error is reported here
    throw_cuda_error(what, cudaGetErrorString(e));
  }
}

// The device's default memory pool keeps up to 1 GiB when the device synchronizes (its
// default release threshold is 0: every synchronization hands the scratch back, and the next
// cudaMallocAsync maps memory again, ~0.1 ms). Once per process and device.
void keep_scratch_pool();

// Stream-ordered scratch memory, freed (stream-ordered) when the object dies.
class Scratch {
 public:
  Scratch(size_t bytes, cudaStream_t st) : st_(st) {
    keep_scratch_pool();
    check_cuda(cudaMallocAsync(&p_, bytes ? bytes : 1, st), "cudaMallocAsync (scratch)");
  }
  ~Scratch() { cudaFreeAsync(p_, st_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(p_); }

 private:
  void* p_ = nullptr;
  cudaStream_t st_;
};

struct SumOp {
  template <class T>
  __device__ static T apply(T a, T b) { return a + b; }
};
struct MaxOp {  // fmaxf: a NaN operand is ignored, as the CPU's `z > m ? z : m`
  __device__ static float apply(float a, float b) { return fmaxf(a, b); }
};

// Butterfly over the 32 lanes (xor 16, 8, 4, 2, 1): every lane ends with the same value,
// combined in one fixed pattern.
template <class Op, class T>
__device__ __forceinline__ T warp_reduce(T v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = Op::apply(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// Reduction over a whole block of kThreads (a multiple of 32, at most 1024): warps first,
// then warp 0 combines the warp results (missing lanes contribute `identity`). Every thread
// gets the result. `shm` holds 32 T. Must be reached by every thread of the block.
template <class Op, int kThreads, class T>
__device__ __forceinline__ T block_reduce(T v, T identity, T* shm) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024);
  v = warp_reduce<Op>(v);
  if constexpr (kThreads == 32) {
    return v;
  } else {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // shm may still be read by a previous call
    if (lane == 0) shm[warp] = v;
    __syncthreads();
    T w = lane < kThreads / 32 ? shm[lane] : identity;
    w = warp_reduce<Op>(w);
    return w;  // every warp computes the same combination of the same values
  }
}

// out[c] += float(sum over items j of term(j, c)) for c < cols, deterministic: items are cut
// into chunks of a size that depends only on `items`; each chunk sums its items in order
// (double), then one warp per column adds the chunk sums in a fixed pattern (lane l takes
// chunks l, l+32, ... in order, then the butterfly). Chunks stay short (32 items) so the
// partial sums run in parallel. For the Qwen3 q-norm weight (131k items, 128 columns) the
// finish was one thread per column walking all 4096 chunks (the H200 step's q/k norm
// backward section took 19.9 ms over 28 layers then, 9.2 ms after this change and others of
// that run); 1024 chunks of 128 instead of 4096 of 32 measured 9.5 vs 9.1 ms.
template <class Term>
__global__ void column_partial_kernel(Term term, int64_t items, int64_t cols, int64_t chunk,
                                      double* part) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const int64_t k = blockIdx.y;
  const int64_t j1 = min(items, (k + 1) * chunk);
  double s = 0.0;
  for (int64_t j = k * chunk; j < j1; ++j) s += term(j, c);
  part[c * gridDim.y + k] = s;  // column-major: the finish reads a column contiguously
}
// part is column-major ([cols][nchunks]): a warp reads its column's chunk sums coalesced.
template <int = 0>
__global__ void column_finish_kernel(const double* part, int64_t nchunks, int64_t cols,
                                     float* out) {
  const int64_t c = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (c >= cols) return;  // whole warps: c is the same for the 32 lanes
  double s = 0.0;
#pragma unroll 4
  for (int64_t k = lane; k < nchunks; k += 32) s += part[c * nchunks + k];
  s = warp_reduce<SumOp>(s);
  if (lane == 0) out[c] = __fadd_rn(out[c], __double2float_rn(s));
}

template <class Term>
void column_sum_add(Term term, int64_t items, int64_t cols, float* out, cudaStream_t st,
                    const char* what) {
  if (items <= 0 || cols <= 0) return;
  constexpr int64_t kMaxChunks = 65535;  // gridDim.y
  int64_t chunk = 32;
  if ((items + chunk - 1) / chunk > kMaxChunks) chunk = (items + kMaxChunks - 1) / kMaxChunks;
  const int64_t nchunks = (items + chunk - 1) / chunk;
  Scratch part(size_t(nchunks * cols) * sizeof(double), st);
  constexpr int kT = 128;
  dim3 grid(unsigned((cols + kT - 1) / kT), unsigned(nchunks));
  column_partial_kernel<Term><<<grid, kT, 0, st>>>(term, items, cols, chunk, part.as<double>());
  constexpr int kF = 256;  // 8 columns (warps) per block
  column_finish_kernel<><<<unsigned((cols * 32 + kF - 1) / kF), kF, 0, st>>>(part.as<double>(),
                                                                          nchunks, cols, out);
  check_last_launch(what);
}

}  // namespace qarl::kernels::gpu::ops
