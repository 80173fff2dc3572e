// libFuzzer target for run recipes (train/run_recipe.h), the YAML `qarl train` takes. Run it
// from the repository root: recipes name quant recipes by path (recipes/quant/*.yaml, the
// dictionary has them) and relative paths resolve against recipes/. Oracle: every input
// either parses or throws qarl::Error of kind Input or Usage (naming the file and key),
// never anything else; an accepted recipe written back as YAML (run_recipe_to_yaml) parses
// again to the same YAML.
#include <cstdint>
#include <string>

#include "qarl/core/error.h"
#include "qarl/train/run_recipe.h"

using namespace qarl;

namespace {
bool input_error(const Error& e) { return e.kind() == ErrorKind::Input || e.kind() == ErrorKind::Usage; }
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::string yaml;
  try {
    yaml = train::run_recipe_to_yaml(train::parse_run_recipe(text, "fuzz.yaml", {}, "recipes"));
  } catch (const Error& e) {
    if (!input_error(e)) __builtin_trap();
    return 0;
  }
  try {
    if (train::run_recipe_to_yaml(train::parse_run_recipe(yaml, "again.yaml", {}, "recipes")) != yaml)
      __builtin_trap();
  } catch (const Error&) {
    __builtin_trap();  // what the parser wrote, it must read back
  }
  return 0;
}
