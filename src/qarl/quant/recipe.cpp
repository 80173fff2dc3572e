#include "qarl/quant/recipe.h"

#include <yaml-cpp/yaml.h>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/io/yaml_recipe.h"
#include "qarl/quant/fnmatch.h"

namespace qarl::quant {

namespace {

struct Ctx {
  const std::string& file;
  Error fail(const std::string& key, const std::string& msg) const {
    return Error(msg).file(file).key(key);
  }
};

std::string yaml_text(const YAML::Node& n) {
  YAML::Emitter e;
  e.SetMapFormat(YAML::Flow);
  e.SetSeqFormat(YAML::Flow);
  e << n;
  return e.c_str();
}

bool as_bool(const YAML::Node& n, const Ctx& c, const std::string& key) {
  bool v;
  if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v))
    throw c.fail(key, "expected true or false, got '" + yaml_text(n) + "'");
  return v;
}

// "e4m3" | [4, 3] -> (4,3); "e2m1" | [2, 1] -> (2,1). Other values: Error.
std::pair<int, int> as_exmy(const YAML::Node& n, const Ctx& c, const std::string& key) {
  if (n.IsScalar()) {
    std::string s = n.as<std::string>();
    if (s == "e4m3" || s == "E4M3") return {4, 3};
    if (s == "e2m1" || s == "E2M1") return {2, 1};
  } else if (n.IsSequence() && n.size() == 2) {
    int e, m;
    if (YAML::convert<int>::decode(n[0], e) && YAML::convert<int>::decode(n[1], m) &&
        ((e == 4 && m == 3) || (e == 2 && m == 1)))
      return {e, m};
  }
  throw c.fail(key, "unsupported value '" + yaml_text(n) +
                        "' (qarl supports e4m3 / [4, 3] and e2m1 / [2, 1])");
}

void check_block_sizes(const YAML::Node& n, const Ctx& c) {
  const std::string key = "block_sizes";
  if (!n.IsMap()) throw c.fail(key, "expected a mapping, got '" + yaml_text(n) + "'");
  bool has_last = false;
  for (const auto& kv : n) {
    std::string k = kv.first.as<std::string>();
    if (k == "-1") {
      int v;
      if (!YAML::convert<int>::decode(kv.second, v) || v != 16)
        throw c.fail(key + ".-1", "unsupported block size '" + yaml_text(kv.second) +
                                      "' (qarl supports 16)");
      has_last = true;
    } else if (k == "type") {
      if (!kv.second.IsScalar() || kv.second.as<std::string>() != "dynamic")
        throw c.fail(key + ".type", "unsupported value '" + yaml_text(kv.second) +
                                        "' (qarl supports dynamic)");
    } else if (k == "scale_bits") {
      if (as_exmy(kv.second, c, key + ".scale_bits") != std::pair<int, int>{4, 3})
        throw c.fail(key + ".scale_bits", "unsupported value (qarl supports e4m3)");
    } else {
      throw c.fail(key + "." + k, "unsupported block_sizes key (qarl supports -1, type, scale_bits)");
    }
  }
  if (!has_last) throw c.fail(key, "needs -1: 16 (blocks along the last dimension)");
  if (!n["type"]) throw c.fail(key, "needs type: dynamic");
  if (!n["scale_bits"]) throw c.fail(key, "needs scale_bits: e4m3");
}

// A cfg mapping -> full attributes (defaults for unspecified keys, as ModelOpt's
// QuantizerAttributeConfig). Returns the config and the `enable` given inside cfg, if any.
std::pair<QuantizerConfig, std::optional<bool>> parse_cfg(const YAML::Node& n, const Ctx& c,
                                                          const std::string& where) {
  if (!n.IsMap()) throw c.fail(where, "cfg must be a mapping, got '" + yaml_text(n) + "'");
  QuantizerConfig q;
  q.enable = true;
  std::optional<bool> enable;
  std::optional<std::pair<int, int>> bits;
  bool has_blocks = false;
  for (const auto& kv : n) {
    std::string k = kv.first.as<std::string>();
    std::string key = where + "." + k;
    if (k == "num_bits") {
      bits = as_exmy(kv.second, c, key);
    } else if (k == "block_sizes") {
      if (!kv.second.IsNull()) { check_block_sizes(kv.second, c); has_blocks = true; }
    } else if (k == "use_constant_amax") {
      q.use_constant_amax = as_bool(kv.second, c, key);
    } else if (k == "pass_through_bwd") {
      q.pass_through_bwd = as_bool(kv.second, c, key);
    } else if (k == "axis") {
      if (!kv.second.IsNull())
        throw c.fail(key, "unsupported value '" + yaml_text(kv.second) +
                              "' (only per-tensor, axis: null, is supported)");
    } else if (k == "enable") {
      enable = as_bool(kv.second, c, key);
    } else {
      throw c.fail(key, "unsupported quantizer attribute");
    }
  }
  if (!bits)
    throw c.fail(where, "cfg has no num_bits (ModelOpt's default, 8-bit integer, is not supported)");
  if (*bits == std::pair<int, int>{4, 3}) {
    if (has_blocks) throw c.fail(where + ".block_sizes", "block scaling with e4m3 is not supported");
    q.format = Format::FP8;
    q.block_size = 0;
  } else {
    if (!has_blocks)
      throw c.fail(where, "e2m1 needs block_sizes {-1: 16, type: dynamic, scale_bits: e4m3}");
    q.format = Format::NVFP4;
    q.block_size = kNvfp4BlockSize;
  }
  return {q, enable};
}

RecipeEntry make_entry(const std::string& pattern, std::optional<bool> enable,
                       const YAML::Node* cfg, const Ctx& c, const std::string& where) {
  RecipeEntry e;
  e.quantizer_name = pattern;
  e.enable = enable;
  if (cfg && !cfg->IsNull()) {
    auto [q, inner_enable] = parse_cfg(*cfg, c, where + ".cfg");
    if (!e.enable) e.enable = inner_enable;
    q.enable = e.enable.value_or(true);
    e.cfg = q;
  }
  if (!e.enable && !e.cfg) throw c.fail(where, "entry needs at least one of cfg or enable");
  return e;
}

std::vector<RecipeEntry> parse_list(const YAML::Node& list, const Ctx& c) {
  std::vector<RecipeEntry> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node& item = list[i];
    std::string where = "quant_cfg[" + std::to_string(i) + "]";
    if (!item.IsMap()) throw c.fail(where, "entry must be a mapping");
    std::optional<std::string> name;
    std::optional<bool> enable;
    YAML::Node cfg;
    for (const auto& kv : item) {
      std::string k = kv.first.as<std::string>();
      if (k == "quantizer_name") {
        if (!kv.second.IsScalar()) throw c.fail(where + ".quantizer_name", "must be a string");
        name = kv.second.as<std::string>();
      } else if (k == "enable") {
        enable = as_bool(kv.second, c, where + ".enable");
      } else if (k == "cfg") {
        if (kv.second.IsSequence())
          throw c.fail(where + ".cfg", "sequential (list) cfg is not supported");
        cfg = kv.second;
      } else if (k == "parent_class") {
        throw c.fail(where + ".parent_class", "parent_class matching is not supported");
      } else {
        throw c.fail(where + "." + k, "unknown quant_cfg entry key");
      }
    }
    if (!name) throw c.fail(where, "entry has no quantizer_name");
    out.push_back(make_entry(*name, enable, cfg ? &cfg : nullptr, c, where));
  }
  return out;
}

// Older mapping form: {pattern: attrs}. "default" -> "*" first. A value with only
// `enable` toggles; otherwise the value is a full cfg (enable taken from inside it).
std::vector<RecipeEntry> parse_dict(const YAML::Node& map, const Ctx& c) {
  std::vector<RecipeEntry> out;
  auto add = [&](const std::string& pattern, const YAML::Node& v) {
    std::string where = "quant_cfg." + pattern;
    if (!v.IsMap()) throw c.fail(where, "value must be a mapping");
    if (v.size() == 1 && v["enable"]) {
      out.push_back(make_entry(pattern == "default" ? "*" : pattern,
                               as_bool(v["enable"], c, where + ".enable"), nullptr, c, where));
    } else {
      out.push_back(make_entry(pattern == "default" ? "*" : pattern, std::nullopt, &v, c, where));
    }
  };
  if (map["default"]) add("default", map["default"]);
  for (const auto& kv : map) {
    std::string k = kv.first.as<std::string>();
    if (k != "default") add(k, kv.second);
  }
  return out;
}

}  // namespace

QuantRecipe QuantRecipe::none() {
  QuantRecipe r;
  r.entries_.push_back({"*", false, std::nullopt});
  return r;
}

QuantRecipe QuantRecipe::load(const std::string& path) {
  std::string text;
  try {
    text = read_file(path);
  } catch (Error& e) {
    if (e.file().empty()) e.file(path);
    throw;
  }
  return parse(text, path);
}

QuantRecipe QuantRecipe::parse(const std::string& text, const std::string& label) {
  // The shared strict loader: syntax errors with line and column, and duplicate or
  // non-scalar keys refused (yaml-cpp keeps both of a repeated key; a mapping as a key
  // threw yaml-cpp's own exception past every caller, found by fuzz/quant_recipe_fuzz).
  const YAML::Node root = io::parse_yaml(text, label);
  try {
    Ctx c{label};
    if (!root.IsMap()) throw Error("a recipe must be a YAML mapping").file(label);
    QuantRecipe r;
    r.source_ = label;
    YAML::Node q = root;
    if (root["quantize"]) {
      for (const auto& kv : root) {
        std::string k = kv.first.as<std::string>();
        if (k == "metadata") r.metadata_ = yaml_text(kv.second);
        else if (k != "quantize") throw c.fail(k, "unknown top-level key (expected metadata, quantize)");
      }
      q = root["quantize"];
      if (!q.IsMap()) throw c.fail("quantize", "must be a mapping");
    }
    bool have_cfg = false;
    for (const auto& kv : q) {
      std::string k = kv.first.as<std::string>();
      if (k == "algorithm") {
        const YAML::Node& a = kv.second;
        std::string method;
        if (a.IsNull()) method = "none";
        else if (a.IsScalar()) method = a.as<std::string>();
        else if (a.IsMap() && a["method"] && a["method"].IsScalar() && a.size() == 1) method = a["method"].as<std::string>();
        if (method != "max" && method != "none")
          throw c.fail("algorithm", "unsupported algorithm '" + yaml_text(a) + "' (qarl supports max)");
        r.algorithm_ = method;
      } else if (k == "quant_cfg") {
        have_cfg = true;
        if (kv.second.IsSequence()) r.entries_ = parse_list(kv.second, c);
        else if (kv.second.IsMap()) r.entries_ = parse_dict(kv.second, c);
        else throw c.fail("quant_cfg", "must be a list of entries or a mapping");
      } else if (k == "metadata" && q == root) {
        r.metadata_ = yaml_text(kv.second);
      } else {
        throw c.fail(k, "unknown key (expected algorithm, quant_cfg)");
      }
    }
    if (!have_cfg) throw c.fail("quant_cfg", "missing");
    return r;
  } catch (const YAML::Exception& e) {  // a conversion this parser did not foresee
    throw err("unexpected YAML value at {}: {}", io::yaml_where(e.mark), e.msg).file(label);
  }
}

QuantizerConfig QuantRecipe::resolve(const std::string& name) const {
  bool configured = false;
  QuantizerConfig q;
  q.enable = true;  // ModelOpt inserts every quantizer enabled, with default (int8) attributes
  for (const RecipeEntry& e : entries_) {
    if (!fnmatch(name, e.quantizer_name)) continue;
    if (e.cfg) {
      q = *e.cfg;
      configured = true;
    } else {
      q.enable = *e.enable;
    }
  }
  if (q.enable && !configured)
    throw Error("quantizer '" + name + "' is enabled with ModelOpt's default attributes "
                "(8-bit integer), which qarl does not support; configure it or disable it")
        .file(source_);
  if (!q.enable) return QuantizerConfig{};
  return q;
}

}  // namespace qarl::quant
