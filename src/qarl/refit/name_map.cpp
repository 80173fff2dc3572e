#include "qarl/refit/name_map.h"

#include "qarl/core/error.h"
#include "qarl/refit/export.h"

namespace qarl::refit {
namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

const char* const kKvSuffixes[] = {"k_bmm_quantizer._amax", "v_bmm_quantizer._amax"};

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

}  // namespace

std::string insert_kv_attn_segment(const std::string& name) {
  for (const char* suffix : kKvSuffixes) {
    std::string s = suffix;
    if (!ends_with(name, "." + s)) continue;
    // Already "<parent>.attn.<suffix>": keep (never twice). "self_xattn.<suffix>" does not
    // count: the guard is dot-delimited.
    if (ends_with(name, ".attn." + s)) return name;
    return name.substr(0, name.size() - s.size()) + "attn." + s;
  }
  return name;
}

NameMapper::NameMapper(NameMapperConfig config) : config_(std::move(config)) {}

std::optional<MappedName> NameMapper::map(const std::string& hf_name) const {
  const bool kv = is_kv_amax_name(hf_name);
  std::string name = hf_name;
  for (const auto& [from, to] : config_.prefix_renames) {
    if (name.rfind(from, 0) == 0) {
      name = to + name.substr(from.size());
      break;
    }
  }
  for (const auto& [from, to] : config_.substr_renames) name = replace_all(name, from, to);
  if (config_.full_name_mapper) {
    std::vector<std::string> out = config_.full_name_mapper(name);
    if (out.size() != 1)
      throw runtime_err("the {} name mapper produced {} names for it (expected exactly one)",
                        config_.family, out.size())
          .tensor(hf_name);
    name = out[0];
  }
  if (kv && !is_kv_amax_name(name))
    throw runtime_err("the {} name mapper changed a K/V amax name to unsupported '{}'",
                      config_.family, name)
        .tensor(hf_name);

  for (const auto& suffix : config_.ignored_suffixes)
    if (ends_with(name, suffix)) return std::nullopt;

  name = insert_kv_attn_segment(name);

  MappedName out;
  for (const auto& st : config_.stacked) {
    std::string seg = "." + st.hf_segment + ".";
    size_t pos = name.find(seg);
    if (pos == std::string::npos) continue;
    name.replace(pos, seg.size(), "." + st.runtime_segment + ".");
    out.shard_id = st.shard_id;
    break;
  }

  std::string root = name.substr(0, name.find('.'));
  bool known = false;
  for (const auto& r : config_.roots) known = known || r == root;
  if (!known)
    throw runtime_err("unknown root '{}' for model family {} (not guessed; mapped name '{}')",
                      root, config_.family, name)
        .tensor(hf_name);
  out.runtime_name = std::move(name);
  return out;
}

NameMapper NameMapper::dense() {
  NameMapperConfig c;
  c.family = "dense";
  c.stacked = {{"q_proj", "qkv_proj", "q"},
               {"k_proj", "qkv_proj", "k"},
               {"v_proj", "qkv_proj", "v"},
               {"gate_proj", "gate_up_proj", "gate"},
               {"up_proj", "gate_up_proj", "up"}};
  c.roots = {"model", "lm_head"};
  c.ignored_suffixes = {"rotary_emb.inv_freq"};
  return NameMapper(std::move(c));
}

NameMapper NameMapper::nemotron_h() {
  NameMapperConfig c;
  c.family = "nemotron_h";
  c.prefix_renames = {{"backbone.", "model."}};
  c.substr_renames = {{"A_log", "A"}, {"embeddings", "embed_tokens"}};
  c.stacked = {{"q_proj", "qkv_proj", "q"},
               {"k_proj", "qkv_proj", "k"},
               {"v_proj", "qkv_proj", "v"}};
  c.roots = {"model", "lm_head"};
  return NameMapper(std::move(c));
}

}  // namespace qarl::refit
