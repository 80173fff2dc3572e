// Run recipes: the YAML file that describes a training run (model, quantization, task,
// algorithm and hyper-parameters, calibration, checkpointing, logging). Every key has a
// default in the schema (kRunRecipeSchema in run_recipe.cpp, printed by
// `run_recipe_schema_yaml()`); a key that is not in the schema, in the file or in a
// command-line override `dotted.key=value`, is an Error naming the key and the file, with
// the closest known key as a hint. Overrides are applied after the file, in order.
//
// Validation also enforces the same-recipe rule (reference-spec 5.2) through
// refit::check_same_recipe: the trainer and rollout quant recipes must be identical,
// except rollout-only FP8 with constant amax, or an explicit opt-in
// `quant.rollout_only_experiment: true` (then RunRecipe::rollout_only_experiment is set
// and the metrics and report must show it).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace qarl::train {

struct RunRecipe {
  std::string source;  // file path (or label)
  uint64_t seed = 0;

  struct Model {
    std::string path;        // "tiny" (built-in spec) or an HF checkpoint directory
    std::string tokenizer;   // "" : the model's own (or the tiny byte tokenizer)
    int64_t warmstart_steps = 0;  // tiny model: SFT steps on the task's format before RL
    double warmstart_lr = 3e-3;
    std::string device = "cpu";      // cpu | cuda
    std::string gemm_mode = "exact"; // cuda: exact | fast
  } model;

  struct Rollout {
    std::string kv_cache = "auto";  // auto | fp8 | nvfp4 (native storage, same results)
    uint64_t kv_cache_bytes = 0;    // 0: the engine's default fraction of RAM
  } rollout;

  struct Quant {
    std::string recipe;           // trainer (policy) quant recipe, resolved path
    std::string rollout_recipe;   // rollout recipe, resolved path (= recipe when not set)
    bool rollout_only_experiment = false;
  } quant;

  struct Task {
    std::string kind;           // "arithmetic" | "jsonl"
    int difficulty = 1;
    std::string dataset;        // jsonl path (kind jsonl)
    std::string answer_format;  // "last_number" | "boxed"
    bool shuffle = true;
  } task;

  struct Algorithm {
    std::string name;  // "grpo" | "distill"
    int64_t steps = 0;
    int prompts_per_step = 0;
    int samples_per_prompt = 0;
    int micro_batch_size = 0;
    double lr = 0, min_lr = 0;
    std::string lr_schedule;  // "constant" | "cosine"
    int64_t warmup_steps = 0;
    double weight_decay = 0, beta1 = 0, beta2 = 0, eps = 0;
    double grad_clip = 0;  // <= 0: off
    double temperature = 1;
    int max_new_tokens = 0;
    double clip_low = 0, clip_high = 0;
    std::string loss_aggregation;  // "token_mean" | "sequence_mean"
    double kl_coef = 0;
    std::string kl_type;  // k1 | k2 | k3 (penalty and gen/policy_kl_error metrics)
    double tis_cap = 0;   // <= 0: no truncated importance sampling
    bool leave_one_out = false;
    bool normalize_std = true;
    std::string distill_teacher;  // "" : the model itself with quantizers disabled
    std::string distill_kl;       // "reverse" | "forward"
    int distill_top_k = 0;
  } algorithm;

  struct Calibration {
    int quant_calib_size = 0;
    std::string quant_calib_data;  // "task" | "random"
    int quant_batch_size = 1;
    int quant_sequence_length = 0;
  } calibration;

  struct Checkpoint {
    int64_t every = 0;  // 0: only at the end
    int keep_last = 0;
  } checkpoint;

  struct Logging {
    std::string run_dir;
    bool report = true;
    bool progress = true;
    bool unaware_baseline = true;  // also score rollouts with the trainer's quantizers off
  } logging;

  // Same-recipe guard outcome (filled by validation).
  bool rollout_only_experiment = false;
  bool rollout_only_constant_fp8 = false;
  std::string recipe_note;
};

// Loads and validates a recipe file with overrides. Relative paths inside the recipe
// (quant recipes, dataset, model dir) are resolved against the current directory first,
// then the recipe file's directory. Input/Usage Errors name the file and key.
RunRecipe load_run_recipe(const std::string& path, const std::vector<std::string>& overrides = {});
RunRecipe parse_run_recipe(const std::string& yaml_text, const std::string& label,
                           const std::vector<std::string>& overrides = {},
                           const std::string& base_dir = ".");

// The schema with its defaults, as YAML (docs, `qarl train --print-recipe`).
const std::string& run_recipe_schema_yaml();
// The effective recipe (schema defaults + file + overrides) as YAML, for the run dir.
std::string run_recipe_to_yaml(const RunRecipe& r);

}  // namespace qarl::train
