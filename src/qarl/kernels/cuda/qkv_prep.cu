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
#include <algorithm>
#include <cstdint>
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

// The forward for head_dim = 32 * kPer (64, 128, 256), the same arithmetic from registers:
// a lane holds elements lane + 32k of its head (the RoPE partner of element k < kPer/2 is its
// own element k + kPer/2); a warp walks items (row, head) kRegWarps apart, with the next
// item's projection and cos/sin loads issued before the current one is computed.
constexpr int kRegWarps = 8;
template <int kPer>
__global__ void __launch_bounds__(kRegWarps * 32)
    qkv_prepare_reg_kernel(const float* __restrict__ qkv, int64_t rows, int n_heads, int n_kv,
                           const float* __restrict__ q_norm, const float* __restrict__ k_norm,
                           float eps, const int32_t* __restrict__ positions,
                           const float* __restrict__ cos_t, const float* __restrict__ sin_t,
                           bf16* __restrict__ out, bf16* __restrict__ k_out,
                           bf16* __restrict__ v_out, float* __restrict__ q_rstd,
                           float* __restrict__ k_rstd) {
  constexpr int hd = 32 * kPer, half = hd / 2;
  const int lane = threadIdx.x & 31;
  const int heads = n_heads + 2 * n_kv;
  const int64_t W = int64_t(heads) * hd, kd = int64_t(n_kv) * hd;
  const int64_t n_items = rows * heads;
  const int64_t step = int64_t(gridDim.x) * kRegWarps;
  struct Item {
    float x[kPer], c[kPer / 2], s[kPer / 2];
  };
  auto load = [&](int64_t item) {
    Item b;
    const int64_t r = item / heads;
    const int h = int(item - r * heads);
    const float* x = qkv + r * W + int64_t(h) * hd;
#pragma unroll
    for (int k = 0; k < kPer; ++k) b.x[k] = x[lane + 32 * k];
    if (h < n_heads + n_kv) {
      const int64_t t0 = int64_t(positions[r]) * half;
#pragma unroll
      for (int k = 0; k < kPer / 2; ++k) {
        b.c[k] = cos_t[t0 + lane + 32 * k];
        b.s[k] = sin_t[t0 + lane + 32 * k];
      }
    }
    return b;
  };
  int64_t item = int64_t(blockIdx.x) * kRegWarps + threadIdx.x / 32;
  Item cur;
  if (item < n_items) cur = load(item);
  for (; item < n_items; item += step) {
    Item next;
    if (item + step < n_items) next = load(item + step);
    const int64_t r = item / heads;
    const int h = int(item - r * heads);
    bf16* o = out + r * W + int64_t(h) * hd;
    const bool is_q = h < n_heads, is_k = !is_q && h < n_heads + n_kv;
    if (!is_q && !is_k) {  // v: rounded and copied
      bf16* vo = v_out + r * kd + int64_t(h - n_heads - n_kv) * hd;
#pragma unroll
      for (int k = 0; k < kPer; ++k) {
        const bf16 b = dev::BF16::store(cur.x[k]);
        o[lane + 32 * k] = b;
        vo[lane + 32 * k] = b;
      }
    } else {
      float v[kPer];
      const float* w = is_q ? q_norm : k_norm;
      if (w) {
        double ss = 0.0;
#pragma unroll
        for (int k = 0; k < kPer; ++k) {
          const double d = cur.x[k];
          ss += d * d;
        }
        ss = ops::warp_reduce<ops::SumOp>(ss);
        const float var = __double2float_rn(ss / double(hd));
        const float rs = 1.0f / sqrtf(var + eps);
        if (lane == 0) {
          if (is_q) q_rstd[r * n_heads + h] = rs;
          else k_rstd[r * n_kv + (h - n_heads)] = rs;
        }
#pragma unroll
        for (int k = 0; k < kPer; ++k) v[k] = w[lane + 32 * k] * (cur.x[k] * rs);
      } else {
#pragma unroll
        for (int k = 0; k < kPer; ++k) v[k] = cur.x[k];
      }
      bf16* ko = is_k ? k_out + r * kd + int64_t(h - n_heads) * hd : nullptr;
#pragma unroll
      for (int k = 0; k < kPer / 2; ++k) {
        const float x1 = v[k], x2 = v[k + kPer / 2];
        const bf16 a = dev::BF16::store(x1 * cur.c[k] - x2 * cur.s[k]);
        const bf16 b = dev::BF16::store(x2 * cur.c[k] + x1 * cur.s[k]);
        o[lane + 32 * k] = a;
        o[lane + 32 * k + half] = b;
        if (ko) {
          ko[lane + 32 * k] = a;
          ko[lane + 32 * k + half] = b;
        }
      }
    }
    cur = next;
  }
}

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
  auto st = static_cast<cudaStream_t>(stream);
  if (head_dim == 64 || head_dim == 128 || head_dim == 256) {
    // A grid of a few waves; each warp strides over the items (its next item prefetched).
    int per_sm = 0, sms = 0, dev_id = 0;
    ops::check_cuda(cudaGetDevice(&dev_id), "qkv prepare");
    ops::check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev_id), "qkv prepare");
    auto launch = [&](auto kernel) {
      ops::check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kRegWarps * 32, 0),
                      "qkv prepare");
      const int64_t blocks = std::min<int64_t>((items + kRegWarps - 1) / kRegWarps,
                                               int64_t(std::max(per_sm, 1)) * sms * 4);
      kernel<<<unsigned(blocks), kRegWarps * 32, 0, st>>>(qkv, rows, n_heads, n_kv_heads, q_norm,
                                                         k_norm, eps, positions, cos_t, sin_t, out,
                                                         k_out, v_out, q_rstd, k_rstd);
    };
    if (head_dim == 64) launch(qkv_prepare_reg_kernel<2>);
    else if (head_dim == 128) launch(qkv_prepare_reg_kernel<4>);
    else launch(qkv_prepare_reg_kernel<8>);
    check_last_launch("qkv prepare");
    return;
  }
  const size_t smem = size_t(kWarps) * size_t(head_dim) * sizeof(float);
  if (smem > 48 * 1024) {
    ops::check_cuda(cudaFuncSetAttribute(qkv_prepare_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         int(smem)),
                    "qkv prepare (shared memory)");
  }
  qkv_prepare_kernel<<<unsigned((items + kWarps - 1) / kWarps), kWarps * 32, smem, st>>>(
      qkv, rows, n_heads, n_kv_heads, head_dim, q_norm, k_norm, eps, positions, cos_t, sin_t, out,
      k_out, v_out, q_rstd, k_rstd);
  check_last_launch("qkv prepare");
}

}  // namespace qarl::kernels::gpu
