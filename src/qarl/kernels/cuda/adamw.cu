// AdamW on the GPU (model_ops.h): train::AdamW::step's per-element arithmetic, operation by
// operation in double with IEEE-rounded intrinsics (no contraction), fp32 storage of the
// master weight and moments, so the results are bitwise the CPU's. Optionally writes the
// bf16 working copy (RNE) that the GEMMs read.
#include <cstdint>
#include <cuda_runtime.h>

#include "qarl/kernels/cuda/launch_config.cuh"
#include "qarl/kernels/cuda/model_ops.h"
#include "qarl/kernels/cuda/model_ops_device.cuh"

namespace qarl::kernels::gpu {
namespace {

constexpr int kThreads = 256;

__global__ void adamw_kernel(float* __restrict__ master, float* __restrict__ m,
                             float* __restrict__ v, const float* __restrict__ grad, int64_t n,
                             AdamWScalars s, bf16* __restrict__ working) {
  const double one_m_decay = __dsub_rn(1.0, s.decay);
  const double one_m_b1 = __dsub_rn(1.0, s.beta1);
  const double one_m_b2 = __dsub_rn(1.0, s.beta2);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
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

}  // namespace qarl::kernels::gpu
