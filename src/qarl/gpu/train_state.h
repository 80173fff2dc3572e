// What the GPU training forward keeps for the backward, and the fp32 gradients (fused like the
// masters: a per-HF-name gradient is a row slice of its layer's fused buffer).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qarl/core/tensor.h"
#include "qarl/gpu/gpu_model.h"
#include "qarl/gpu/paged_cache.h"
#include "qarl/kernels/cuda/attention_gpu.h"

namespace qarl::gpu {

struct LayerActs {
  Tensor x_in, h1, rstd1;        // residual in (F32 [R,H]), its norm (BF16), rstd (F32 [R])
  Tensor qkv_lin, q_rstd, k_rstd;  // Qwen3: q/k before their norms (F32 [R,W]) and rstds
  Tensor qkv16;                  // q,k,v after norm/RoPE (BF16 [R,W]): q read by the backward
  Tensor k, v, k_pre, v_pre;     // after / before the K/V quantizers (BF16 [R,kd]); pre only
                                 // when a quantizer clips its gradient
  Tensor attn, lse;              // attention out (BF16 [R,qd]), lse (F32 [R*nh])
  Tensor x_mid, h2, rstd2;       // residual after attention, its norm, rstd
  Tensor gu, act;                // gate|up (BF16 [R,2I]), silu(g)*u (BF16 [R,I])
};

struct TrainState {
  int64_t rows = 0;
  std::vector<kernels::gpu::AttnSegment> segs;  // one per sequence, positions from 0
  std::vector<int64_t> seq_offset;
  Tensor tokens, positions, row_seq;           // device I32 [R]
  std::vector<int32_t> host_tokens;
  std::vector<LayerActs> layers;
  Tensor x_final, rstd_f, hf;                   // F32 [R,H], F32 [R], BF16 [R,H]
  Tensor logits, lse_out, targets;             // F32 [R,V], F32 [R], I32 [R]
  float temperature = 1.0f;
  std::unique_ptr<PagedCache> cache;           // reused while large enough
  int cache_len = 0;
  kernels::gpu::AttentionWorkspace attn_ws;
};

struct GpuGrads {
  explicit GpuGrads(const GpuModel& m);  // zero-filled
  void zero();
  // A gradient by HF name (after a zero() with no backward since, the zeros are written first).
  Tensor& of(const std::string& name) {
    materialize_zero();
    return by_name.at(name);
  }
  // Fused buffers (mirroring GpuLayer's masters) and the per-name views into them.
  struct Layer { Tensor qkv, o, gu, down, input_norm, post_norm, q_norm, k_norm, qkv_bias, o_bias; };
  std::vector<Layer> layers;
  Tensor embed, lm_head, final_norm;
  std::map<std::string, Tensor> by_name;
  Tensor flat;  // F32: every gradient above is a view into it (padding between them is 0)
  // The gradients are flat * clip_scale: GpuAdamW::clip records its coefficient here and the
  // AdamW step applies it while reading (one pass over the gradients fewer). zero() resets
  // it; apply_clip_scale() multiplies it in (backward() does before accumulating).
  float clip_scale = 1.0f;
  void apply_clip_scale();
  // zero() clears only flat[added_from, added_to) (the gradients that are only added into)
  // and marks the rest pending: the next backward's weight-gradient products overwrite it
  // (beta = 0), which saves a pass over every gradient (0.5 ms of the Qwen3-0.6B step on
  // the H200). Readers of the gradients other than backward() call materialize_zero() first
  // (GpuAdamW and of() do; by_name and flat are raw).
  int64_t added_from = 0, added_to = 0;
  mutable bool pending_zero = false;
  void materialize_zero() const;
};

// The training forward: every token of every sequence (all start at position 0). Returns
// logprobs[s][t] = log p(token t+1 | ..t) at `temperature` (T_s - 1 values per sequence),
// computed on the device and copied back.
std::vector<std::vector<float>> forward_train(GpuModel& m,
                                              const std::vector<std::vector<int32_t>>& seqs,
                                              float temperature, TrainState& st);

// d_logprobs[s][t] = dLoss/dlogprobs[s][t]; accumulates into `grads`.
// Whether backward() issues the weight-gradient products on a second stream, overlapping
// them with the memory-bound kernels of the data-gradient path (default on; the results are
// the same bits either way: the same products on the same inputs, ordered by events).
void set_backward_overlap(bool on);
bool backward_overlap();

void backward(GpuModel& m, TrainState& st, const std::vector<std::vector<float>>& d_logprobs,
              GpuGrads& grads);

}  // namespace qarl::gpu
