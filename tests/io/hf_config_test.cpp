// config.json parsing: the three families, both rope forms, and every rejected setting.
#include "qarl/io/hf_config.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "test_util.h"

namespace qarl::io {
namespace {

using json = nlohmann::json;

// Llama 3.1 8B's config.json (the legacy rope form).
json llama31() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256})");
}
// Qwen2.5-0.5B style.
json qwen2() {
  return json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896,
    "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 24,
    "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24,
    "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
    "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})");
}
// Qwen3-0.6B as transformers 5 writes it (rope_parameters, dtype, layer_types).
json qwen3_v5() {
  return json::parse(R"({
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "bos_token_id": 151643,
    "dtype": "bfloat16", "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 1024, "intermediate_size": 3072,
    "layer_types": ["full_attention", "full_attention"], "max_position_embeddings": 40960,
    "max_window_layers": 28, "model_type": "qwen3", "num_attention_heads": 16,
    "num_hidden_layers": 2, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
    "rope_parameters": {"rope_theta": 1000000, "rope_type": "default"},
    "sliding_window": null, "tie_word_embeddings": true, "use_cache": true,
    "use_sliding_window": false, "vocab_size": 151936})");
}

HFConfig parse(const json& j) { return parse_hf_config(j.dump(), "config.json"); }

void expect_bad(const json& j, const std::string& key, const std::string& fragment = "") {
  try {
    parse(j);
    ADD_FAILURE() << "accepted: " << j.dump();
  } catch (const Error& e) {
    EXPECT_EQ(e.file(), "config.json");
    EXPECT_EQ(e.key(), key) << e.what();
    if (!fragment.empty()) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  }
}

TEST(HFConfig, Llama31Legacy) {
  auto c = parse(llama31());
  EXPECT_EQ(c.family, ModelFamily::Llama);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.eos_token_id, 128001);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  // The older "type" key means the same as "rope_type".
  auto j = llama31();
  j["rope_scaling"].erase("rope_type");
  j["rope_scaling"]["type"] = "llama3";
  EXPECT_EQ(parse(j), c);
}

TEST(HFConfig, LlamaRopeParametersForm) {
  auto j = llama31();
  j.erase("rope_scaling");
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 8.0},
                          {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 8192}};
  EXPECT_EQ(parse(j), parse(llama31()));
  j["rope_theta"] = 10000.0;  // both forms present but disagreeing
  expect_bad(j, "rope_parameters.rope_theta", "disagrees");
}

TEST(HFConfig, Qwen2) {
  auto c = parse(qwen2());
  EXPECT_EQ(c.family, ModelFamily::Qwen2);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_EQ(c.rope_theta, 1e6);
  auto j = qwen2();
  j["use_sliding_window"] = true;
  expect_bad(j, "use_sliding_window", "sliding-window");
}

TEST(HFConfig, Qwen3TransformersV5) {
  auto c = parse(qwen3_v5());
  EXPECT_EQ(c.family, ModelFamily::Qwen3);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.head_dim, 128);  // explicit, != hidden/heads
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  auto j = qwen3_v5();
  j["layer_types"][1] = "sliding_attention";
  expect_bad(j, "layer_types[1]");
  j = qwen3_v5();
  j["rope_parameters"]["rope_type"] = "yarn";
  expect_bad(j, "rope_parameters.rope_type", "not supported");
}

TEST(HFConfig, RejectsUnsupported) {
  auto j = llama31(); j["model_type"] = "mistral"; expect_bad(j, "model_type");
  j = llama31(); j["architectures"] = {"LlamaForSequenceClassification"}; expect_bad(j, "architectures");
  j = llama31(); j["hidden_act"] = "gelu"; expect_bad(j, "hidden_act", "gelu");
  j = llama31(); j["mlp_bias"] = true; expect_bad(j, "mlp_bias");
  j = llama31(); j["rope_scaling"]["rope_type"] = "linear"; expect_bad(j, "rope_scaling.rope_type");
  j = llama31(); j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}}; expect_bad(j, "rope_scaling.type");
  j = llama31(); j["rope_scaling"].erase("low_freq_factor"); expect_bad(j, "rope_scaling.low_freq_factor");
  j = llama31(); j["rope_scaling"]["attention_factor"] = 1.1; expect_bad(j, "rope_scaling.attention_factor");
  j = llama31(); j.erase("hidden_size"); expect_bad(j, "hidden_size", "missing");
  j = llama31(); j["hidden_size"] = "4096"; expect_bad(j, "hidden_size", "integer");
  j = llama31(); j["num_key_value_heads"] = 5; expect_bad(j, "num_key_value_heads");
  j = llama31(); j["hidden_size"] = 4097; expect_bad(j, "head_dim");
  j = llama31(); j["torch_dtype"] = "float8"; expect_bad(j, "torch_dtype");
  j = llama31(); j["pretraining_tp"] = 2; expect_bad(j, "pretraining_tp");
  j = qwen2(); j["use_sliding_window"] = "no"; expect_bad(j, "use_sliding_window");
  EXPECT_THROW(parse_hf_config("{\"model_type\": \"llama\",", "config.json"), Error);
  EXPECT_THROW(parse_hf_config("{\"model_type\": \"llama\", \"model_type\": \"qwen2\"}", "c"), Error);
}

TEST(HFConfig, LlamaAttentionBiasAndDefaults) {
  auto j = llama31();
  j["attention_bias"] = true;
  j.erase("num_key_value_heads");
  j.erase("rope_scaling");
  j.erase("rope_theta");
  auto c = parse(j);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_EQ(c.num_key_value_heads, 32);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rope_scaling.type, "default");
}

TEST(HFConfig, JsonRoundTripAndLoadFromDir) {
  test::TempDir d;
  for (const json& j : {llama31(), qwen2(), qwen3_v5()}) {
    auto c = parse(j);
    write_file_atomic(d.file("config.json"), hf_config_to_json(c));
    EXPECT_EQ(load_hf_config(d.path()), c) << j["model_type"];
    EXPECT_EQ(load_hf_config(d.file("config.json")), c);
  }
  EXPECT_THROW(load_hf_config(d.file("nope.json")), Error);
}

}  // namespace
}  // namespace qarl::io
