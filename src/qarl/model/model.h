// The decoder-only transformer qarl trains and samples: Llama / Qwen2 / Qwen3 as configuration
// switches. Weights are fp32 masters under their Hugging Face names; compute is fp32 on the CPU
// with batch-invariant kernels (see docs/model.md). The checkpoint dtype is kept for saving.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qarl/core/tensor.h"
#include "qarl/io/hf_config.h"
#include "qarl/kernels/cpu/gemm.h"
#include "qarl/quant/quantizer.h"
#include "qarl/quant/recipe.h"

namespace qarl::model {

// Pointers into the fp32 parameters of one decoder layer, plus packed GEMM weights.
struct LayerWeights {
  const float* input_norm = nullptr;     // [H]
  const float* post_norm = nullptr;      // [H]
  const float* q_norm = nullptr;         // [hd] (Qwen3)
  const float* k_norm = nullptr;         // [hd]
  const float* qkv_bias = nullptr;       // [q_dim + 2*kv_dim] (Qwen2), fused copy
  kernels::PackedB qkv;                  // fused q,k,v: [H] -> [q_dim + 2 kv_dim]
  kernels::PackedB o;                    // [q_dim] -> [H]
  const float* o_bias = nullptr;         // [H] (Llama with attention_bias)
  kernels::PackedB gate_up;              // fused gate,up: [H] -> [2 I]
  kernels::PackedB down;                 // [I] -> [H]
  std::vector<float> qkv_bias_store;
};

class Model {
 public:
  // Move-only: the packed weights and bias pointers refer to this model's own storage, and a
  // copy would share the parameter tensors.
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  Model(Model&&) = default;
  Model& operator=(Model&&) = default;

  // Loads config.json and the weights (F32/BF16/F16) of a checkpoint directory.
  static Model load(const std::string& dir);
  // A seeded random model (HF-like init: normal(0, 0.02) weights, unit norms, zero biases).
  static Model random_init(const io::HFConfig& cfg, uint64_t seed, DType dtype = DType::F32);
  // Writes config.json + model.safetensors in the checkpoint dtype, including the _amax of
  // K/V quantizers that have one. Tokenizer files are the caller's.
  void save(const std::string& dir) const;

  const io::HFConfig& config() const { return cfg_; }
  DType dtype() const { return dtype_; }
  int q_dim() const { return cfg_.num_attention_heads * cfg_.head_dim; }
  int kv_dim() const { return cfg_.num_key_value_heads * cfg_.head_dim; }

  // Parameters (fp32) by HF name, in a fixed order. lm_head.weight is absent when tied.
  const std::vector<std::string>& param_names() const { return names_; }
  Tensor& param(const std::string& name);
  const Tensor& param(const std::string& name) const;
  bool has_param(const std::string& name) const { return params_.count(name) != 0; }
  // Call after changing parameter values (optimizer step): repacks the GEMM weights.
  void weights_changed();

  // K/V quantizers of layer i (ModelOpt names, kv_quantizer_name()). Disabled by default;
  // configure_kv_quantizers() applies a recipe; `_amax` values found in the checkpoint are
  // kept and applied when the recipe enables the quantizer.
  quant::TensorQuantizer& k_quantizer(int layer) { return kq_[size_t(layer)]; }
  quant::TensorQuantizer& v_quantizer(int layer) { return vq_[size_t(layer)]; }
  const quant::TensorQuantizer& k_quantizer(int layer) const { return kq_[size_t(layer)]; }
  const quant::TensorQuantizer& v_quantizer(int layer) const { return vq_[size_t(layer)]; }
  // All K/V quantizers with their names: k0, v0, k1, v1, ...
  std::vector<std::pair<std::string, quant::TensorQuantizer*>> kv_quantizers();
  std::vector<std::pair<std::string, const quant::TensorQuantizer*>> kv_quantizers() const;
  // Configures every K/V quantizer from the recipe, then sets the `_amax` of the enabled,
  // non-constant ones from `amax` (name -> 0-d tensor, e.g. a --kv-amax file) or else from
  // the checkpoint's own `_amax` tensors. require_amax: an enabled calibrated quantizer
  // without an amax is an Error naming it (false for calibration).
  void configure_kv_quantizers(const quant::QuantRecipe& recipe,
                               const std::map<std::string, Tensor>& amax, bool require_amax);
  // Checks that every enabled quantizer can run (amax known, head_dim % 16 for NVFP4).
  void check_kv_quantizers() const;

  // Internal, for the forward/backward code.
  const LayerWeights& layer(int i) const { return layers_[i]; }
  const float* embed() const;
  const kernels::PackedB& lm_head() const { return lm_head_packed_; }
  const float* final_norm() const { return final_norm_; }
  const std::vector<float>& rope_inv_freq() const { return inv_freq_; }

 private:
  Model() = default;
  void init_layout();  // names, shapes; called once cfg_ is set
  void add_param(const std::string& name, Shape shape);

  io::HFConfig cfg_;
  DType dtype_ = DType::F32;
  std::vector<std::string> names_;
  std::map<std::string, Tensor> params_;
  std::vector<LayerWeights> layers_;
  kernels::PackedB lm_head_packed_;
  const float* final_norm_ = nullptr;
  std::vector<float> inv_freq_;
  std::vector<quant::TensorQuantizer> kq_, vq_;
  std::map<std::string, Tensor> checkpoint_amax_;  // "<...>_bmm_quantizer._amax" from the checkpoint
};

// "model.layers.{i}.self_attn.k_bmm_quantizer" (which = 'k' or 'v').
std::string kv_quantizer_name(int layer, char which);

// Validates a config for this model (families, GQA divisibility, head_dim) with clear errors.
void validate_config(const io::HFConfig& cfg, const std::string& label);

}  // namespace qarl::model
