// The decoder-only transformer on one CUDA device, the GPU counterpart of qarl/model: the same
// families (Llama / Qwen2 / Qwen3), the same K/V quantizer sites (after RoPE, before the
// cache), mixed precision: fp32 master weights (the optimizer's), bf16 working copies that the
// GEMMs read, bf16 activations, an fp32 residual stream, fp32 statistics and logits.
//
// One forward definition serves the trainer and the rollout, as on the CPU: forward() takes
// chunks of new tokens of several sequences and a paged cache (PagedCache); the trainer's
// forward is the same call with every token of every sequence. With GemmMode::kExact the GEMMs
// are batch invariant and attention is batch invariant by construction, so a token's logits
// (hence logprobs) are bitwise the same whether it was scored in a training batch, prefilled
// or decoded one step at a time (tests/gpu/gpu_parity_test.cpp).
//
// Only in CUDA builds (CMake leaves src/qarl/gpu out otherwise); gpu::available() tells
// whether a device is usable.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qarl/core/tensor.h"
#include "qarl/io/hf_config.h"
#include "qarl/kernels/cuda/gemm.h"
#include "qarl/model/model.h"

namespace qarl::gpu {

using kernels::gpu::GemmMode;

class PagedCache;
struct TrainState;

// New tokens of one sequence (as model::SeqChunk): positions start_pos.. start_pos+n-1 of
// cache sequence `seq`; logits for the last n_logits of them.
struct Chunk {
  int seq = 0;
  std::vector<int32_t> tokens;
  int start_pos = 0;
  int n_logits = 1;
};

// Per-layer device buffers of one parameter family. Fused like the CPU model: q,k,v rows are
// one [q_dim + 2 kv_dim, H] matrix, gate and up one [2 I, H] matrix, so the per-HF-name
// tensors (masters, grads, bf16 copies) are row slices of these.
struct GpuLayer {
  Tensor w_qkv, w_o, w_gu, w_down;                  // bf16 working copies
  Tensor m_qkv, m_o, m_gu, m_down;                  // fp32 masters
  Tensor input_norm, post_norm, q_norm, k_norm;     // fp32 (norm weights are masters too)
  Tensor qkv_bias, o_bias;                          // fp32 or undefined
};

class GpuModel {
 public:
  // Uploads `m`'s parameters (fp32 masters, bf16 copies) and its K/V quantizer settings.
  GpuModel(const model::Model& m, GemmMode mode);
  GpuModel(const GpuModel&) = delete;
  GpuModel& operator=(const GpuModel&) = delete;
  ~GpuModel();

  const io::HFConfig& config() const { return cfg_; }
  GemmMode gemm_mode() const { return mode_; }
  void set_gemm_mode(GemmMode m) { mode_ = m; }
  int q_dim() const { return cfg_.num_attention_heads * cfg_.head_dim; }
  int kv_dim() const { return cfg_.num_key_value_heads * cfg_.head_dim; }
  int64_t num_params() const { return n_params_; }
  int64_t weight_bytes_bf16() const;  // bytes of the bf16 copies one decode step reads

  // The K/V quantizers (copied from the CPU model; amax values fixed at construction).
  const std::vector<quant::TensorQuantizer>& k_quantizers() const { return kq_; }
  const std::vector<quant::TensorQuantizer>& v_quantizers() const { return vq_; }
  // Replaces every K/V quantizer (e.g. all disabled to score "unaware"); sizes must match.
  void set_kv_quantizers(std::vector<quant::TensorQuantizer> k, std::vector<quant::TensorQuantizer> v);
  // Sets the `_amax` of layer `layer`'s K ('k') or V ('v') quantizer (a refit's commit).
  void set_kv_amax(int layer, char which, const Tensor& amax);

  // Runs the chunks; K/V of the new tokens go into `cache`. Returns logits [sum n_logits, V]
  // fp32 on the device, rows in chunk order. `train` (optional) keeps what backward() needs
  // (all chunks must then start at position 0 with n_logits == n).
  Tensor forward(const std::vector<Chunk>& chunks, PagedCache& cache, TrainState* train = nullptr);

  // Parameters by HF name: a device view (fp32 master), shapes as model::Model's.
  const std::vector<std::string>& param_names() const { return names_; }
  Tensor master(const std::string& name) const;
  // Re-derives the bf16 working copies from the masters (after writing masters directly).
  void masters_changed();
  // Copies every master into `m` (CPU model, its weights_changed() is called).
  void download(model::Model& m) const;

  // Internal, for forward/backward/optimizer code.
  GpuLayer& layer(int i) { return layers_[size_t(i)]; }
  const GpuLayer& layer(int i) const { return layers_[size_t(i)]; }
  const Tensor& embed_bf16() const { return embed_w_; }
  const Tensor& lm_head_bf16() const { return cfg_.tie_word_embeddings ? embed_w_ : lm_w_; }
  const Tensor& final_norm() const { return final_norm_; }
  const Tensor& rope_cos() const { return rope_cos_; }
  const Tensor& rope_sin() const { return rope_sin_; }
  int rope_max_pos() const { return rope_max_pos_; }
  void ensure_rope(int max_pos);  // grows the cos/sin tables to positions < max_pos
  // The bf16 working copy (device pointer) a master's values are mirrored to.
  void* working_of(const std::string& name) const;

 private:
  void add(const std::string& name, Tensor master, void* working);

  io::HFConfig cfg_;
  GemmMode mode_;
  std::vector<float> inv_freq_;
  std::vector<GpuLayer> layers_;
  Tensor embed_w_, embed_m_, lm_w_, lm_m_, final_norm_;
  Tensor rope_cos_, rope_sin_;
  int rope_max_pos_ = 0;
  std::vector<quant::TensorQuantizer> kq_, vq_;
  std::vector<std::string> names_;
  struct Param { Tensor master; void* working = nullptr; };
  std::map<std::string, Param> params_;
  int64_t n_params_ = 0;
};

}  // namespace qarl::gpu
