// The rollout engine's weights in its own runtime layout (as vLLM keeps them), the compute
// model built from them, and the refit target that loads into them.
//
// Runtime tensors (checkpoint dtype), one per name:
//   model.embed_tokens.weight, model.norm.weight, lm_head.weight (untied only),
//   model.layers.{i}.input_layernorm.weight, .post_attention_layernorm.weight,
//   model.layers.{i}.self_attn.qkv_proj.weight   [q_dim + 2 kv_dim, H]  rows q;k;v
//   model.layers.{i}.self_attn.qkv_proj.bias     (Qwen2)               rows q;k;v
//   model.layers.{i}.self_attn.o_proj.weight, .q_norm.weight/.k_norm.weight (Qwen3),
//   model.layers.{i}.mlp.gate_up_proj.weight     [2 I, H]              rows gate;up
//   model.layers.{i}.mlp.down_proj.weight,
//   model.layers.{i}.self_attn.attn.{k,v}_bmm_quantizer._amax  (0-d; calibrated K/V only).
// HF names reach it through refit::NameMapper::dense() (q/k/v -> qkv_proj shards, gate/up ->
// gate_up_proj shards, ".attn." inserted for K/V amax), and every load, the first one from the
// checkpoint included, goes through refit::StrictLoader: complete, checked, all or nothing.
//
// The compute model (model::Model, what forward_tokens() runs) is refreshed from the runtime
// tensors after every commit: each HF parameter is the row range of its fused runtime tensor
// (rows of qkv_proj for q, ...), converted exactly to fp32; the model packs q;k;v and
// gate;up into fused GEMM operands again, so its forward runs the fused runtime weights with
// the dot products of the trainer's model in the same order (bitwise equal logits).
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qarl/model/model.h"
#include "qarl/quant/recipe.h"
#include "qarl/refit/loader.h"
#include "qarl/refit/target.h"

namespace qarl::rollout {

class RuntimeModel : public refit::RefitTarget {
 public:
  // Loads a checkpoint directory. K/V quantizers follow `recipe`; calibrated ones take their
  // `_amax` from `kv_amax` (HF-semantic names "model.layers.{i}.self_attn.k_bmm_quantizer._amax",
  // e.g. a --kv-amax file) or else from the checkpoint. A missing one is an Error.
  static std::unique_ptr<RuntimeModel> load(const std::string& dir, const quant::QuantRecipe& recipe,
                                            const std::map<std::string, Tensor>& kv_amax = {});

  const model::Model& model() const { return *model_; }
  DType dtype() const { return dtype_; }
  const std::map<std::string, Tensor>& tensors() const { return serving_; }
  const quant::QuantRecipe& recipe() const { return recipe_; }
  // HF name -> runtime name and rows, e.g. q_proj.weight -> qkv_proj.weight rows [0, q_dim).
  struct Slice {
    std::string runtime_name;
    int64_t row_offset = 0, rows = -1;  // rows -1: the whole tensor
  };
  Slice slice_of(const std::string& hf_name) const;

  // Hooks for the engine: `before_refit` may throw to refuse a refit (sequences in flight);
  // `after_commit` runs after the model was refreshed.
  void set_hooks(std::function<void()> before_refit, std::function<void()> after_commit);

  // RefitTarget
  std::vector<refit::RuntimeParam> runtime_params() const override { return params_; }
  void begin_stage() override;
  Tensor staged(const std::string& runtime_name) override;
  void commit() override;
  void abort() override;

 private:
  RuntimeModel() = default;
  void refresh_model();  // runtime tensors -> compute model (weights + K/V amax)

  std::unique_ptr<model::Model> model_;
  quant::QuantRecipe recipe_ = quant::QuantRecipe::none();
  DType dtype_ = DType::F32;
  std::vector<refit::RuntimeParam> params_;
  std::map<std::string, Tensor> serving_, staged_;
  refit::NameMapper mapper_ = refit::NameMapper::dense();
  std::function<void()> before_refit_, after_commit_;
};

// Reads a --kv-amax safetensors file: every tensor must be a one-element
// "*.{k,v}_bmm_quantizer._amax".
std::map<std::string, Tensor> load_kv_amax_file(const std::string& path);

}  // namespace qarl::rollout
