#include "qarl/refit/recipe_guard.h"

#include <fnmatch.h>
#include <regex>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/io/yaml_recipe.h"

namespace qarl::refit {
namespace {

using json = nlohmann::json;

json scalar_to_json(const std::string& s) {
  static const std::regex exmy("^[eE]([0-9]+)[mM]([0-9]+)$");
  static const std::regex integer("^[-+]?[0-9]+$");
  static const std::regex real("^[-+]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?$");
  if (s == "true" || s == "True") return true;
  if (s == "false" || s == "False") return false;
  // A number out of range for int / int64 / double (stoi, stoll, stod throw
  // std::out_of_range; found by fuzz/quant_recipe_fuzz) stays text.
  try {
    std::smatch m;
    if (std::regex_match(s, m, exmy)) return json::array({std::stoi(m[1]), std::stoi(m[2])});
    if (std::regex_match(s, integer)) return std::stoll(s);
    if (std::regex_match(s, real)) return std::stod(s);
  } catch (const std::out_of_range&) {
  }
  return s;
}

// The canonical text of a value. dump() throws json's type_error on a string that is not
// valid UTF-8; yaml-cpp produced one from valid UTF-8 text (a NUL in a plain scalar became a
// stray 0xA0; found by fuzz/quant_recipe_fuzz). io::parse_yaml now refuses such characters;
// should another path produce invalid bytes, they become U+FFFD, the same way on both ends
// of a comparison, instead of an exception.
std::string canonical(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json yaml_to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Scalar: return scalar_to_json(n.as<std::string>());
    case YAML::NodeType::Sequence: {
      json a = json::array();
      for (const auto& x : n) a.push_back(yaml_to_json(x));
      return a;
    }
    case YAML::NodeType::Map: {
      json o = json::object();  // std::map: keys sorted, so dump() is canonical
      for (const auto& kv : n) o[kv.first.as<std::string>()] = yaml_to_json(kv.second);
      return o;
    }
    default: return nullptr;
  }
}

bool truthy(const YAML::Node& n, const std::string& source) {
  json v = yaml_to_json(n);
  if (!v.is_boolean()) throw err("'enable' must be true or false").file(source);
  return v.get<bool>();
}

NormalizedRecipe::Entry entry_from(const std::string& pattern, const YAML::Node& body,
                                   const std::string& source) {
  NormalizedRecipe::Entry e;
  e.pattern = pattern;
  if (body && body.IsMap()) {
    YAML::Node cfg = body["cfg"] ? body["cfg"] : YAML::Node();
    if (body["enable"]) e.enable = truthy(body["enable"], source);
    if (!body["cfg"]) {  // mapping form: the body itself is the cfg (minus enable)
      json j = yaml_to_json(body);
      j.erase("enable");
      j.erase("quantizer_name");
      if (!j.empty()) e.cfg = canonical(j);
    } else {
      e.cfg = canonical(yaml_to_json(cfg));
    }
  }
  if (!e.enable && !e.cfg.empty()) e.enable = true;
  return e;
}

}  // namespace

NormalizedRecipe NormalizedRecipe::none() {
  NormalizedRecipe r;
  r.source = "<none>";
  r.entries.push_back({"*", false, ""});
  return r;
}

NormalizedRecipe NormalizedRecipe::parse(const std::string& yaml_text, const std::string& source) {
  // The shared strict loader (duplicate and non-scalar keys refused, line and column).
  YAML::Node root = io::parse_yaml(yaml_text, source);
  if (root && root.IsMap() && root["quantize"]) root = root["quantize"];
  if (!root || !root.IsMap() || !root["quant_cfg"])
    throw err("no quant_cfg (expected a ModelOpt recipe, optionally under 'quantize:')").file(source);
  NormalizedRecipe r;
  r.source = source;
  if (root["algorithm"]) {
    YAML::Node a = root["algorithm"];
    r.algorithm = a.IsScalar() ? a.as<std::string>() : canonical(yaml_to_json(a));
  }
  YAML::Node q = root["quant_cfg"];
  if (q.IsSequence()) {
    for (const auto& item : q) {
      if (!item.IsMap() || !item["quantizer_name"] || !item["quantizer_name"].IsScalar())
        throw err("every quant_cfg entry needs a quantizer_name (a string)").file(source);
      r.entries.push_back(entry_from(item["quantizer_name"].as<std::string>(), item, source));
    }
  } else if (q.IsMap()) {
    for (const auto& kv : q) {
      std::string pat = kv.first.as<std::string>();
      r.entries.push_back(entry_from(pat == "default" ? "*" : pat, kv.second, source));
    }
  } else {
    throw err("quant_cfg must be a list or a mapping").file(source);
  }
  return r;
}

NormalizedRecipe NormalizedRecipe::from_file(const std::string& path) {
  return parse(read_file(path), path);
}

NormalizedRecipe::Resolved NormalizedRecipe::resolve(const std::string& name) const {
  Resolved r;  // unmatched quantizers stay disabled
  for (const auto& e : entries) {
    if (fnmatch(e.pattern.c_str(), name.c_str(), 0) != 0) continue;
    if (e.enable) r.enabled = *e.enable;
    if (!e.cfg.empty()) r.cfg = e.cfg;
  }
  if (!r.enabled) r.cfg.clear();  // a disabled quantizer's cfg does not matter
  return r;
}

const std::vector<std::string>& recipe_probe_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const char* parent : {"model.layers.0.self_attn", "model.layers.0.self_attn.attn",
                               "decoder.layers.0.self_attention.core_attention",
                               "backbone.layers.0.mixer", "model.layers.0.mixer.attn",
                               "language_model.model.layers.0.self_attn"})
      for (const char* q : {"k_bmm_quantizer", "v_bmm_quantizer", "q_bmm_quantizer"})
        v.push_back(std::string(parent) + "." + q);
    for (const char* m : {"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.o_proj",
                          "model.layers.0.self_attn.qkv_proj", "model.layers.0.mlp.gate_proj",
                          "model.layers.0.mlp.down_proj", "model.layers.0.mlp.gate_up_proj",
                          "decoder.layers.0.self_attention.linear_qkv", "lm_head"})
      for (const char* q : {"input_quantizer", "weight_quantizer", "output_quantizer"})
        v.push_back(std::string(m) + "." + q);
    return v;
  }();
  return names;
}

bool is_kv_quantizer_name(const std::string& name) {
  auto ends = [&](const std::string& s) {
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  return ends("k_bmm_quantizer") || ends("v_bmm_quantizer");
}

RecipeGuardResult check_same_recipe(const NormalizedRecipe& trainer, const NormalizedRecipe& rollout,
                                    bool allow_rollout_only_experiment) {
  RecipeGuardResult out;
  if (trainer.same_as(rollout)) {
    out.identical = true;
    return out;
  }
  // First differing K/V quantizer and first other one, for the message.
  std::string first_kv_diff, first_other_diff;
  bool only_kv_differs = true, trainer_kv_off = true, rollout_kv_const_fp8 = true;
  bool any_kv = false;
  for (const auto& name : recipe_probe_names()) {
    auto t = trainer.resolve(name), r = rollout.resolve(name);
    bool kv = is_kv_quantizer_name(name);
    if (kv) {
      if (t.enabled) trainer_kv_off = false;
      if (r.enabled) {
        any_kv = true;
        json c = json::parse(r.cfg.empty() ? "{}" : r.cfg);
        bool fp8 = c.value("num_bits", json()) == json::array({4, 3}) && !c.contains("block_sizes");
        if (!(fp8 && c.value("use_constant_amax", false) == true)) rollout_kv_const_fp8 = false;
      }
    }
    if (!(t == r)) {
      std::string& slot = kv ? first_kv_diff : first_other_diff;
      if (slot.empty())
        slot = fmt::format("{}: trainer {} {}, rollout {} {}", name,
                           t.enabled ? "enabled" : "disabled", t.cfg,
                           r.enabled ? "enabled" : "disabled", r.cfg);
      if (!kv) only_kv_differs = false;
    }
  }
  std::string first_diff = first_kv_diff;
  if (!first_other_diff.empty())
    first_diff += (first_diff.empty() ? "" : "; ") + first_other_diff;
  if (trainer.algorithm != rollout.algorithm && first_diff.empty())
    first_diff = fmt::format("algorithm: trainer {}, rollout {}", trainer.algorithm, rollout.algorithm);
  if (first_diff.empty())
    first_diff = "the recipes differ in quant_cfg entries that no known quantizer name resolves "
                 "to differently (compare the files)";
  out.note = first_diff;
  if (only_kv_differs && trainer_kv_off && any_kv && rollout_kv_const_fp8) {
    out.rollout_only_constant_fp8 = true;
    out.note = "rollout-only FP8 K/V with constant amax (allowed): " + first_diff;
    return out;
  }
  if (allow_rollout_only_experiment) {
    out.rollout_only_experiment = true;
    out.note = "ROLLOUT-ONLY EXPERIMENT (trainer and rollout recipes differ): " + first_diff;
    return out;
  }
  throw usage_err("trainer recipe '{}' and rollout recipe '{}' differ ({}); use the same recipe "
                  "on both sides (the only exception is rollout-only FP8 K/V with "
                  "use_constant_amax), or opt in to a rollout-only experiment explicitly",
                  trainer.source, rollout.source, first_diff);
}

}  // namespace qarl::refit
