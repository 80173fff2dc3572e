// Raw-pointer launchers of the row-wise model ops on the GPU (defined in *.cu, CUDA builds
// only): the counterparts of qarl/kernels/cpu/{embedding,rmsnorm,rope,swiglu,log_softmax}.h and
// qarl/train/adamw.h. Mixed precision as the GPU model uses it: bf16 activations (`bf16` =
// raw bf16 bits in device memory), fp32 residual stream, fp32 statistics and accumulation,
// fp32 gradients of parameters. Every kernel is row-local with a fixed per-row reduction order,
// so a row's result does not depend on the other rows of the launch (batch invariance).
// All launches are asynchronous on `stream` (a cudaStream_t; nullptr = default stream).
// Tests: tests/kernels/cuda_model_ops_test.cpp (each against the CPU reference).
#pragma once
#include <cstdint>
#include <vector>

#include "qarl/kernels/cuda/launch.h"

namespace qarl::kernels::gpu {

using bf16 = uint16_t;  // bf16 bits in device memory

// ---- embedding ----
// out[r, :] = float(table[tokens[r], :]); tokens validated by the caller.
void launch_embedding_forward(const bf16* table, int64_t dim, const int32_t* tokens,
                              int64_t rows, float* out, void* stream);
// dtable[tokens[r], :] += dout[r, :] (fp32; atomic adds, so the summation order is not fixed).
void launch_embedding_backward(const float* dout, int64_t dim, const int32_t* tokens,
                               int64_t rows, float* dtable, void* stream);

// ---- RMSNorm (HF: fp32 statistics, y = w * (x * rstd), rounded once to the output type) ----
// Normalizes groups of `dim` elements: group (r, g) starts at x + r*x_stride + g*dim (and
// y + r*y_stride + g*dim); rstd[r*groups + g] (may be null). groups = 1 for the hidden norms,
// n_heads for Qwen3's per-head q/k norms. y may equal x when the types match. x_copy (may be
// null; not aliasing x or y): x's bits copied there, same type and stride as x (the trainer
// keeps each norm's input for the backward; this saves a separate read of x).
void launch_rmsnorm_forward(Elem in_t, const void* x, int64_t x_stride, const float* w,
                            int64_t rows, int groups, int dim, float eps, Elem out_t, void* y,
                            int64_t y_stride, float* rstd, void* stream, void* x_copy = nullptr);
// dx (fp32, same grouping, stride dx_stride) = d/dx, added to dx when accumulate else written;
// dw (fp32 [dim], may be null) += d/dw. dx may alias dy when dy is F32 with the same stride
// and accumulate is false. dx_bf16 (may be null): dx's final values rounded to bf16 there
// (stride dx_stride), the bits launch_cast would give (the next product's input).
void launch_rmsnorm_backward(Elem dy_t, const void* dy, int64_t dy_stride, Elem in_t,
                             const void* x, int64_t x_stride, const float* w, const float* rstd,
                             int64_t rows, int groups, int dim, float* dx, int64_t dx_stride,
                             bool accumulate, float* dw, void* stream, bf16* dx_bf16 = nullptr);

// ---- RoPE (HF rotate_half; angles from tables computed on the host by the CPU code) ----
// cos_t, sin_t: [max_pos, head_dim/2] fp32, row p = cos/sin(p * inv_freq) exactly as
// kernels::rope_forward computes them. x: rows of n_heads*head_dim values at x + r*stride,
// rotated in place (computed in fp32, rounded once for bf16).
void launch_rope_forward(Elem t, void* x, int64_t rows, int64_t stride, int n_heads,
                         int head_dim, const int32_t* positions, const float* cos_t,
                         const float* sin_t, void* stream);
// The attention inputs of a layer from its fp32 projection qkv [rows, (n_heads + 2 n_kv) *
// head_dim] (q heads, then k, then v; read only): q and k normalized per head when q_norm /
// k_norm are given (Qwen3; rstds to q_rstd[r*n_heads+h], k_rstd[r*n_kv+h]), then rotated
// (RoPE at positions[r]); out [rows, same width] bf16 gets q, k, v, and k_out / v_out
// [rows, n_kv*head_dim] bf16 get k and v. Bitwise the chain rmsnorm -> rope -> cast above.
void launch_qkv_prepare(const float* qkv, int64_t rows, int n_heads, int n_kv_heads,
                        int head_dim, const float* q_norm, const float* k_norm, float eps,
                        const int32_t* positions, const float* cos_t, const float* sin_t,
                        bf16* out, bf16* k_out, bf16* v_out, float* q_rstd, float* k_rstd,
                        void* stream);
// Its backward, bitwise the chain clip mask -> rope backward -> rmsnorm backward -> cast: dqkv
// [rows, W] fp32 holds the attention's dq, dk, dv; k/v gradients are zeroed where the K/V
// quantizer clipped (k_pre / v_pre [rows, n_kv*head_dim] bf16 pre-quantizer values, |x| >
// amax or NaN; null: no mask), q and k rotated back; out [rows, W] bf16 gets the gradient of
// the projection (through the norms when given: qkv_lin = the norms' input, the forward's fp32
// projection, and its rstds); dq_norm / dk_norm (fp32 [head_dim], may be null) += the norm
// weights' gradients. With q_norm and k_norm null, dqkv ends as the projection's gradient in
// fp32 too (the bias's gradient reads it); with both norms its contents afterwards are
// unspecified (the fused kernel leaves it unchanged; a fallback for very large shapes leaves
// the rotated gradient there).
void launch_qkv_prepare_backward(float* dqkv, const float* qkv_lin, int64_t rows, int n_heads,
                                 int n_kv_heads, int head_dim, const float* q_norm,
                                 const float* k_norm, const float* q_rstd, const float* k_rstd,
                                 const bf16* k_pre, const bf16* v_pre, float k_amax, float v_amax,
                                 const int32_t* positions, const float* cos_t, const float* sin_t,
                                 bf16* out, float* dq_norm, float* dk_norm, void* stream);
// The transposed rotation, in place on fp32 gradients.
void launch_rope_backward(float* dx, int64_t rows, int64_t stride, int n_heads, int head_dim,
                          const int32_t* positions, const float* cos_t, const float* sin_t,
                          void* stream);

// ---- SwiGLU: h = silu(g) * u on gu = [gate | up] rows ----
void launch_swiglu_forward(const bf16* gu, int64_t rows, int64_t inter, bf16* h, void* stream);
void launch_swiglu_backward(const bf16* dh, const bf16* gu, int64_t rows, int64_t inter,
                            bf16* dgu, void* stream);

// ---- log-softmax, token logprobs, cross-entropy on fp32 logits [rows, vocab] (row stride ld) ----
// z = logits / T (no division when T == 1, as the CPU); lse[r] = log(sum exp z) with a fixed
// per-row order; when targets is non-null, logprob[r] = z[targets[r]] - lse[r] (the exact
// fp32 expression, so a host holding the logits row and lse can recompute it bitwise).
void launch_logprobs_forward(const float* logits, int64_t ld, int64_t rows, int64_t vocab,
                             float temperature, const int32_t* targets, float* lse,
                             float* logprob, void* stream);
// dlogits[r, :] = (g[r] / T) * (onehot(targets[r]) - exp(z - lse[r])), written as out_t
// (F32 or BF16) with row stride ld_out; g: [rows] fp32 device.
void launch_logprobs_backward(const float* logits, int64_t ld, int64_t rows, int64_t vocab,
                              float temperature, const int32_t* targets, const float* lse,
                              const float* g, Elem out_t, void* dlogits, int64_t ld_out,
                              void* stream);
// Mean cross-entropy (T = 1) into loss[0] (device fp32); its backward is logprobs_backward
// with g = -1/rows.
void launch_cross_entropy_forward(const float* logits, int64_t ld, int64_t rows, int64_t vocab,
                                  const int32_t* targets, float* lse_scratch,
                                  float* logprob_scratch, float* loss, void* stream);

// ---- AdamW (train::AdamW's formula and arithmetic: double math, fp32 storage) ----
struct AdamWScalars {
  double beta1, beta2, eps;
  double decay;     // lr * weight_decay, or 0 for exempt parameters
  double step_size; // lr / (1 - beta1^t)
  double bc2_sqrt;  // sqrt(1 - beta2^t)
  // The gradient is read as grad * grad_scale in fp32 (RNE): the CPU clip's `g *= coef`
  // folded into the step, which saves the clip's own pass over every gradient.
  float grad_scale = 1.0f;
};
// master, m, v updated in place, bitwise equal to train::AdamW::step; working (may be null)
// = bf16(master) (RNE), the copy the GEMMs read.
void launch_adamw_step(float* master, float* m, float* v, const float* grad, int64_t n,
                       AdamWScalars s, bf16* working, void* stream);
// The same step for many tensors in one launch (a model has ~300 parameters, many of them
// small: one launch each cost ~1 ms of the Qwen3-0.6B step in launch gaps). Device arrays:
// `tensors`, and `chunks` from adamw_chunks() (one block per chunk of <= kAdamWChunk
// elements of one tensor). The per-element arithmetic is launch_adamw_step's: the same bits.
struct AdamWTensor {
  float* master;
  float* m;
  float* v;
  const float* grad;
  bf16* working;  // may be null
  int64_t n;
};
struct AdamWChunk {
  int32_t tensor;
  int64_t begin, end;
};
inline constexpr int64_t kAdamWChunk = int64_t(1) << 16;
std::vector<AdamWChunk> adamw_chunks(const std::vector<AdamWTensor>& tensors);  // host
void launch_adamw_step_multi(const AdamWTensor* tensors, const AdamWChunk* chunks,
                             int64_t n_chunks, AdamWScalars s, void* stream);

// ---- small helpers ----
void launch_cast(Elem from, const void* x, Elem to, void* y, int64_t n, void* stream);
// y[r, c] += b[c] for a [rows, cols] view with row stride `stride` (bf16 rounded once).
void launch_add_bias(Elem t, void* y, int64_t rows, int64_t cols, int64_t stride,
                     const float* b, void* stream);
// db[c] += sum_r dy[r, c].
void launch_bias_backward(Elem t, const void* dy, int64_t rows, int64_t cols, int64_t stride,
                          float* db, void* stream);
// dst[r, :cols] = src[r, :cols] with row strides (same element type).
void launch_copy_rows(Elem t, const void* src, int64_t src_stride, void* dst,
                      int64_t dst_stride, int64_t rows, int64_t cols, void* stream);
// Clipped straight-through mask on fp32 gradients: dy[i] = |x[i]| <= amax ? dy[i] : 0
// (NaN x -> 0), x of type x_t; rows/stride views as above for both.
void launch_clip_mask(float* dy, int64_t dy_stride, Elem x_t, const void* x, int64_t x_stride,
                      int64_t rows, int64_t cols, float amax, void* stream);
// Sum of squares of fp32 values into out[0] (device, += ; for gradient norms).
void launch_sum_squares(const float* x, int64_t n, double* out, void* stream);
// x *= s (fp32, in place; gradient clipping).
void launch_scale(float* x, int64_t n, float s, void* stream);

}  // namespace qarl::kernels::gpu
