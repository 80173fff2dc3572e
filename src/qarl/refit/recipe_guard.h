// Same-recipe guard (reference-spec 5.2): the trainer and the rollout must quantize the
// same way, with one allowed exception, rollout-only FP8 K/V with constant amax (nothing to
// calibrate, nothing to refit), and one explicit escape hatch, a rollout-only experiment
// opt-in from the run recipe (the quantization-unaware baseline), which the caller must
// surface in every metrics line and the report (RecipeGuardResult::rollout_only_experiment).
//
// Two entry points. The preferred one takes quant::QuantRecipe (src/qarl/quant/recipe.h)
// and compares the resolved QuantizerConfig of every probe quantizer name. The other reads
// any ModelOpt-style YAML (including cfg keys the quant component does not simulate, e.g.
// weight quantizers) into a normalized form: the ordered quant_cfg entries (pattern,
// enable, cfg as canonical JSON with "e4m3" normalized to [4, 3]) and the algorithm;
// equality is equality of that form, and the exception is decided on resolved K/V configs
// (last matching entry wins, fnmatch on the full quantizer name).
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace qarl::quant {
class QuantRecipe;
}

namespace qarl::refit {

struct NormalizedRecipe {
  struct Entry {
    std::string pattern;
    // Absent only in an entry without cfg and without enable (it changes nothing); an entry
    // with cfg and no enable enables (ModelOpt), normalized to true.
    std::optional<bool> enable;
    std::string cfg;  // canonical JSON of the cfg mapping; "" when the entry has none
    bool operator==(const Entry&) const = default;
  };
  std::string source;  // file path or "<none>"
  std::string algorithm = "max";
  std::vector<Entry> entries;

  // A ModelOpt-style recipe (optionally wrapped in `quantize:`; quant_cfg as an ordered list
  // of {quantizer_name, enable, cfg} or as a mapping pattern -> cfg). Errors name the file.
  static NormalizedRecipe parse(const std::string& yaml_text, const std::string& source);
  static NormalizedRecipe from_file(const std::string& path);
  static NormalizedRecipe none();  // no quantization at all (a BF16 side)

  struct Resolved {
    bool enabled = false;
    std::string cfg;
    bool operator==(const Resolved&) const = default;
  };
  Resolved resolve(const std::string& quantizer_name) const;
  bool same_as(const NormalizedRecipe& o) const {
    return algorithm == o.algorithm && entries == o.entries;
  }
};

struct RecipeGuardResult {
  bool identical = false;
  bool rollout_only_constant_fp8 = false;  // the documented exception
  bool rollout_only_experiment = false;    // explicit opt-in: say so in every metrics line
  std::string note;                        // what differs, for logs and the report
};

// Throws a usage Error (naming both recipe sources and the first differing quantizer)
// unless the recipes are the same, or the exception applies, or the experiment is opted in.
RecipeGuardResult check_same_recipe(const NormalizedRecipe& trainer,
                                    const NormalizedRecipe& rollout,
                                    bool allow_rollout_only_experiment);

// The same guard on recipes parsed by the quant component (src/qarl/quant/recipe.h):
// compares the resolved QuantizerConfig of every probe name (and the algorithm); a probe
// that one recipe cannot resolve (enabled but unconfigured) counts as a difference.
RecipeGuardResult check_same_recipe(const quant::QuantRecipe& trainer,
                                    const quant::QuantRecipe& rollout,
                                    bool allow_rollout_only_experiment);

// The quantizer names the guard probes: K/V (and Q) BMM quantizers, input and weight
// quantizers in the HF, Megatron, Nemotron-H and rollout-runtime layouts.
const std::vector<std::string>& recipe_probe_names();
bool is_kv_quantizer_name(const std::string& name);

}  // namespace qarl::refit
