// launch_qkv_prepare_backward (model_ops.h): the backward of qkv_prep.cu's forward, in the
// same arithmetic as the chain it replaced: the K/V quantizers' clip masks,
// the transposed rotation, the per-head norms' input gradient and the bf16 rounding in one
// pass (the chain was 0.33 ms per layer). With both q/k norms (Qwen3) and head_dim 64/128/256
// the norm weights' gradients are summed in the same pass (below: bitwise the chain's dx,
// dw up to the last bit of a double sum); otherwise as the chain's column sums (rmsnorm.cu's
// DwTerm through ops::column_sum_add).
#include <cstdint>
#include <cuda_runtime.h>

#include "qarl/kernels/cuda/model_ops.h"
#include "qarl/kernels/cuda/model_ops_device.cuh"

namespace qarl::kernels::gpu {
namespace {

constexpr int kWarps = 8;  // heads per block, one warp each (the unfused kernel)

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

// The backward with both q/k norms (Qwen3), the norm weights' gradients fused in. A block
// takes kFusedRows rows; warp w walks the block's items (row, head) w, w + kFusedWarps, ... in
// order and adds each q (k) item's dw terms, dy * x * rstd in double (DwTerm's product order),
// to its lanes' running sums; the warps' sums are then added in warp order into the block's
// partial, and column_finish_kernel adds the blocks' partials. The order is fixed, so dw is
// reproducible bit for bit; it is not column_sum_add's order (chunks of 32 items), so it may
// differ from that path in the last bit. Nothing is written back to dqkv and nothing is
// re-read: ~200 MB per layer less traffic than the unfused chain at 8 x 1024 on Qwen3-0.6B.
//
// head_dim = 32 * kPer (64, 128, 256): a lane holds elements lane + 32k of its head, and the
// RoPE partner of element k (< kPer/2) is its own element k + kPer/2, so the rotation, the
// norm's dot and the output stay in registers. Every global load of an item (gradient, clip
// inputs, projection, cos/sin, rstd) is issued up front, and the next item's loads are issued
// before the current one is computed: the loop is bound by memory, not by round trips.
constexpr int kFusedWarps = 8, kFusedRows = 4;

template <int kPer>
struct BwdItem {
  float g[kPer], x[kPer], c[kPer / 2], s[kPer / 2];
  float rs;
  int64_t r;
  int h;
};

template <int kPer>
__global__ void __launch_bounds__(kFusedWarps * 32, kPer >= 8 ? 2 : 4)  // kPer 4: <= 64 registers
    qkv_prepare_backward_norm_kernel(const float* __restrict__ dqkv,
                                     const float* __restrict__ qkv_lin, int64_t rows, int n_heads,
                                     int n_kv, const float* __restrict__ q_norm,
                                     const float* __restrict__ k_norm,
                                     const float* __restrict__ q_rstd,
                                     const float* __restrict__ k_rstd,
                                     const bf16* __restrict__ k_pre, const bf16* __restrict__ v_pre,
                                     float k_amax, float v_amax,
                                     const int32_t* __restrict__ positions,
                                     const float* __restrict__ cos_t,
                                     const float* __restrict__ sin_t, bf16* __restrict__ out,
                                     double* __restrict__ q_part, double* __restrict__ k_part) {
  constexpr int hd = 32 * kPer, half = hd / 2;
  __shared__ double wsum[kFusedWarps][2][hd];  // each warp's q and k dw sums
  const int qk = n_heads + n_kv, heads = qk + n_kv;
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int64_t W = int64_t(heads) * hd, kd = int64_t(n_kv) * hd;
  const int64_t r0 = int64_t(blockIdx.x) * kFusedRows;
  const int nr = int(min(int64_t(kFusedRows), rows - r0));
  const int n_items = nr * heads;

  auto load = [&](int it) {
    BwdItem<kPer> b;
    const int lr = it / heads;
    b.h = it - lr * heads;
    b.r = r0 + lr;
    const int h = b.h;
    const bool is_q = h < n_heads, is_k = !is_q && h < qk;
    const float* g = dqkv + b.r * W + int64_t(h) * hd;
    const bf16* pre = is_k ? k_pre : is_q ? nullptr : v_pre;
    const float amax = is_k ? k_amax : v_amax;
    const bf16* pr = pre ? pre + b.r * kd + int64_t(is_k ? h - n_heads : h - qk) * hd : nullptr;
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      b.g[k] = g[lane + 32 * k];
      // The clip mask: a NaN pre-quantizer value also zeroes (launch_clip_mask's test).
      if (pr && !(fabsf(dev::BF16::load(pr[lane + 32 * k])) <= amax)) b.g[k] = 0.0f;
    }
    if (is_q || is_k) {
      const float* x = qkv_lin + b.r * W + int64_t(h) * hd;
#pragma unroll
      for (int k = 0; k < kPer; ++k) b.x[k] = x[lane + 32 * k];
      const int64_t t0 = int64_t(positions[b.r]) * half;
#pragma unroll
      for (int k = 0; k < kPer / 2; ++k) {
        b.c[k] = cos_t[t0 + lane + 32 * k];
        b.s[k] = sin_t[t0 + lane + 32 * k];
      }
      b.rs = is_q ? q_rstd[b.r * n_heads + h] : k_rstd[b.r * n_kv + (h - n_heads)];
    }
    return b;
  };

  double dq[kPer], dk[kPer];  // this warp's dw sums, lane's columns
#pragma unroll
  for (int k = 0; k < kPer; ++k) dq[k] = dk[k] = 0.0;
  BwdItem<kPer> cur;
  if (warp < n_items) cur = load(warp);
  for (int it = warp; it < n_items; it += kFusedWarps) {
    BwdItem<kPer> next;
    if (it + kFusedWarps < n_items) next = load(it + kFusedWarps);
    const int h = cur.h;
    const int64_t r = cur.r;
    bf16* o = out + r * W + int64_t(h) * hd;
    const bool is_q = h < n_heads, is_k = !is_q && h < qk;
    if (!is_q && !is_k) {  // v: masked, rounded
#pragma unroll
      for (int k = 0; k < kPer; ++k) o[lane + 32 * k] = dev::BF16::store(cur.g[k]);
    } else {
      float rg[kPer];  // rope_kernel<F32, true>'s expressions
#pragma unroll
      for (int k = 0; k < kPer / 2; ++k) {
        const float x1 = cur.g[k], x2 = cur.g[k + kPer / 2];
        rg[k] = x1 * cur.c[k] + x2 * cur.s[k];
        rg[k + kPer / 2] = x2 * cur.c[k] - x1 * cur.s[k];
      }
      const float* w = is_q ? q_norm : k_norm;
      double dot = 0.0;
#pragma unroll
      for (int k = 0; k < kPer; ++k) {
        dot += double(rg[k]) * double(w[lane + 32 * k]) * double(cur.x[k]);
        const double term = double(rg[k]) * double(cur.x[k]) * double(cur.rs);
        if (is_q) dq[k] += term;
        else dk[k] += term;
      }
      dot = ops::warp_reduce<ops::SumOp>(dot);
      const double rs = cur.rs;
      const double c = dot * rs * rs * rs / double(hd);
#pragma unroll
      for (int k = 0; k < kPer; ++k)
        o[lane + 32 * k] = dev::BF16::store(
            __double2float_rn(double(rg[k]) * double(w[lane + 32 * k]) * rs - c * double(cur.x[k])));
    }
    cur = next;
  }
  if (!q_part) return;  // no weight gradients wanted (block-uniform)
#pragma unroll
  for (int k = 0; k < kPer; ++k) {
    wsum[warp][0][lane + 32 * k] = dq[k];
    wsum[warp][1][lane + 32 * k] = dk[k];
  }
  __syncthreads();
  // The block's partials, warps added in order; column-major for column_finish_kernel.
  for (int wi = threadIdx.x; wi < 2 * hd; wi += blockDim.x) {
    const int which = wi / hd, c = wi - which * hd;
    double acc = 0.0;
#pragma unroll
    for (int w = 0; w < kFusedWarps; ++w) acc += wsum[w][which][c];
    (which == 0 ? q_part : k_part)[int64_t(c) * gridDim.x + blockIdx.x] = acc;
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

  // The fused path: both norms, head_dim 64, 128 or 256.
  if (q_norm && k_norm && (dq_norm == nullptr) == (dk_norm == nullptr) &&
      (head_dim == 64 || head_dim == 128 || head_dim == 256)) {
    const bool want_dw = dq_norm != nullptr;
    const int64_t blocks = (rows + kFusedRows - 1) / kFusedRows;
    ops::Scratch part(want_dw ? size_t(2 * blocks) * size_t(head_dim) * sizeof(double) : 1, st);
    double* q_part = want_dw ? part.as<double>() : nullptr;
    double* k_part = want_dw ? q_part + blocks * head_dim : nullptr;
    auto launch = [&](auto kernel) {
      kernel<<<unsigned(blocks), kFusedWarps * 32, 0, st>>>(
          dqkv, qkv_lin, rows, n_heads, n_kv_heads, q_norm, k_norm, q_rstd, k_rstd, k_pre, v_pre,
          k_amax, v_amax, positions, cos_t, sin_t, out, q_part, k_part);
    };
    if (head_dim == 64) launch(qkv_prepare_backward_norm_kernel<2>);
    else if (head_dim == 128) launch(qkv_prepare_backward_norm_kernel<4>);
    else launch(qkv_prepare_backward_norm_kernel<8>);
    check_last_launch("qkv prepare backward");
    if (want_dw) {
      constexpr int kF = 256;  // column_sum_add's finish: a warp per column
      const unsigned grid = unsigned((int64_t(head_dim) * 32 + kF - 1) / kF);
      ops::column_finish_kernel<><<<grid, kF, 0, st>>>(q_part, blocks, head_dim, dq_norm);
      ops::column_finish_kernel<><<<grid, kF, 0, st>>>(k_part, blocks, head_dim, dk_norm);
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
