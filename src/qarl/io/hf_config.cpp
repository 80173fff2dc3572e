// config.json of the decoder families qarl runs. Anything qarl would compute differently
// from transformers (other activations, rope types, sliding windows, MLP biases) is an
// Error naming the file and the key, never silently ignored.
#include "qarl/io/hf_config.h"

#include <cmath>
#include <filesystem>
#include <limits>
#include <set>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/io/json_strict.h"

namespace qarl::io {

using json = nlohmann::json;

namespace {

struct Reader {
  const json& j;
  const std::string& label;
  std::string prefix;  // dotted path of j, for error keys

  std::string k(const std::string& key) const { return prefix.empty() ? key : prefix + "." + key; }
  const json* find(const std::string& key) const {
    auto it = j.find(key);
    return (it == j.end() || it->is_null()) ? nullptr : &*it;
  }
  int get_int(const std::string& key, std::optional<int> def, bool positive = true) const {
    const json* v = find(key);
    if (!v) {
      if (def) return *def;
      throw err("required key is missing").file(label).key(k(key));
    }
    if (!v->is_number_integer()) throw err("must be an integer, got {}", v->dump()).file(label).key(k(key));
    int64_t x = v->get<int64_t>();
    if (x > std::numeric_limits<int>::max() || x < (positive ? 1 : 0))
      throw err("{} is out of range", x).file(label).key(k(key));
    return int(x);
  }
  double get_double(const std::string& key, double def, bool positive = true) const {
    const json* v = find(key);
    if (!v) return def;
    if (!v->is_number()) throw err("must be a number, got {}", v->dump()).file(label).key(k(key));
    double x = v->get<double>();
    if (!std::isfinite(x) || (positive && x <= 0)) throw err("{} is out of range", x).file(label).key(k(key));
    return x;
  }
  bool get_bool(const std::string& key, bool def) const {
    const json* v = find(key);
    if (!v) return def;
    if (!v->is_boolean()) throw err("must be true or false, got {}", v->dump()).file(label).key(k(key));
    return v->get<bool>();
  }
  std::optional<std::string> get_string(const std::string& key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) throw err("must be a string, got {}", v->dump()).file(label).key(k(key));
    return v->get<std::string>();
  }
};

// A rope dict from either form: legacy rope_scaling ({"rope_type"|"type": ..., factor, ...},
// rope_theta outside) or transformers 5 rope_parameters ({"rope_type", "rope_theta", ...}).
RopeScaling parse_rope(const json& r, const std::string& label, const std::string& where,
                       bool theta_inside, double* theta) {
  if (!r.is_object()) throw err("must be an object, got {}", r.dump()).file(label).key(where);
  Reader rd{r, label, where};
  auto t1 = rd.get_string("rope_type"), t2 = rd.get_string("type");
  if (t1 && t2 && *t1 != *t2)
    throw err("'rope_type' is '{}' but 'type' is '{}'", *t1, *t2).file(label).key(where);
  RopeScaling s;
  s.type = t1 ? *t1 : t2 ? *t2 : "default";
  std::set<std::string> allowed = {"rope_type", "type"};
  if (theta_inside) {
    allowed.insert("rope_theta");
    *theta = rd.get_double("rope_theta", *theta);
  }
  if (s.type == "llama3") {
    for (const char* key : {"factor", "low_freq_factor", "high_freq_factor",
                            "original_max_position_embeddings"}) {
      if (!rd.find(key)) throw err("llama3 rope needs this key").file(label).key(rd.k(key));
      allowed.insert(key);
    }
    s.factor = rd.get_double("factor", 1.0);
    s.low_freq_factor = rd.get_double("low_freq_factor", 1.0);
    s.high_freq_factor = rd.get_double("high_freq_factor", 4.0);
    s.original_max_position_embeddings = rd.get_double("original_max_position_embeddings", 8192);
    if (s.high_freq_factor <= s.low_freq_factor)
      throw err("high_freq_factor must exceed low_freq_factor").file(label).key(rd.k("high_freq_factor"));
  } else if (s.type != "default") {
    throw err("rope type '{}' is not supported (only default and llama3)", s.type)
        .file(label).key(rd.k(t1 ? "rope_type" : "type"));
  }
  for (auto it = r.begin(); it != r.end(); ++it)
    if (!allowed.count(it.key()) && !it->is_null())
      throw err("unsupported rope parameter for rope type '{}'", s.type).file(label).key(rd.k(it.key()));
  return s;
}

}  // namespace

std::string family_name(ModelFamily f) {
  switch (f) {
    case ModelFamily::Llama: return "llama";
    case ModelFamily::Qwen2: return "qwen2";
    case ModelFamily::Qwen3: return "qwen3";
  }
  return "?";
}

HFConfig parse_hf_config(const std::string& json_text, const std::string& label) {
  json j = parse_json_strict_sorted(json_text, label);
  if (!j.is_object()) throw err("config is not a JSON object").file(label);
  Reader rd{j, label, ""};
  HFConfig c;
  auto mt = rd.get_string("model_type");
  if (!mt) throw err("required key is missing").file(label).key("model_type");
  c.model_type = *mt;
  std::string expected_arch;
  if (c.model_type == "llama") { c.family = ModelFamily::Llama; expected_arch = "LlamaForCausalLM"; }
  else if (c.model_type == "qwen2") { c.family = ModelFamily::Qwen2; expected_arch = "Qwen2ForCausalLM"; }
  else if (c.model_type == "qwen3") { c.family = ModelFamily::Qwen3; expected_arch = "Qwen3ForCausalLM"; }
  else throw err("model_type '{}' is not supported (llama, qwen2, qwen3)", c.model_type).file(label).key("model_type");
  c.architecture = expected_arch;
  if (const json* a = rd.find("architectures")) {
    if (!a->is_array() || a->size() != 1 || !(*a)[0].is_string())
      throw err("must be a list of one architecture name, got {}", a->dump()).file(label).key("architectures");
    c.architecture = (*a)[0].get<std::string>();
    if (c.architecture != expected_arch)
      throw err("architecture '{}' is not supported for model_type '{}' (expected {})",
                c.architecture, c.model_type, expected_arch).file(label).key("architectures");
  }
  auto act = rd.get_string("hidden_act");
  if (act && *act != "silu")
    throw err("hidden_act '{}' is not supported (only silu)", *act).file(label).key("hidden_act");

  c.vocab_size = rd.get_int("vocab_size", std::nullopt);
  c.hidden_size = rd.get_int("hidden_size", std::nullopt);
  c.intermediate_size = rd.get_int("intermediate_size", std::nullopt);
  c.num_hidden_layers = rd.get_int("num_hidden_layers", std::nullopt);
  c.num_attention_heads = rd.get_int("num_attention_heads", std::nullopt);
  c.num_key_value_heads = rd.get_int("num_key_value_heads", c.num_attention_heads);
  c.max_position_embeddings = rd.get_int("max_position_embeddings", std::nullopt);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    throw err("num_attention_heads {} is not a multiple of num_key_value_heads {}",
              c.num_attention_heads, c.num_key_value_heads).file(label).key("num_key_value_heads");
  if (rd.find("head_dim")) {
    c.head_dim = rd.get_int("head_dim", std::nullopt);
  } else {
    if (c.hidden_size % c.num_attention_heads != 0)
      throw err("hidden_size {} is not divisible by num_attention_heads {} and no head_dim is given",
                c.hidden_size, c.num_attention_heads).file(label).key("head_dim");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.head_dim % 2 != 0) throw err("head_dim {} must be even for rope", c.head_dim).file(label).key("head_dim");
  c.rms_norm_eps = rd.get_double("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = rd.get_bool("tie_word_embeddings", false);

  // Rope: legacy keys, the transformers 5 form, or both when they agree.
  double theta_legacy = rd.get_double("rope_theta", 10000.0);
  std::optional<RopeScaling> legacy;
  if (const json* rs = rd.find("rope_scaling")) {
    double unused = theta_legacy;
    legacy = parse_rope(*rs, label, "rope_scaling", false, &unused);
  }
  if (const json* rp = rd.find("rope_parameters")) {
    double theta = theta_legacy;
    RopeScaling s = parse_rope(*rp, label, "rope_parameters", true, &theta);
    if (rd.find("rope_theta") && rp->contains("rope_theta") && theta != theta_legacy)
      throw err("rope_parameters.rope_theta {} disagrees with rope_theta {}", theta, theta_legacy)
          .file(label).key("rope_parameters.rope_theta");
    if (legacy && !(*legacy == s))
      throw err("rope_parameters disagrees with rope_scaling").file(label).key("rope_parameters");
    c.rope_theta = theta;
    c.rope_scaling = s;
  } else {
    c.rope_theta = theta_legacy;
    if (legacy) c.rope_scaling = *legacy;
  }

  if (c.family == ModelFamily::Llama) {
    c.attention_bias = rd.get_bool("attention_bias", false);
    if (rd.get_bool("mlp_bias", false))
      throw err("mlp_bias true is not supported").file(label).key("mlp_bias");
    int tp = rd.get_int("pretraining_tp", 1);
    if (tp != 1) throw err("pretraining_tp {} is not supported (only 1)", tp).file(label).key("pretraining_tp");
  } else {
    c.attention_bias = c.family == ModelFamily::Qwen2 ? true : rd.get_bool("attention_bias", false);
    c.qk_norm = c.family == ModelFamily::Qwen3;
    if (rd.get_bool("use_sliding_window", false))
      throw err("sliding-window attention is not supported").file(label).key("use_sliding_window");
  }
  if (const json* lt = rd.find("layer_types")) {
    if (!lt->is_array()) throw err("must be a list").file(label).key("layer_types");
    for (size_t i = 0; i < lt->size(); ++i)
      if (!(*lt)[i].is_string() || (*lt)[i].get<std::string>() != "full_attention")
        throw err("layer type {} is not supported (only full_attention)", (*lt)[i].dump())
            .file(label).key("layer_types[" + std::to_string(i) + "]");
  }

  auto dt = rd.get_string("dtype");  // transformers 5 spelling
  auto tdt = rd.get_string("torch_dtype");
  if (dt && tdt && *dt != *tdt)
    throw err("dtype '{}' disagrees with torch_dtype '{}'", *dt, *tdt).file(label).key("dtype");
  if (dt || tdt) {
    c.torch_dtype = dt ? *dt : *tdt;
    if (c.torch_dtype != "bfloat16" && c.torch_dtype != "float16" && c.torch_dtype != "float32")
      throw err("dtype '{}' is not supported (bfloat16, float16, float32)", c.torch_dtype)
          .file(label).key(dt ? "dtype" : "torch_dtype");
  }
  if (rd.find("bos_token_id")) c.bos_token_id = rd.get_int("bos_token_id", std::nullopt, false);
  if (const json* e = rd.find("eos_token_id")) {
    if (e->is_array()) {
      for (size_t i = 0; i < e->size(); ++i) {
        const json& x = (*e)[i];
        if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > std::numeric_limits<int>::max())
          throw err("must be non-negative integers, got {}", x.dump()).file(label).key("eos_token_id");
        c.eos_token_ids.push_back(int(x.get<int64_t>()));
      }
      if (c.eos_token_ids.empty()) throw err("empty list").file(label).key("eos_token_id");
    } else {
      c.eos_token_ids.push_back(rd.get_int("eos_token_id", std::nullopt, false));
    }
    c.eos_token_id = c.eos_token_ids[0];
  }
  return c;
}

HFConfig load_hf_config(const std::string& path) {
  std::string p = path;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) p = (std::filesystem::path(path) / "config.json").string();
  return parse_hf_config(read_file(p), p);
}

std::string hf_config_to_json(const HFConfig& c) {
  json j = json::object();
  j["architectures"] = json::array({c.architecture});
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type == "default") {
    j["rope_scaling"] = nullptr;
  } else {
    j["rope_scaling"] = json::object({{"rope_type", c.rope_scaling.type},
                                      {"factor", c.rope_scaling.factor},
                                      {"low_freq_factor", c.rope_scaling.low_freq_factor},
                                      {"high_freq_factor", c.rope_scaling.high_freq_factor},
                                      {"original_max_position_embeddings",
                                       c.rope_scaling.original_max_position_embeddings}});
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.family == ModelFamily::Llama) {
    j["attention_bias"] = c.attention_bias;
    j["mlp_bias"] = false;
  } else {
    if (c.family == ModelFamily::Qwen3) j["attention_bias"] = c.attention_bias;
    j["use_sliding_window"] = false;
  }
  j["torch_dtype"] = c.torch_dtype;
  if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
  if (c.eos_token_ids.size() > 1) j["eos_token_id"] = c.eos_token_ids;
  else if (c.eos_token_id) j["eos_token_id"] = *c.eos_token_id;
  return j.dump(2) + "\n";
}

bool operator==(const RopeScaling& a, const RopeScaling& b) {
  if (a.type != b.type) return false;
  if (a.type == "default") return true;  // the llama3 fields mean nothing for default
  return a.factor == b.factor && a.low_freq_factor == b.low_freq_factor &&
         a.high_freq_factor == b.high_freq_factor &&
         a.original_max_position_embeddings == b.original_max_position_embeddings;
}

bool operator==(const HFConfig& a, const HFConfig& b) {
  return a.architecture == b.architecture && a.family == b.family && a.model_type == b.model_type &&
         a.vocab_size == b.vocab_size && a.hidden_size == b.hidden_size &&
         a.intermediate_size == b.intermediate_size && a.num_hidden_layers == b.num_hidden_layers &&
         a.num_attention_heads == b.num_attention_heads &&
         a.num_key_value_heads == b.num_key_value_heads && a.head_dim == b.head_dim &&
         a.max_position_embeddings == b.max_position_embeddings && a.rms_norm_eps == b.rms_norm_eps &&
         a.rope_theta == b.rope_theta && a.rope_scaling == b.rope_scaling &&
         a.tie_word_embeddings == b.tie_word_embeddings && a.attention_bias == b.attention_bias &&
         a.qk_norm == b.qk_norm && a.torch_dtype == b.torch_dtype &&
         a.bos_token_id == b.bos_token_id && a.eos_token_id == b.eos_token_id &&
         a.eos_token_ids == b.eos_token_ids;
}

}  // namespace qarl::io
