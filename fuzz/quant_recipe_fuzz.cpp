// libFuzzer target for ModelOpt-form quantization recipes, the YAML a user hands to
// `qarl train` / `qarl calibrate`, through both readers: quant::QuantRecipe (quant/recipe.h)
// and the refit guard's refit::NormalizedRecipe (refit/recipe_guard.h). Oracle: every input
// either parses or throws qarl::Error of kind Input or Usage (naming the file and key), never
// anything else (yaml-cpp's own exceptions, std::out_of_range); for a recipe that parses,
// resolving the K/V and other quantizer names either gives a config or throws such an Error,
// and parsing is deterministic (the same entries twice).
#include <cstdint>
#include <string>

#include "qarl/core/error.h"
#include "qarl/quant/recipe.h"
#include "qarl/refit/recipe_guard.h"

using namespace qarl;

namespace {
bool input_error(const Error& e) { return e.kind() == ErrorKind::Input || e.kind() == ErrorKind::Usage; }
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const refit::NormalizedRecipe n = refit::NormalizedRecipe::parse(text, "fuzz.yaml");
    if (n.entries.size() != refit::NormalizedRecipe::parse(text, "fuzz.yaml").entries.size()) __builtin_trap();
  } catch (const Error& e) {
    if (!input_error(e)) __builtin_trap();
  }
  quant::QuantRecipe r;
  try {
    r = quant::QuantRecipe::parse(text, "fuzz.yaml");
  } catch (const Error& e) {
    if (!input_error(e)) __builtin_trap();
    return 0;
  }
  const quant::QuantRecipe again = quant::QuantRecipe::parse(text, "fuzz.yaml");
  if (again.entries().size() != r.entries().size() || again.algorithm() != r.algorithm() ||
      again.metadata() != r.metadata())
    __builtin_trap();
  for (const char* name : {"model.layers.0.self_attn.k_bmm_quantizer", "model.layers.11.self_attn.v_bmm_quantizer",
                           "model.layers.0.mlp.down_proj.weight_quantizer", "lm_head.input_quantizer", "", "*"}) {
    try {
      (void)r.resolve(name);
    } catch (const Error& e) {
      if (!input_error(e)) __builtin_trap();
    }
  }
  return 0;
}
