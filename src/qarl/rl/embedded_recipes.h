// The recipes shipped in recipes/ (run recipes and recipes/quant/), compiled into the binary
// by cmake/embed_recipes.cmake, so the embedded default runs without the source tree.
#pragma once
#include <string>
#include <vector>

namespace qarl::rl {

struct EmbeddedFile {
  std::string path;  // relative to recipes/, e.g. "grpo-tiny-nvfp4-kv.yaml", "quant/none.yaml"
  std::string text;
};
const std::vector<EmbeddedFile>& embedded_recipes();

// Writes every embedded recipe under `dir` (keeping the relative layout) and returns the
// path of `name` there. Error if no embedded recipe is called `name`.
std::string materialize_embedded_recipe(const std::string& dir, const std::string& name);

}  // namespace qarl::rl
