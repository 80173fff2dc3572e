// Rollout side of a refit: HF-semantic name -> runtime name (+ shard), owned by the model
// family (reference-spec 3.3, design 4).
//
// Steps, in order, for one exported name:
//   1. prefix renames (first match at the start, e.g. "backbone." -> "model."), then substring
//      renames (all, in order, e.g. "A_log" -> "A"), then an optional family function
//      (vLLM's hf_to_vllm_mapper) that must return exactly one name;
//   2. a K/V amax name must still end with ".{k,v}_bmm_quantizer._amax" after step 1 (a
//      mapper that changes the suffix is an error); then the inner "attn." segment is inserted
//      before the suffix unless the name already ends with ".attn.<suffix>" (dot-delimited
//      guard: never inserted twice, never removed, a mapper-supplied ".attn" is kept);
//   3. stacked parameters: a dot-delimited segment such as ".q_proj." becomes ".qkv_proj."
//      with shard id "q" (weights, biases and input-quantizer amax alike);
//   4. the root (first dot segment) must be one the family declares, e.g. "model" or
//      "lm_head": unknown roots ("language_model", "vision_model", ...) are rejected, never
//      guessed;
//   5. names with a declared ignored suffix (e.g. "rotary_emb.inv_freq") map to nothing.
// Pipeline-stage filtering is not done here: the loader skips mapped names under the
// target's non-local prefixes (see target.h), so a locally owned name always has to load.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace qarl::refit {

struct StackedParam {
  std::string hf_segment;       // "q_proj"
  std::string runtime_segment;  // "qkv_proj"
  std::string shard_id;         // "q"
};

struct NameMapperConfig {
  std::string family;  // for messages
  std::vector<std::pair<std::string, std::string>> prefix_renames;
  std::vector<std::pair<std::string, std::string>> substr_renames;
  // Optional full-name mapper; must return exactly one name.
  std::function<std::vector<std::string>(const std::string&)> full_name_mapper;
  std::vector<StackedParam> stacked;
  std::vector<std::string> roots;
  std::vector<std::string> ignored_suffixes;
};

struct MappedName {
  std::string runtime_name;
  std::string shard_id;  // empty: the whole runtime tensor
  bool operator==(const MappedName&) const = default;
};

class NameMapper {
 public:
  explicit NameMapper(NameMapperConfig config);
  // nullopt only for ignored names; every other failure is an Error naming the tensor.
  std::optional<MappedName> map(const std::string& hf_name) const;
  const NameMapperConfig& config() const { return config_; }

  // Llama / Qwen2 / Qwen3 (vLLM-style runtime layout): roots model, lm_head; q/k/v ->
  // qkv_proj, gate/up -> gate_up_proj.
  static NameMapper dense();
  // Nemotron-H style hybrid: backbone. -> model., A_log -> A, embeddings -> embed_tokens;
  // K/V at backbone.layers.{i}.mixer.{k,v}_bmm_quantizer._amax.
  static NameMapper nemotron_h();

 private:
  NameMapperConfig config_;
};

// "model.layers.{i}.self_attn.attn.k_bmm_quantizer._amax" -> insertion of "attn." with the
// dot-delimited guard; returns the name unchanged when it is no K/V amax name.
std::string insert_kv_attn_segment(const std::string& name);

}  // namespace qarl::refit
