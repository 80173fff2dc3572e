// What `qarl score` and `qarl calibrate` share: reading token sequences, K/V amax files,
// configuring a model's quantizers from a recipe, and writing calibrated checkpoints.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "qarl/core/tensor.h"
#include "qarl/model/model.h"

namespace qarl::model {

// JSONL, one JSON array of token ids per line. Errors name the file and line.
std::vector<std::vector<int32_t>> read_token_sequences(const std::string& path);

// `_amax` tensors of K/V quantizers from a .safetensors file (or checkpoint dir). Every tensor
// must be a one-element `model.layers.{i}.self_attn.{k,v}_bmm_quantizer._amax` of a layer the
// model has; anything else is an Error naming it.
std::map<std::string, Tensor> load_kv_amax_file(const std::string& path, const Model& m);

// {"logprobs": [...]} with %.9g numbers (round-trips float32).
std::string logprobs_json_line(const std::vector<float>& lp);

// Max-calibrates every enabled, non-constant K/V quantizer over the sequences and returns the
// (name, amax) table. Quantizers must be configured (configure_kv_quantizers) beforehand.
std::vector<std::pair<std::string, float>> calibrate_kv(Model& m,
                                                        const std::vector<std::vector<int32_t>>& seqs);

// Writes a complete checkpoint directory OUT (config, weights, `_amax`, and the tokenizer and
// generation files found in SRC) atomically: built in a temporary sibling and renamed. OUT
// must not exist or be an empty directory.
void save_checkpoint_dir(const Model& m, const std::string& src_dir, const std::string& out_dir);

}  // namespace qarl::model
