// Log-softmax statistics, token logprobs and cross-entropy on the GPU (model_ops.h), one
// block of kThreads per row: z = logits / T (skipped for T == 1, as the CPU). The forward reads
// the row once (an online log-sum-exp: a Qwen3 row is 600 KB, so a second pass came from
// memory again; two passes were 2.4 ms of the 8x1024-token H200 training step): each thread
// keeps the max m_t of its elements and s_t = sum exp(z - m_t), taking its elements four at a
// time: the quad's max first (one rescale test per quad, rescaled in double when m_t grows),
// its four expf summed in fp32 in index order, then that partial added to s_t in double (one
// fp32 -> fp64 conversion per quad: those run at a quarter of the fp64 rate and were one per
// element). Then the block takes m = max m_t and s = sum s_t exp(m_t - m) in a fixed tree.
// lse = m + float(log(s)), the CPU's expression;
// it agrees with the CPU's two-pass sum to ~1e-7 relative, not bitwise. The pattern depends
// only on the vocabulary size, never on the rows in the launch or a row's alignment, so the
// rollout and the trainer get the same bits for the same logits.
#include <cstdint>
#include <cuda_runtime.h>

#include "qarl/kernels/cuda/model_ops.h"
#include "qarl/kernels/cuda/model_ops_device.cuh"

namespace qarl::kernels::gpu {
namespace {

constexpr int kThreads = 512;

__device__ __forceinline__ float scaled(float x, float t) { return t == 1.0f ? x : x / t; }

// A quad of elements (a, b, c, d: index order) into a thread's running (m, s). -inf elements
// add nothing (expf(-inf - m) = 0 for a finite m); NaN never raises m (fmaxf skips it) and
// lands in s through its expf, as in the CPU's sum. Padding past the row's end is -inf.
__device__ __forceinline__ void lse_add4(float a, float b, float c, float d, float& m, double& s) {
  const float mq = fmaxf(fmaxf(a, b), fmaxf(c, d));
  if (mq > m) {
    s *= exp(double(m) - double(mq));  // m = -inf: s is 0 (or NaN, which stays NaN)
    m = mq;
  }
  if (m == -INFINITY) {  // every element so far -inf or NaN
    if (a != a || b != b || c != c || d != d) s = __longlong_as_double(0x7ff8000000000000LL);
    return;
  }
  const float e = ((expf(a - m) + expf(b - m)) + expf(c - m)) + expf(d - m);
  s += double(e);
}

__global__ void __launch_bounds__(kThreads)
    logprobs_forward_kernel(const float* __restrict__ logits, int64_t ld, int64_t vocab,
                            float temperature, const int32_t* __restrict__ targets,
                            float* __restrict__ lse, float* __restrict__ logprob) {
  __shared__ float fshm[32];
  __shared__ double dshm[32];
  const int64_t r = blockIdx.x;
  const float* row = logits + r * ld;
  float m = -INFINITY;
  double s = 0.0;
  // Thread t takes the quads j = t, t + kThreads, ... (elements 4j .. 4j+3) in that order,
  // whatever the row's alignment: 16-byte loads where the row allows them, the same elements
  // one by one otherwise (a row's bits must not depend on where it sits in a batch).
  const int64_t nq = (vocab + 3) / 4, full = vocab / 4;
  const bool aligned = (reinterpret_cast<uintptr_t>(row) & 15) == 0;
  for (int64_t j = threadIdx.x; j < nq; j += kThreads) {
    float4 v;
    if (aligned && j < full) {
      v = reinterpret_cast<const float4*>(row)[j];
    } else {
      const int64_t i = 4 * j;
      v.x = row[i];
      v.y = i + 1 < vocab ? row[i + 1] : -INFINITY;
      v.z = i + 2 < vocab ? row[i + 2] : -INFINITY;
      v.w = i + 3 < vocab ? row[i + 3] : -INFINITY;
    }
    lse_add4(scaled(v.x, temperature), scaled(v.y, temperature), scaled(v.z, temperature),
             scaled(v.w, temperature), m, s);
  }
  const float mx = ops::block_reduce<ops::MaxOp, kThreads>(m, -INFINITY, fshm);
  // A thread's sum rescaled to the row's max (0 for a thread that saw only -inf).
  const double st = m == -INFINITY ? 0.0 : s * exp(double(m) - double(mx));
  const double sum = ops::block_reduce<ops::SumOp, kThreads>(st, 0.0, dshm);
  if (threadIdx.x == 0) {
    const float l = mx + __double2float_rn(log(sum));
    if (lse) lse[r] = l;
    if (targets && logprob) logprob[r] = scaled(row[targets[r]], temperature) - l;
  }
}

// dlogits = -(g/T) p, plus g/T at the target: kernels::token_logprob_backward's expressions.
// Each element is read and written by one thread, so dlogits may alias logits (F32, ld_out
// == ld).
template <class D>
__global__ void __launch_bounds__(kThreads)
    logprobs_backward_kernel(const float* logits, int64_t ld, int64_t vocab, float temperature,
                             const int32_t* __restrict__ targets, const float* __restrict__ lse,
                             const float* __restrict__ g, typename D::raw* dlogits,
                             int64_t ld_out) {
  const int64_t r = blockIdx.x;
  const float* row = logits + r * ld;
  typename D::raw* out = dlogits + r * ld_out;
  const float gt = g[r] / temperature;
  const float l = lse[r];
  const int64_t tgt = targets ? int64_t(targets[r]) : -1;
  auto grad = [&](float z, int64_t i) {
    float d = -gt * expf(scaled(z, temperature) - l);
    if (i == tgt) d += gt;
    return D::store(d);
  };
  using raw = typename D::raw;
  // Whole quads with one 16-byte load and one 8- or 16-byte store where both rows allow it
  // (element-wise, so the bits are those of the one-by-one loop below, which does the rest).
  int64_t start = 0;
  if ((reinterpret_cast<uintptr_t>(row) & 15) == 0 &&
      (reinterpret_cast<uintptr_t>(out) & (4 * sizeof(raw) - 1)) == 0) {
    const int64_t quads = vocab / 4;
    for (int64_t j = threadIdx.x; j < quads; j += kThreads) {
      const float4 v = reinterpret_cast<const float4*>(row)[j];
      alignas(4 * sizeof(raw)) raw o[4] = {grad(v.x, 4 * j), grad(v.y, 4 * j + 1), grad(v.z, 4 * j + 2),
                                           grad(v.w, 4 * j + 3)};
      if constexpr (sizeof(raw) == 2)
        reinterpret_cast<uint2*>(out)[j] = *reinterpret_cast<const uint2*>(o);
      else
        reinterpret_cast<uint4*>(out)[j] = *reinterpret_cast<const uint4*>(o);
    }
    start = quads * 4;
  }
  for (int64_t i = start + threadIdx.x; i < vocab; i += kThreads) out[i] = grad(row[i], i);
}

// loss[0] = float(sum_r -double(logprob[r]) / rows), rows in a fixed tree.
__global__ void __launch_bounds__(kThreads)
    mean_nll_kernel(const float* __restrict__ logprob, int64_t rows, float* __restrict__ loss) {
  __shared__ double dshm[32];
  double s = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += kThreads) s -= double(logprob[r]);
  s = ops::block_reduce<ops::SumOp, kThreads>(s, 0.0, dshm);
  if (threadIdx.x == 0) loss[0] = __double2float_rn(s / double(rows));
}

}  // namespace

void launch_logprobs_forward(const float* logits, int64_t ld, int64_t rows, int64_t vocab,
                             float temperature, const int32_t* targets, float* lse,
                             float* logprob, void* stream) {
  if (rows <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  logprobs_forward_kernel<<<unsigned(rows), kThreads, 0, st>>>(logits, ld, vocab, temperature,
                                                               targets, lse, logprob);
  check_last_launch("logprobs forward");
}

void launch_logprobs_backward(const float* logits, int64_t ld, int64_t rows, int64_t vocab,
                              float temperature, const int32_t* targets, const float* lse,
                              const float* g, Elem out_t, void* dlogits, int64_t ld_out,
                              void* stream) {
  if (rows <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  ops::by_elem(out_t, [&](auto d) {
    using D = decltype(d);
    logprobs_backward_kernel<D><<<unsigned(rows), kThreads, 0, st>>>(
        logits, ld, vocab, temperature, targets, lse, g, static_cast<typename D::raw*>(dlogits),
        ld_out);
  });
  check_last_launch("logprobs backward");
}

void launch_cross_entropy_forward(const float* logits, int64_t ld, int64_t rows, int64_t vocab,
                                  const int32_t* targets, float* lse_scratch,
                                  float* logprob_scratch, float* loss, void* stream) {
  if (rows <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  launch_logprobs_forward(logits, ld, rows, vocab, 1.0f, targets, lse_scratch, logprob_scratch,
                          stream);
  mean_nll_kernel<<<1, kThreads, 0, st>>>(logprob_scratch, rows, loss);
  check_last_launch("cross entropy forward");
}

}  // namespace qarl::kernels::gpu
