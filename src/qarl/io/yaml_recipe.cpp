#include "qarl/io/yaml_recipe.h"

#include <cerrno>
#include <cstring>
#include <set>

#include "qarl/core/fs.h"
#include "qarl/io/json_strict.h"

namespace qarl::io {

std::string yaml_where(const YAML::Mark& m) {
  if (m.is_null() || m.line < 0) return "";
  return "line " + std::to_string(m.line + 1) + ", column " + std::to_string(m.column + 1);
}

namespace {

// Duplicate or non-scalar keys: yaml-cpp keeps both entries and lookups see the first, so a
// repeated key would silently lose a value.
void check_keys(const YAML::Node& n, const std::string& label, const std::string& path, int depth) {
  if (depth > 64) throw err("nested deeper than 64 levels").file(label).key(path);
  if (n.IsMap()) {
    std::set<std::string> seen;
    for (const auto& kv : n) {
      if (!kv.first.IsScalar())
        throw err("map keys must be plain scalars ({})", yaml_where(kv.first.Mark())).file(label).key(path);
      std::string k = kv.first.Scalar();
      std::string p = path.empty() ? k : path + "." + k;
      if (!seen.insert(k).second)
        throw err("duplicate key ({})", yaml_where(kv.first.Mark())).file(label).key(p);
      check_keys(kv.second, label, p, depth + 1);
    }
  } else if (n.IsSequence()) {
    for (size_t i = 0; i < n.size(); ++i)
      check_keys(n[i], label, path + "[" + std::to_string(i) + "]", depth + 1);
  }
}

}  // namespace

YAML::Node parse_yaml(const std::string& text, const std::string& label) {
  // YAML text is Unicode; invalid UTF-8 reached nlohmann::json's dump() in the refit guard
  // and threw its own exception there (found by fuzz/quant_recipe_fuzz).
  if (!is_valid_utf8(text)) throw err("not valid UTF-8").file(label);
  // YAML allows no C0 control characters but tab, LF and CR (nor DEL); yaml-cpp reads them
  // anyway and turned a NUL inside a scalar into a stray 0xA0 byte.
  size_t line = 1;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\n') ++line;
    else if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f)
      throw err("control character 0x{:02x} at line {} (YAML does not allow it)", unsigned(c), line).file(label);
  }
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw err("invalid YAML at {}: {}", yaml_where(e.mark), e.msg).file(label);
  }
  check_keys(root, label, "", 0);
  return root;
}

YAML::Node load_yaml_file(const std::string& path) { return parse_yaml(read_file(path), path); }

void apply_yaml_override(YAML::Node& root, const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw usage_err("override '{}' is not of the form key.path=value", assignment);
  std::string path = assignment.substr(0, eq), value_text = assignment.substr(eq + 1);
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    parts.push_back(path.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  for (const auto& p : parts)
    if (p.empty()) throw usage_err("override '{}' has an empty key segment", assignment);
  YAML::Node value;
  try {
    value = YAML::Load(value_text);
  } catch (const YAML::Exception& e) {
    throw usage_err("override '{}': value is not valid YAML: {}", assignment, e.msg);
  }
  if (!root || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  YAML::Node cur = root;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& k = parts[i];
    bool last = i + 1 == parts.size();
    if (cur.IsSequence()) {
      char* end = nullptr;
      errno = 0;
      unsigned long idx = std::strtoul(k.c_str(), &end, 10);
      if (*end != '\0' || errno || idx >= cur.size())
        throw usage_err("override '{}': '{}' is not an index into a list of {}", assignment, k, cur.size());
      if (last) { cur[idx] = value; return; }
      YAML::Node next = cur[idx];
      cur.reset(next);  // rebinding: plain assignment would overwrite the node's value
    } else if (cur.IsMap() || cur.IsNull()) {
      if (last) { cur[k] = value; return; }
      if (!cur[k] || cur[k].IsNull()) cur[k] = YAML::Node(YAML::NodeType::Map);
      YAML::Node next = cur[k];
      cur.reset(next);
    } else {
      throw usage_err("override '{}': cannot set '{}' inside a scalar", assignment, k);
    }
  }
}

RecipeNode::RecipeNode(YAML::Node node, std::shared_ptr<State> state, std::string path)
    : node_(std::move(node)), state_(std::move(state)), path_(std::move(path)) {}

RecipeNode::RecipeNode(YAML::Node node, const std::string& label, const std::string& path)
    : node_(std::move(node)), state_(std::make_shared<State>()), path_(path) {
  state_->label = label;
}

RecipeNode RecipeNode::parse(const std::string& text, const std::string& label,
                             const std::vector<std::string>& overrides) {
  YAML::Node root = parse_yaml(text, label);
  for (const auto& o : overrides) apply_yaml_override(root, o);
  if (!overrides.empty()) check_keys(root, label, "", 0);
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);  // an empty file is an empty recipe
  if (!root.IsMap()) throw err("a recipe must be a YAML mapping at the top level").file(label);
  return RecipeNode(root, label);
}

RecipeNode RecipeNode::load_file(const std::string& path, const std::vector<std::string>& overrides) {
  return parse(read_file(path), path, overrides);
}

Error RecipeNode::error(const std::string& message, const std::string& key) const {
  std::string p = key.empty() ? path_ : sub(key);
  YAML::Mark m = node_ ? node_.Mark() : YAML::Mark::null_mark();
  if (!key.empty() && node_.IsMap()) {
    for (const auto& kv : node_)
      if (kv.first.Scalar() == key) m = kv.first.Mark();
  }
  std::string where = yaml_where(m);
  Error e(where.empty() ? message : "(" + where + ") " + message);
  e.file(state_->label);
  if (!p.empty()) e.key(p);
  return e;
}

void RecipeNode::bad_type(const char* want) const {
  std::string got = node_.IsMap() ? "a mapping" : node_.IsSequence() ? "a list"
                    : node_.IsNull() ? "nothing" : "'" + node_.Scalar() + "'";
  throw error(std::string("must be ") + want + ", got " + got);
}

bool RecipeNode::has(const std::string& key) const {
  if (!node_.IsMap()) return false;
  YAML::Node c = node_[key];
  return c && !c.IsNull();
}

RecipeNode RecipeNode::child(const std::string& key) const {
  if (!node_.IsMap()) throw error("must be a mapping to have key '" + key + "'");
  const YAML::Node& cn = node_;
  YAML::Node c = cn[key];
  if (!c) throw error("required key is missing", key);
  state_->read.insert(sub(key));
  return RecipeNode(c, state_, sub(key));
}

std::optional<RecipeNode> RecipeNode::optional_child(const std::string& key) const {
  if (!node_.IsMap()) {
    if (is_null()) return std::nullopt;
    throw error("must be a mapping to have key '" + key + "'");
  }
  const YAML::Node& cn = node_;
  YAML::Node c = cn[key];
  if (!c) return std::nullopt;
  state_->read.insert(sub(key));
  if (c.IsNull()) return std::nullopt;
  return RecipeNode(c, state_, sub(key));
}

size_t RecipeNode::size() const {
  if (!node_.IsSequence()) bad_type("a list");
  return node_.size();
}

RecipeNode RecipeNode::at(size_t i) const {
  if (!node_.IsSequence()) bad_type("a list");
  if (i >= node_.size()) throw error("index " + std::to_string(i) + " out of range");
  return RecipeNode(node_[i], state_, path_ + "[" + std::to_string(i) + "]");
}

std::vector<std::string> RecipeNode::keys() const {
  if (!node_.IsMap()) bad_type("a mapping");
  std::vector<std::string> ks;
  for (const auto& kv : node_) {
    ks.push_back(kv.first.Scalar());
    state_->read.insert(sub(kv.first.Scalar()));
  }
  return ks;
}

YAML::Node RecipeNode::raw() const {
  state_->opaque.insert(path_);
  return node_;
}

void RecipeNode::check_unread(const YAML::Node& n, const std::string& path) const {
  if (state_->opaque.count(path)) return;
  if (n.IsMap()) {
    for (const auto& kv : n) {
      std::string p = path.empty() ? kv.first.Scalar() : path + "." + kv.first.Scalar();
      if (!state_->read.count(p)) {
        std::string where = yaml_where(kv.first.Mark());
        throw Error(where.empty() ? "unknown key" : "(" + where + ") unknown key")
            .file(state_->label).key(p);
      }
      check_unread(kv.second, p);
    }
  } else if (n.IsSequence()) {
    for (size_t i = 0; i < n.size(); ++i) check_unread(n[i], path + "[" + std::to_string(i) + "]");
  }
}

void RecipeNode::reject_unknown() const { check_unread(node_, path_); }

}  // namespace qarl::io
