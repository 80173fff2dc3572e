// Hugging Face config.json for the decoder families qarl serves: Llama, Qwen2, Qwen3.
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace qarl::io {

enum class ModelFamily { Llama, Qwen2, Qwen3 };

struct RopeScaling {
  std::string type = "default";  // "default" | "llama3" (others are rejected)
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  double original_max_position_embeddings = 8192;
};

struct HFConfig {
  std::string architecture;  // e.g. "Qwen3ForCausalLM"
  ModelFamily family = ModelFamily::Llama;
  std::string model_type;    // "llama" | "qwen2" | "qwen3"
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;
  int head_dim = 0;          // explicit, or hidden_size / num_attention_heads
  int max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // Qwen2: true (q/k/v bias); Llama: config key
  bool qk_norm = false;         // Qwen3
  std::string torch_dtype = "float32";  // "bfloat16" | "float16" | "float32"
  std::optional<int> bos_token_id, eos_token_id;  // eos_token_id: the first of eos_token_ids
  std::vector<int> eos_token_ids;                  // config.json may list several
};

bool operator==(const RopeScaling& a, const RopeScaling& b);
bool operator==(const HFConfig& a, const HFConfig& b);

// Parses and validates; unsupported architectures, activations or rope types are Errors
// naming the file and key. Accepts rope_theta/rope_scaling and the newer rope_parameters.
HFConfig parse_hf_config(const std::string& json_text, const std::string& label);
HFConfig load_hf_config(const std::string& path);  // a config.json file or a checkpoint dir
// For saving checkpoints qarl makes: the older rope_theta/rope_scaling keys, which every
// transformers version reads. parse_hf_config(hf_config_to_json(c)) == c.
std::string hf_config_to_json(const HFConfig& c);
std::string family_name(ModelFamily f);  // "llama" | "qwen2" | "qwen3"

}  // namespace qarl::io
