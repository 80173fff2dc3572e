// Quantization recipes in NVIDIA ModelOpt's own YAML form, so a ModelOpt / NeMo-RL recipe
// file loads unchanged:
//
//   metadata: {recipe_type: ptq, description: ...}      # optional, kept as text
//   quantize:                                           # optional wrapper
//     algorithm: max                                    # max (default) or null
//     quant_cfg:
//       - {quantizer_name: '*', enable: false}
//       - quantizer_name: '*[kv]_bmm_quantizer'
//         enable: true                                  # optional when cfg is given
//         cfg: {num_bits: e4m3, use_constant_amax: true}
//
// quant_cfg may also be the older mapping form {"*pattern": {cfg...}, "default": {...}}
// ("default" means "*" and is applied first; a value holding only `enable` toggles).
// Semantics (ModelOpt set_quantizer_by_cfg): entries apply in order, later ones override
// earlier ones; an entry with `cfg` REPLACES the matched quantizer's attributes (unspecified
// ones revert to defaults) and enables it unless `enable: false`; an entry without `cfg`
// only toggles `enable`. Names are matched with Python fnmatch (quant/fnmatch.h).
//
// Supported cfg keys: num_bits (e4m3 | [4,3] | e2m1 | [2,1]), block_sizes (exactly
// {-1: 16, type: dynamic, scale_bits: e4m3 | [4,3]}, required with e2m1, not allowed with
// e4m3), use_constant_amax, pass_through_bwd, axis (null only), enable. Anything else, or
// an unsupported value, is an Error naming the key and the file.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "qarl/quant/quantizer.h"

namespace qarl::quant {

struct RecipeEntry {
  std::string quantizer_name;           // fnmatch pattern
  std::optional<bool> enable;           // absent: true when cfg is given
  std::optional<QuantizerConfig> cfg;   // full attribute set (enable filled in), if any
};

class QuantRecipe {
 public:
  static QuantRecipe load(const std::string& path);  // Error naming the file
  static QuantRecipe parse(const std::string& yaml_text, const std::string& label);
  static QuantRecipe none();  // quantizes nothing

  const std::string& source() const { return source_; }
  const std::string& algorithm() const { return algorithm_; }  // "max" or "none"
  const std::string& metadata() const { return metadata_; }    // YAML text, "" if absent
  const std::vector<RecipeEntry>& entries() const { return entries_; }

  // The configuration of the quantizer called `name` (e.g.
  // "model.layers.3.self_attn.k_bmm_quantizer"). A quantizer no entry configures keeps
  // ModelOpt's default attributes (8-bit integer), which qarl cannot simulate: resolving an
  // ENABLED quantizer in that state is an Error naming the quantizer and the file.
  QuantizerConfig resolve(const std::string& name) const;
  // A quantizer ready to use (its `_amax` the sentinel -1 unless constant amax).
  TensorQuantizer make_quantizer(const std::string& name) const { return TensorQuantizer(resolve(name)); }

 private:
  std::string source_ = "<none>";
  std::string algorithm_ = "max";
  std::string metadata_;
  std::vector<RecipeEntry> entries_;
};

}  // namespace qarl::quant
