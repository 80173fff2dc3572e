// check_same_recipe on quant::QuantRecipe: resolved configurations, compared per probe name.
#include <fmt/format.h>

#include "qarl/core/error.h"
#include "qarl/quant/recipe.h"
#include "qarl/refit/recipe_guard.h"

namespace qarl::refit {
namespace {

struct Resolved {
  bool ok = true;  // false: the recipe cannot resolve this quantizer (message in text)
  quant::QuantizerConfig cfg;
  std::string text;
  bool operator==(const Resolved& o) const {
    if (ok != o.ok) return false;
    if (!ok) return text == o.text;
    if (!cfg.enable && !o.cfg.enable) return true;  // a disabled quantizer's cfg is moot
    return cfg == o.cfg;
  }
};

Resolved resolve(const quant::QuantRecipe& r, const std::string& name) {
  Resolved out;
  try {
    out.cfg = r.resolve(name);
    out.text = out.cfg.enable ? quant::describe(out.cfg) : "disabled";
  } catch (const Error& e) {
    out.ok = false;
    out.text = e.message();
  }
  return out;
}

}  // namespace

RecipeGuardResult check_same_recipe(const quant::QuantRecipe& trainer,
                                    const quant::QuantRecipe& rollout,
                                    bool allow_rollout_only_experiment) {
  RecipeGuardResult out;
  std::string first_kv_diff, first_other_diff;
  bool only_kv_differs = true, trainer_kv_off = true, rollout_kv_const_fp8 = true, any_kv = false;
  for (const auto& name : recipe_probe_names()) {
    Resolved t = resolve(trainer, name), r = resolve(rollout, name);
    bool kv = is_kv_quantizer_name(name);
    if (kv) {
      if (!t.ok || t.cfg.enable) trainer_kv_off = false;
      if (!r.ok || r.cfg.enable) {
        any_kv = true;
        bool const_fp8 = r.ok && r.cfg.format == quant::Format::FP8 && r.cfg.block_size == 0 &&
                         r.cfg.use_constant_amax;
        if (!const_fp8) rollout_kv_const_fp8 = false;
      }
    }
    if (!(t == r)) {
      std::string& slot = kv ? first_kv_diff : first_other_diff;
      if (slot.empty()) slot = fmt::format("{}: trainer {}, rollout {}", name, t.text, r.text);
      if (!kv) only_kv_differs = false;
    }
  }
  bool same_algorithm = trainer.algorithm() == rollout.algorithm();
  if (first_kv_diff.empty() && first_other_diff.empty() && same_algorithm) {
    out.identical = true;
    return out;
  }
  std::string diff = first_kv_diff;
  if (!first_other_diff.empty()) diff += (diff.empty() ? "" : "; ") + first_other_diff;
  if (!same_algorithm) {
    only_kv_differs = false;
    diff += fmt::format("{}algorithm: trainer {}, rollout {}", diff.empty() ? "" : "; ",
                        trainer.algorithm(), rollout.algorithm());
  }
  out.note = diff;
  if (only_kv_differs && trainer_kv_off && any_kv && rollout_kv_const_fp8) {
    out.rollout_only_constant_fp8 = true;
    out.note = "rollout-only FP8 K/V with constant amax (allowed): " + diff;
    return out;
  }
  if (allow_rollout_only_experiment) {
    out.rollout_only_experiment = true;
    out.note = "ROLLOUT-ONLY EXPERIMENT (trainer and rollout recipes differ): " + diff;
    return out;
  }
  throw usage_err("trainer recipe '{}' and rollout recipe '{}' differ ({}); use the same recipe "
                  "on both sides (the only exception is rollout-only FP8 K/V with "
                  "use_constant_amax), or opt in to a rollout-only experiment explicitly",
                  trainer.source(), rollout.source(), diff);
}

}  // namespace qarl::refit
