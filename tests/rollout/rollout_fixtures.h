// Shared pieces of the rollout tests: tiny random-init checkpoints, the K/V recipes of
// reference-spec 5.1, and the trainer-side scoring the engine must match bitwise.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "qarl/io/hf_config.h"
#include "qarl/model/model.h"
#include "qarl/quant/recipe.h"
#include "qarl/rollout/engine.h"

namespace qarl::rollout::test {

enum class KvRecipe { None, Fp8Constant, Fp8Calibrated, Nvfp4 };
const char* recipe_name(KvRecipe r);
quant::QuantRecipe make_recipe(KvRecipe r);

// Qwen3-like (q/k norm, tied embeddings), Qwen2-like (q/k/v bias, untied) or Llama; head_dim
// 16 so that NVFP4 applies; vocab 61.
io::HFConfig tiny_config(io::ModelFamily family = io::ModelFamily::Qwen3, int layers = 2);

// Calibrated K/V amax per quantizer ("model.layers.{i}.self_attn.k_bmm_quantizer._amax"),
// different per layer and side, in `dtype`.
std::map<std::string, Tensor> tiny_amax(int layers, DType dtype = DType::F32);

// Saves a random-init model (config.json + model.safetensors) into dir.
void save_tiny_model(const std::string& dir, const io::HFConfig& cfg, uint64_t seed,
                     DType dtype = DType::F32);

// The trainer's logprobs of every generated token of `out`: Model::load + the recipe and amax,
// score_sequences on prompt + tokens at the temperature (1 for greedy).
std::vector<std::vector<float>> trainer_logprobs(const std::string& dir, const quant::QuantRecipe& recipe,
                                                 const std::map<std::string, Tensor>& amax,
                                                 const std::vector<SampleOutput>& outs,
                                                 const std::vector<float>& temperatures);

// A mix of requests: prompt lengths 1..max_prompt, n in {1, 3}, greedy / temperature / top-k /
// top-p / min-p, some with stop tokens.
std::vector<GenRequest> mixed_requests(int count, int max_prompt, int max_new, int vocab, uint64_t seed);

}  // namespace qarl::rollout::test
