// `qarl train [RECIPE.yaml] [key=value ...] [--resume RUN_DIR]`: QARL training (GRPO or
// on-policy distillation with quantized-K/V rollouts). With no recipe it runs the embedded
// default: the tiny built-in model, warm-started by SFT, NVFP4-KV GRPO on arithmetic.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include <fmt/format.h>

#include "qarl/core/fs.h"
#include "qarl/cli/command.h"
#include "qarl/core/error.h"
#include "qarl/rl/embedded_recipes.h"
#include "qarl/rl/trainer.h"
#include "qarl/train/run_recipe.h"

namespace {
namespace fs = std::filesystem;

constexpr const char* kDefaultRecipe = "grpo-tiny-nvfp4-kv.yaml";

struct Args {
  std::vector<std::string> positional;  // [RECIPE] key=value...
  std::string resume;
  bool print_recipe = false;
  bool list = false;
  int64_t stop_after = 0;
};

void print_summary(const qarl::rl::TrainSummary& s, const qarl::train::RunRecipe& r) {
  std::printf("\n== qarl train: %lld steps, run dir %s\n", (long long)s.steps, s.run_dir.c_str());
  std::printf("reward   %.3f -> %.3f   accuracy %.3f -> %.3f (mean of first/last steps)\n",
              s.first_reward, s.last_reward, s.first_accuracy, s.last_accuracy);
  std::printf("trainer/rollout mismatch: max gen_kl_error %.3g, mean token_mult_prob_error %.9g\n",
              s.max_gen_kl_error, s.mean_token_mult_prob_error);
  if (s.unaware_steps > 0)
    std::printf(
        "an unaware trainer (quantizers off) scoring the same rollouts would see: gen_kl_error "
        "%.3g, token_mult_prob_error %.6g (the rollout-only baseline's mismatch)\n",
        s.unaware_gen_kl_error, s.unaware_token_mult_prob_error);
  if (r.rollout_only_experiment)
    std::printf("NOTE: rollout-only experiment: the trainer is NOT quantization-aware\n");
  std::printf("metrics: %s/metrics.jsonl   report: %s/report.html\n", s.run_dir.c_str(),
              s.run_dir.c_str());
}

QARL_REGISTER_COMMAND(
    "train",
    "QARL training: GRPO or on-policy distillation with quantized-K/V rollouts.\n"
    "  qarl train                          the embedded default (tiny model, NVFP4 K/V GRPO)\n"
    "  qarl train RECIPE.yaml [k=v ...]     a run recipe, with dotted-key overrides\n"
    "  qarl train --resume RUN_DIR          continue a run from its latest checkpoint",
    [](CLI::App& app) {
      auto a = std::make_shared<Args>();
      app.add_option("recipe_and_overrides", a->positional,
                     "RECIPE.yaml (or an embedded recipe name) then key=value overrides");
      app.add_option("--resume", a->resume, "resume RUN_DIR from its latest checkpoint");
      app.add_flag("--print-recipe", a->print_recipe,
                   "print the effective recipe (schema defaults + file + overrides) and exit");
      app.add_flag("--list-recipes", a->list, "list the embedded recipes and exit");
      app.add_option("--stop-after", a->stop_after,
                     "stop after N steps of this process (the run stays resumable)");
      return [a]() -> int {
        using namespace qarl;
        if (a->list) {
          for (const auto& f : rl::embedded_recipes()) std::printf("%s\n", f.path.c_str());
          return 0;
        }
        std::string recipe_path;
        std::vector<std::string> overrides;
        for (const auto& p : a->positional) {
          if (p.find('=') != std::string::npos) overrides.push_back(p);
          else if (recipe_path.empty()) recipe_path = p;
          else throw usage_err("more than one recipe given: '{}' and '{}'", recipe_path, p);
        }
        bool resume = !a->resume.empty();
        bool embedded_default = false;
        if (resume) {
          if (!recipe_path.empty())
            throw usage_err("--resume uses the recipe saved in the run directory; do not pass one");
          recipe_path = a->resume + "/recipe.yaml";
          if (!path_exists(recipe_path))
            throw usage_err("{} is not a qarl run directory (no recipe.yaml)", a->resume);
          overrides.push_back("logging.run_dir=" + a->resume);
        } else if (recipe_path.empty() || !path_exists(recipe_path)) {
          // An embedded recipe: the default, or one named by its file name.
          std::string name = recipe_path.empty() ? kDefaultRecipe : recipe_path;
          std::string dir = (fs::temp_directory_path() / fmt::format("qarl-recipes-{}", ::getpid())).string();
          recipe_path = rl::materialize_embedded_recipe(dir, name);
          embedded_default = a->positional.empty() || name == kDefaultRecipe;
        }
        bool has_run_dir = false;
        for (const auto& o : overrides) has_run_dir |= o.rfind("logging.run_dir=", 0) == 0;
        if (embedded_default && !has_run_dir) {
          // The embedded default never collides with an earlier run: a fresh dated run dir.
          std::time_t t = std::time(nullptr);
          char buf[32];
          std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", std::localtime(&t));
          overrides.push_back(fmt::format("logging.run_dir=runs/qarl-default-{}", buf));
        }
        train::RunRecipe r = train::load_run_recipe(recipe_path, overrides);
        if (a->print_recipe) {
          std::printf("%s", train::run_recipe_to_yaml(r).c_str());
          return 0;
        }
        if (embedded_default)
          std::printf("qarl train: embedded default (%s): tiny model warm-started by SFT, "
                      "GRPO with an NVFP4 simulated K/V cache in trainer and rollout\n",
                      kDefaultRecipe);
        rl::Trainer trainer(r, resume);
        auto summary = trainer.run(a->stop_after);
        print_summary(summary, r);
        return 0;
      };
    });

}  // namespace
