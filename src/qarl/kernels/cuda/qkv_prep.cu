// The attention input preparation of the GPU model's forward in one pass (model_ops.h,
// launch_qkv_prepare): per-head RMSNorm of q and k (Qwen3), RoPE of q and k, the bf16
// rounding of q, k, v, and K and V copied out to their own row buffers. It replaces a chain of
// seven launches over the fp32 [R, q+2kv] projection (two norms in place, two ropes in place,
// a cast, two row copies; 0.32 ms per layer at 8 x 1024 on the H200) and leaves the fp32
// projection untouched, so the trainer keeps it as the norm's input without a copy.
//
// The arithmetic is that chain's, operation for operation, so the bits are the same:
//   norm: sum of squares in double, lane t taking elements t, t+32, ... in order, then the
//         warp butterfly (rmsnorm.cu with a warp per group); var = float(ss / dim);
//         rstd = 1 / sqrtf(var + eps); y = w * (x * rstd) in fp32;
//   rope: x1*c - x2*s, x2*c + x1*s in fp32 (no FMA: the build passes --fmad=false);
//   bf16: round to nearest even, once.
// launch_qkv_prepare_backward is the same for the backward: the K/V quantizers' clip masks,
// the transposed rotation, the per-head norms' input gradient and the bf16 rounding in one
// pass (the chain was 0.33 ms per layer), then the norm weights' gradients as the chain's
// column sums (rmsnorm.cu's DwTerm through ops::column_sum_add).
#include <cstdint>
#include <numeric>
#include <cuda_runtime.h>

#include "qarl/kernels/cuda/model_ops.h"
#include "qarl/kernels/cuda/model_ops_device.cuh"

namespace qarl::kernels::gpu {
namespace {

constexpr int kWarps = 8;  // heads per block, one warp each

// One warp per (row, head) of the n_heads + 2 * n_kv_heads heads of a row.
__global__ void __launch_bounds__(kWarps * 32)
    qkv_prepare_kernel(const float* __restrict__ qkv, int64_t rows, int n_heads, int n_kv,
                       int hd, const float* __restrict__ q_norm,
                       const float* __restrict__ k_norm, float eps,
                       const int32_t* __restrict__ positions, const float* __restrict__ cos_t,
                       const float* __restrict__ sin_t, bf16* __restrict__ out,
                       bf16* __restrict__ k_out, bf16* __restrict__ v_out,
                       float* __restrict__ q_rstd, float* __restrict__ k_rstd) {
  extern __shared__ float smem[];  // [kWarps][hd]
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int heads = n_heads + 2 * n_kv;
  const int64_t item = int64_t(blockIdx.x) * kWarps + warp;
  if (item >= rows * heads) return;  // whole warps
  const int64_t r = item / heads;
  const int h = int(item - r * heads);
  const int64_t W = int64_t(heads) * hd, kd = int64_t(n_kv) * hd;
  const float* x = qkv + r * W + int64_t(h) * hd;
  bf16* o = out + r * W + int64_t(h) * hd;
  const bool is_q = h < n_heads, is_k = !is_q && h < n_heads + n_kv;
  if (!is_q && !is_k) {  // v: rounded and copied
    bf16* vo = v_out + r * kd + int64_t(h - n_heads - n_kv) * hd;
#pragma unroll 4
    for (int i = lane; i < hd; i += 32) {
      const bf16 b = dev::BF16::store(x[i]);
      o[i] = b;
      vo[i] = b;
    }
    return;
  }
  float* s = smem + warp * hd;
  const float* w = is_q ? q_norm : k_norm;
  if (w) {
    double ss = 0.0;
#pragma unroll 4
    for (int i = lane; i < hd; i += 32) {
      const double v = x[i];
      ss += v * v;
    }
    ss = ops::warp_reduce<ops::SumOp>(ss);
    const float var = __double2float_rn(ss / double(hd));
    const float rs = 1.0f / sqrtf(var + eps);
    if (lane == 0) {
      if (is_q) q_rstd[r * n_heads + h] = rs;
      else k_rstd[r * n_kv + (h - n_heads)] = rs;
    }
#pragma unroll 4
    for (int i = lane; i < hd; i += 32) s[i] = w[i] * (x[i] * rs);
  } else {
#pragma unroll 4
    for (int i = lane; i < hd; i += 32) s[i] = x[i];
  }
  __syncwarp();
  const int half = hd / 2;
  const int64_t t0 = int64_t(positions[r]) * half;
  bf16* ko = is_k ? k_out + r * kd + int64_t(h - n_heads) * hd : nullptr;
#pragma unroll 2
  for (int i = lane; i < half; i += 32) {
    const float c = cos_t[t0 + i], sn = sin_t[t0 + i];
    const float x1 = s[i], x2 = s[i + half];
    const bf16 a = dev::BF16::store(x1 * c - x2 * sn), b = dev::BF16::store(x2 * c + x1 * sn);
    o[i] = a;
    o[i + half] = b;
    if (ko) {
      ko[i] = a;
      ko[i + half] = b;
    }
  }
}

// One warp per (row, head), as the forward. g: the head's gradient from attention; masked by
// the clip mask (k, v heads), rotated back (q, k), left in place in fp32 (the norm weights'
// gradient reads it), and the norm's input gradient rounded to bf16 into out.
__global__ void __launch_bounds__(kWarps * 32)
    qkv_prepare_backward_kernel(float* __restrict__ dqkv, const float* __restrict__ qkv_lin,
                                int64_t rows, int n_heads, int n_kv, int hd,
                                const float* __restrict__ q_norm, const float* __restrict__ k_norm,
                                const float* __restrict__ q_rstd, const float* __restrict__ k_rstd,
                                const bf16* __restrict__ k_pre, const bf16* __restrict__ v_pre,
                                float k_amax, float v_amax, const int32_t* __restrict__ positions,
                                const float* __restrict__ cos_t, const float* __restrict__ sin_t,
                                bf16* __restrict__ out) {
  extern __shared__ float smem[];  // [kWarps][hd]
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int heads = n_heads + 2 * n_kv;
  const int64_t item = int64_t(blockIdx.x) * kWarps + warp;
  if (item >= rows * heads) return;  // whole warps
  const int64_t r = item / heads;
  const int h = int(item - r * heads);
  const int64_t W = int64_t(heads) * hd, kd = int64_t(n_kv) * hd;
  float* g = dqkv + r * W + int64_t(h) * hd;
  bf16* o = out + r * W + int64_t(h) * hd;
  const bool is_q = h < n_heads, is_k = !is_q && h < n_heads + n_kv;
  // The clip mask: a NaN pre-quantizer value also zeroes (launch_clip_mask's test).
  const bf16* pre = is_k ? k_pre : is_q ? nullptr : v_pre;
  const float amax = is_k ? k_amax : v_amax;
  const int64_t pre_off = r * kd + int64_t(is_k ? h - n_heads : h - n_heads - n_kv) * hd;
  if (!is_q && !is_k) {  // v: masked, rounded
    for (int i = lane; i < hd; i += 32) {
      float v = g[i];
      if (pre && !(fabsf(dev::BF16::load(pre[pre_off + i])) <= amax)) g[i] = v = 0.0f;
      o[i] = dev::BF16::store(v);
    }
    return;
  }
  float* s = smem + warp * hd;
  for (int i = lane; i < hd; i += 32) {
    float v = g[i];
    if (pre && !(fabsf(dev::BF16::load(pre[pre_off + i])) <= amax)) v = 0.0f;
    s[i] = v;
  }
  __syncwarp();
  const int half = hd / 2;
  const int64_t t0 = int64_t(positions[r]) * half;
  for (int i = lane; i < half; i += 32) {  // rope_kernel<F32, true>'s expressions
    const float c = cos_t[t0 + i], sn = sin_t[t0 + i];
    const float x1 = s[i], x2 = s[i + half];
    g[i] = x1 * c + x2 * sn;
    g[i + half] = x2 * c - x1 * sn;
  }
  __syncwarp();  // g is re-read by other lanes below
  const float* w = is_q ? q_norm : k_norm;
  if (!w) {
    for (int i = lane; i < hd; i += 32) o[i] = dev::BF16::store(g[i]);
    return;
  }
  // rmsnorm_backward_kernel<F32, F32, 32> with accumulate = false.
  const float* x = qkv_lin + r * W + int64_t(h) * hd;
  double dot = 0.0;
  for (int i = lane; i < hd; i += 32) dot += double(g[i]) * double(w[i]) * double(x[i]);
  dot = ops::warp_reduce<ops::SumOp>(dot);
  const double rs = is_q ? q_rstd[r * n_heads + h] : k_rstd[r * n_kv + (h - n_heads)];
  const double c = dot * rs * rs * rs / double(hd);
  for (int i = lane; i < hd; i += 32)
    o[i] = dev::BF16::store(__double2float_rn(double(g[i]) * double(w[i]) * rs - c * double(x[i])));
}

// The backward with both q/k norms (Qwen3), the norm weights' gradients fused in: a block
// takes rb rows, a whole number of the column sum's 32-item chunks of both norms (item j =
// row * heads + head), keeps the rotated fp32 gradients of its q and k heads in shared memory
// instead of writing them back, and sums each chunk's dw terms from there (dy * x * rstd in
// double, items in order: column_partial_kernel's arithmetic, so the bits are the same). This
// drops the fp32 write of the rotated gradients and the column sums' second read of them and
// of the projection (~200 MB per layer at 8 x 1024 on Qwen3-0.6B). dqkv stays as it was.
// A lane's values of one head are held in registers: elements lane, lane+32, ... (kPer of
// them, kPer * 32 >= head_dim), all loads of an item issued before any arithmetic.
template <int kPer>
__global__ void __launch_bounds__(kWarps * 32)
    qkv_prepare_backward_norm_kernel(const float* __restrict__ dqkv,
                                     const float* __restrict__ qkv_lin, int64_t rows, int n_heads,
                                     int n_kv, int hd, int rb, const float* __restrict__ q_norm,
                                     const float* __restrict__ k_norm,
                                     const float* __restrict__ q_rstd,
                                     const float* __restrict__ k_rstd,
                                     const bf16* __restrict__ k_pre, const bf16* __restrict__ v_pre,
                                     float k_amax, float v_amax,
                                     const int32_t* __restrict__ positions,
                                     const float* __restrict__ cos_t,
                                     const float* __restrict__ sin_t, bf16* __restrict__ out,
                                     double* __restrict__ q_part, double* __restrict__ k_part) {
  extern __shared__ float smem[];
  const int qk = n_heads + n_kv, heads = qk + n_kv;
  float* gbuf = smem;                             // [rb][qk][hd]: rotated q, k gradients
  float* scratch = smem + int64_t(rb) * qk * hd;  // [kWarps][hd]
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int64_t W = int64_t(heads) * hd, kd = int64_t(n_kv) * hd;
  const int64_t r0 = int64_t(blockIdx.x) * rb;
  const int nr = int(min(int64_t(rb), rows - r0));
  const int half = hd / 2;
  for (int it = warp; it < nr * heads; it += kWarps) {
    const int lr = it / heads, h = it - lr * heads;
    const int64_t r = r0 + lr;
    const float* g = dqkv + r * W + int64_t(h) * hd;
    bf16* o = out + r * W + int64_t(h) * hd;
    const bool is_q = h < n_heads, is_k = !is_q && h < qk;
    const bf16* pre = is_k ? k_pre : is_q ? nullptr : v_pre;
    const float amax = is_k ? k_amax : v_amax;
    const bf16* pr = pre ? pre + r * kd + int64_t(is_k ? h - n_heads : h - qk) * hd : nullptr;
    const float* x = qkv_lin + r * W + int64_t(h) * hd;
    float gv[kPer], xv[kPer];
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int i = lane + 32 * k;
      const bool in = i < hd;
      gv[k] = in ? g[i] : 0.0f;
      // The clip mask: a NaN pre-quantizer value also zeroes (launch_clip_mask's test).
      if (pr && in && !(fabsf(dev::BF16::load(pr[i])) <= amax)) gv[k] = 0.0f;
      xv[k] = in && (is_q || is_k) ? x[i] : 0.0f;
    }
    if (!is_q && !is_k) {  // v: masked, rounded
#pragma unroll
      for (int k = 0; k < kPer; ++k)
        if (lane + 32 * k < hd) o[lane + 32 * k] = dev::BF16::store(gv[k]);
      continue;
    }
    float* sw = scratch + warp * hd;
#pragma unroll
    for (int k = 0; k < kPer; ++k)
      if (lane + 32 * k < hd) sw[lane + 32 * k] = gv[k];
    __syncwarp();
    float* gb = gbuf + (int64_t(lr) * qk + h) * hd;
    const int64_t t0 = int64_t(positions[r]) * half;
    for (int i = lane; i < half; i += 32) {  // rope_kernel<F32, true>'s expressions
      const float c = cos_t[t0 + i], sn = sin_t[t0 + i];
      const float x1 = sw[i], x2 = sw[i + half];
      gb[i] = x1 * c + x2 * sn;
      gb[i + half] = x2 * c - x1 * sn;
    }
    __syncwarp();  // gb is read by other lanes below; sw is rewritten by the next item
    const float* w = is_q ? q_norm : k_norm;
    double dot = 0.0;
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int i = lane + 32 * k;
      gv[k] = i < hd ? gb[i] : 0.0f;
      if (i < hd) dot += double(gv[k]) * double(w[i]) * double(xv[k]);
    }
    dot = ops::warp_reduce<ops::SumOp>(dot);
    const double rs = is_q ? q_rstd[r * n_heads + h] : k_rstd[r * n_kv + (h - n_heads)];
    const double c = dot * rs * rs * rs / double(hd);
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int i = lane + 32 * k;
      if (i < hd)
        o[i] = dev::BF16::store(
            __double2float_rn(double(gv[k]) * double(w[i]) * rs - c * double(xv[k])));
    }
  }
  if (!q_part) return;  // no weight gradients wanted (block-uniform)
  __syncthreads();
  // Chunk partial sums of the two norms' dw: chunk k holds items 32k .. 32k+31 of its norm.
  // The chunk's 32 terms are loaded first, then added in item order.
  for (int which = 0; which < 2; ++which) {
    const int groups = which == 0 ? n_heads : n_kv, goff = which == 0 ? 0 : n_heads;
    const float* rstd = which == 0 ? q_rstd : k_rstd;
    double* part = which == 0 ? q_part : k_part;
    const int items = nr * groups;
    const int64_t first_chunk = r0 * groups / 32;
    const int chunks = (items + 31) / 32;
    for (int wi = threadIdx.x; wi < chunks * hd; wi += blockDim.x) {
      const int ck = wi / hd, c = wi - ck * hd;
      double acc = 0.0;
      for (int u0 = 0; u0 < 32; u0 += 8) {  // 8 terms loaded, then added (registers stay low)
        float gj[8], xj[8], rj[8];
#pragma unroll
        for (int u = 0; u < 8; ++u) {
          const int j = ck * 32 + u0 + u;
          const int lr = j / groups, h = j - lr * groups;
          const bool in = j < items;
          gj[u] = in ? gbuf[(int64_t(lr) * qk + goff + h) * hd + c] : 0.0f;
          xj[u] = in ? qkv_lin[(r0 + lr) * W + int64_t(goff + h) * hd + c] : 0.0f;
          rj[u] = in ? rstd[(r0 + lr) * groups + h] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < 8; ++u)
          if (ck * 32 + u0 + u < items) acc += double(gj[u]) * double(xj[u]) * double(rj[u]);
      }
      part[(first_chunk + ck) * hd + c] = acc;
    }
  }
}

// d/dw_c of group item j (rmsnorm.cu's DwTerm<F32, F32>): dy * x * rstd in that order.
struct NormDw {
  const float* dy;
  const float* x;
  int64_t stride;
  const float* rstd;
  int64_t groups, dim;
  __device__ double operator()(int64_t j, int64_t c) const {
    const int64_t r = j / groups, g = j - r * groups;
    return double(dy[r * stride + g * dim + c]) * double(x[r * stride + g * dim + c]) *
           double(rstd[j]);
  }
};

}  // namespace

void launch_qkv_prepare(const float* qkv, int64_t rows, int n_heads, int n_kv_heads,
                        int head_dim, const float* q_norm, const float* k_norm, float eps,
                        const int32_t* positions, const float* cos_t, const float* sin_t,
                        bf16* out, bf16* k_out, bf16* v_out, float* q_rstd, float* k_rstd,
                        void* stream) {
  const int64_t items = rows * (n_heads + 2 * n_kv_heads);
  if (items <= 0) return;
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim > 1024)
    ops::throw_cuda_error("qkv prepare", "head_dim must be even and at most 1024");
  const size_t smem = size_t(kWarps) * size_t(head_dim) * sizeof(float);
  if (smem > 48 * 1024) {
    ops::check_cuda(cudaFuncSetAttribute(qkv_prepare_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         int(smem)),
                    "qkv prepare (shared memory)");
  }
  qkv_prepare_kernel<<<unsigned((items + kWarps - 1) / kWarps), kWarps * 32, smem,
                       static_cast<cudaStream_t>(stream)>>>(
      qkv, rows, n_heads, n_kv_heads, head_dim, q_norm, k_norm, eps, positions, cos_t, sin_t, out,
      k_out, v_out, q_rstd, k_rstd);
  check_last_launch("qkv prepare");
}

// Rows per block of the fused norm backward: the least rb with rb * n_heads and rb * n_kv
// both multiples of 32 (Qwen3-0.6B's 16/8 heads: 4).
static int fused_rows_per_block(int n_heads, int n_kv) {
  const int a = 32 / std::gcd(32, n_heads), b = 32 / std::gcd(32, n_kv);
  return std::lcm(a, b);
}

void launch_qkv_prepare_backward(float* dqkv, const float* qkv_lin, int64_t rows, int n_heads,
                                 int n_kv_heads, int head_dim, const float* q_norm,
                                 const float* k_norm, const float* q_rstd, const float* k_rstd,
                                 const bf16* k_pre, const bf16* v_pre, float k_amax, float v_amax,
                                 const int32_t* positions, const float* cos_t, const float* sin_t,
                                 bf16* out, float* dq_norm, float* dk_norm, void* stream) {
  const int64_t items = rows * (n_heads + 2 * n_kv_heads);
  if (items <= 0) return;
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim > 1024)
    ops::throw_cuda_error("qkv prepare backward", "head_dim must be even and at most 1024");
  auto st = static_cast<cudaStream_t>(stream);
  const int64_t W = int64_t(n_heads + 2 * n_kv_heads) * head_dim, qd = int64_t(n_heads) * head_dim;

  // The fused path (both norms): needs the column sums' 32-item chunks (column_sum_add keeps
  // chunks of 32 while there are at most 65535 of them) and the block's shared memory.
  const int rb = fused_rows_per_block(n_heads, n_kv_heads);
  const size_t fused_smem =
      (size_t(rb) * size_t(n_heads + n_kv_heads) + kWarps) * size_t(head_dim) * sizeof(float);
  const bool want_dw = dq_norm && dk_norm;
  const int64_t q_chunks = (rows * n_heads + 31) / 32, k_chunks = (rows * n_kv_heads + 31) / 32;
  if (q_norm && k_norm && (dq_norm == nullptr) == (dk_norm == nullptr) &&
      fused_smem <= 200 * 1024 && q_chunks <= 65535 && head_dim <= 256) {
    ops::Scratch part(want_dw ? size_t(q_chunks + k_chunks) * size_t(head_dim) * sizeof(double) : 1, st);
    double* q_part = want_dw ? part.as<double>() : nullptr;
    double* k_part = want_dw ? q_part + q_chunks * head_dim : nullptr;
    auto launch = [&](auto kernel) {
      if (fused_smem > 48 * 1024)
        ops::check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             int(fused_smem)),
                        "qkv prepare backward (shared memory)");
      kernel<<<unsigned((rows + rb - 1) / rb), kWarps * 32, fused_smem, st>>>(
          dqkv, qkv_lin, rows, n_heads, n_kv_heads, head_dim, rb, q_norm, k_norm, q_rstd, k_rstd,
          k_pre, v_pre, k_amax, v_amax, positions, cos_t, sin_t, out, q_part, k_part);
    };
    if (head_dim <= 32) launch(qkv_prepare_backward_norm_kernel<1>);
    else if (head_dim <= 64) launch(qkv_prepare_backward_norm_kernel<2>);
    else if (head_dim <= 128) launch(qkv_prepare_backward_norm_kernel<4>);
    else launch(qkv_prepare_backward_norm_kernel<8>);
    check_last_launch("qkv prepare backward");
    if (want_dw) {
      constexpr int kF = 256;  // column_sum_add's finish: a warp per column
      const unsigned grid = unsigned((int64_t(head_dim) * 32 + kF - 1) / kF);
      ops::column_finish_kernel<><<<grid, kF, 0, st>>>(q_part, q_chunks, head_dim, dq_norm);
      ops::column_finish_kernel<><<<grid, kF, 0, st>>>(k_part, k_chunks, head_dim, dk_norm);
      check_last_launch("qkv prepare backward (norm dw)");
    }
    return;
  }

  const size_t smem = size_t(kWarps) * size_t(head_dim) * sizeof(float);
  if (smem > 48 * 1024) {
    ops::check_cuda(cudaFuncSetAttribute(qkv_prepare_backward_kernel,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
                    "qkv prepare backward (shared memory)");
  }
  qkv_prepare_backward_kernel<<<unsigned((items + kWarps - 1) / kWarps), kWarps * 32, smem, st>>>(
      dqkv, qkv_lin, rows, n_heads, n_kv_heads, head_dim, q_norm, k_norm, q_rstd, k_rstd, k_pre,
      v_pre, k_amax, v_amax, positions, cos_t, sin_t, out);
  check_last_launch("qkv prepare backward");
  if (q_norm && dq_norm)
    ops::column_sum_add(NormDw{dqkv, qkv_lin, W, q_rstd, n_heads, head_dim}, rows * n_heads,
                        head_dim, dq_norm, st, "qkv prepare backward (q norm dw)");
  if (k_norm && dk_norm)
    ops::column_sum_add(NormDw{dqkv + qd, qkv_lin + qd, W, k_rstd, n_kv_heads, head_dim},
                        rows * n_kv_heads, head_dim, dk_norm, st, "qkv prepare backward (k norm dw)");
}

}  // namespace qarl::kernels::gpu
