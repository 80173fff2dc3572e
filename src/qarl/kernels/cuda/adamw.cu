// AdamW on the GPU (model_ops.h): train::AdamW::step's per-element arithmetic, operation by
// operation in double with IEEE-rounded intrinsics (no contraction), fp32 storage of the
// master weight and moments, so the results are bitwise the CPU's. Optionally writes the
// bf16 working copy (RNE) that the GEMMs read.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <vector>
#include <cuda_runtime.h>

#include "qarl/kernels/cuda/launch_config.cuh"
#include "qarl/kernels/cuda/model_ops.h"
#include "qarl/kernels/cuda/model_ops_device.cuh"

namespace qarl::kernels::gpu {
namespace {

constexpr int kThreads = 256;

// One element of train::AdamW::step, operation by operation.
__device__ __forceinline__ void adamw_element(float* __restrict__ master, float* __restrict__ m,
                                              float* __restrict__ v,
                                              const float* __restrict__ grad, int64_t i,
                                              const AdamWScalars& s, double one_m_decay,
                                              double one_m_b1, double one_m_b2,
                                              bf16* __restrict__ working) {
  // double pi = double(p[i]) * (1.0 - decay);
  double pi = __dmul_rn(double(master[i]), one_m_decay);
  const double gi = double(s.grad_scale == 1.0f ? grad[i] : __fmul_rn(grad[i], s.grad_scale));
  // mi = b1 * m + (1 - b1) * gi ;  vi = b2 * v + (1 - b2) * gi * gi
  const double mi = __dadd_rn(__dmul_rn(s.beta1, double(m[i])), __dmul_rn(one_m_b1, gi));
  const double vi =
      __dadd_rn(__dmul_rn(s.beta2, double(v[i])), __dmul_rn(__dmul_rn(one_m_b2, gi), gi));
  const float mf = __double2float_rn(mi), vf = __double2float_rn(vi);
  m[i] = mf;
  v[i] = vf;
  // pi -= step_size * double(m) / (sqrt(double(v)) / bc2_sqrt + eps)
  const double den = __dadd_rn(__ddiv_rn(__dsqrt_rn(double(vf)), s.bc2_sqrt), s.eps);
  pi = __dsub_rn(pi, __ddiv_rn(__dmul_rn(s.step_size, double(mf)), den));
  const float pf = __double2float_rn(pi);
  master[i] = pf;
  if (working) working[i] = dev::BF16::store(pf);
}

__global__ void adamw_kernel(float* __restrict__ master, float* __restrict__ m,
                             float* __restrict__ v, const float* __restrict__ grad, int64_t n,
                             AdamWScalars s, bf16* __restrict__ working) {
  const double one_m_decay = __dsub_rn(1.0, s.decay);
  const double one_m_b1 = __dsub_rn(1.0, s.beta1);
  const double one_m_b2 = __dsub_rn(1.0, s.beta2);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    adamw_element(master, m, v, grad, i, s, one_m_decay, one_m_b1, one_m_b2, working);
}

// Block b updates chunk b: elements [begin, end) of one tensor.
__global__ void __launch_bounds__(kThreads)
    adamw_multi_kernel(const AdamWTensor* __restrict__ tensors,
                       const AdamWChunk* __restrict__ chunks, AdamWScalars s) {
  const AdamWChunk c = chunks[blockIdx.x];
  const AdamWTensor t = tensors[c.tensor];
  const double one_m_decay = __dsub_rn(1.0, s.decay);
  const double one_m_b1 = __dsub_rn(1.0, s.beta1);
  const double one_m_b2 = __dsub_rn(1.0, s.beta2);
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += kThreads)
    adamw_element(t.master, t.m, t.v, t.grad, i, s, one_m_decay, one_m_b1, one_m_b2, t.working);
}

}  // namespace

void launch_adamw_step(float* master, float* m, float* v, const float* grad, int64_t n,
                       AdamWScalars s, bf16* working, void* stream) {
  if (n <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  adamw_kernel<<<grid_for(adamw_kernel, kThreads, n), kThreads, 0, st>>>(master, m, v, grad, n,
                                                                          s, working);
  check_last_launch("adamw step");
}

std::vector<AdamWChunk> adamw_chunks(const std::vector<AdamWTensor>& tensors) {
  std::vector<AdamWChunk> out;
  for (size_t t = 0; t < tensors.size(); ++t)
    for (int64_t b = 0; b < tensors[t].n; b += kAdamWChunk)
      out.push_back({int32_t(t), b, std::min(tensors[t].n, b + kAdamWChunk)});
  return out;
}

void launch_adamw_step_multi(const AdamWTensor* tensors, const AdamWChunk* chunks,
                             int64_t n_chunks, AdamWScalars s, void* stream) {
  if (n_chunks <= 0) return;
  if (n_chunks > int64_t(INT32_MAX))
    ops::throw_cuda_error("adamw step (multi-tensor)", "too many chunks for one launch");
  auto st = static_cast<cudaStream_t>(stream);
  adamw_multi_kernel<<<unsigned(n_chunks), kThreads, 0, st>>>(tensors, chunks, s);
  check_last_launch("adamw step (multi-tensor)");
}

}  // namespace qarl::kernels::gpu
