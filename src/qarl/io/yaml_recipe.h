// YAML recipes (quantization recipes, run recipes): loading with errors that say where
// (file, line, column), typed access to keys, and a final reject_unknown() that turns every
// key nobody read into an Error naming its full dotted path and the file, so a typo in a
// recipe can never be silently ignored. Also `a.b.c=value` overrides from the command line.
//
//   auto r = RecipeNode::load_file("run.yaml", {"train.lr=1e-5"});
//   double lr = r.child("train").required<double>("lr");
//   int steps = r.child("train").optional<int>("steps", 100);
//   r.reject_unknown();  // Error: run.yaml: key 'train.stpes' (line 4, column 3): unknown key
#pragma once
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "qarl/core/error.h"

namespace qarl::io {

// Parses YAML text; Error(Input) naming `label` (with line and column where there is one) on
// invalid UTF-8, control characters YAML does not allow, a syntax error, duplicate keys, or
// non-scalar keys.
YAML::Node parse_yaml(const std::string& text, const std::string& label);
YAML::Node load_yaml_file(const std::string& path);

// Applies one `dotted.path=value` override: the value is parsed as YAML (so numbers, bools,
// lists work), missing map keys are created (reject_unknown() still catches typos), list
// elements are addressed by index (`layers.2.bits=4`). Error(Usage) on a malformed override.
void apply_yaml_override(YAML::Node& root, const std::string& assignment);

class RecipeNode {
 public:
  // `overrides` (key=value) are applied after parsing, in order.
  static RecipeNode load_file(const std::string& path, const std::vector<std::string>& overrides = {});
  static RecipeNode parse(const std::string& text, const std::string& label,
                          const std::vector<std::string>& overrides = {});
  // Wraps an existing tree (e.g. one section of a larger document).
  RecipeNode(YAML::Node node, const std::string& label, const std::string& path = "");

  bool is_map() const { return node_.IsMap(); }
  bool is_list() const { return node_.IsSequence(); }
  bool is_null() const { return !node_ || node_.IsNull(); }
  bool has(const std::string& key) const;  // present and not null

  template <typename T> T required(const std::string& key) const {
    return child(key).as<T>();
  }
  template <typename T> T optional(const std::string& key, T fallback) const {
    auto c = optional_child(key);
    return c ? c->as<T>() : fallback;
  }
  // A map member (marked as read). child(): Error if absent; optional_child(): nullopt if
  // absent or null.
  RecipeNode child(const std::string& key) const;
  std::optional<RecipeNode> optional_child(const std::string& key) const;
  // List elements (this node must be a list).
  size_t size() const;
  RecipeNode at(size_t i) const;
  // Keys of a map with free-form keys (e.g. name patterns); the keys count as read, their
  // values are checked when read through child().
  std::vector<std::string> keys() const;

  template <typename T> T as() const;
  // The subtree as-is, marked read entirely (for parts handed on as opaque YAML).
  YAML::Node raw() const;
  const YAML::Node& node() const { return node_; }

  // Error on any key under this node that was never read. Call once after reading.
  void reject_unknown() const;

  const std::string& label() const { return state_->label; }
  const std::string& path() const { return path_; }  // dotted, "" for the root
  // An Error(Input) naming the file, this node's path (plus `key`) and its line/column.
  Error error(const std::string& message, const std::string& key = "") const;

 private:
  struct State {
    std::string label;
    std::set<std::string> read;    // dotted paths that were accessed
    std::set<std::string> opaque;  // subtrees taken whole
  };
  RecipeNode(YAML::Node node, std::shared_ptr<State> state, std::string path);
  std::string sub(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  [[noreturn]] void bad_type(const char* want) const;
  void check_unread(const YAML::Node& n, const std::string& path) const;

  YAML::Node node_;
  std::shared_ptr<State> state_;
  std::string path_;
};

std::string yaml_where(const YAML::Mark& m);  // "line L, column C" (1-based) or ""

template <typename T>
T RecipeNode::as() const {
  if constexpr (requires { typename T::value_type; } && !std::is_same_v<T, std::string>) {
    if (!node_.IsSequence()) bad_type("a list");
    T out;
    for (size_t i = 0; i < node_.size(); ++i) out.push_back(at(i).as<typename T::value_type>());
    return out;
  } else {
    if (!node_.IsScalar()) {
      if constexpr (std::is_same_v<T, std::string>) bad_type("a string");
      else if constexpr (std::is_same_v<T, bool>) bad_type("true or false");
      else if constexpr (std::is_floating_point_v<T>) bad_type("a number");
      else bad_type("an integer");
    }
    try {
      return node_.as<T>();
    } catch (const YAML::Exception&) {
      if constexpr (std::is_same_v<T, bool>) bad_type("true or false");
      else if constexpr (std::is_floating_point_v<T>) bad_type("a number");
      else if constexpr (std::is_integral_v<T>) bad_type("an integer in range");
      else bad_type("a value of the expected type");
    }
  }
}

}  // namespace qarl::io
