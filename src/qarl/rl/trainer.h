// The QARL training loop behind `qarl train`: GRPO (or on-policy distillation) whose rollouts
// run with the recipe's simulated K/V quantization, with the trainer quantization-aware, a
// strict refit every step and the trainer/rollout mismatch measured every step.
//
//   setup:  model (HF checkpoint, or the tiny built-in one warm-started by SFT) -> K/V
//           quantizers from the policy recipe -> max calibration once (stored with the model)
//           -> rollout engine (its own runtime layout, rollout recipe) -> first refit
//   step:   prompts -> generate (n samples each) -> rewards -> trainer logprobs with the same
//           quantizers -> mismatch metrics -> advantages -> clipped PG loss, backward
//           (straight-through), clip, AdamW -> refit -> metrics.jsonl line -> checkpoint
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "qarl/train/run_recipe.h"

namespace qarl::rl {

struct TrainSummary {
  int64_t steps = 0;
  double first_reward = 0, last_reward = 0;       // mean over the first / last few steps
  double first_accuracy = 0, last_accuracy = 0;
  double max_gen_kl_error = 0, mean_token_mult_prob_error = 0;
  // What a quantization-unaware trainer would have measured on the same rollouts (the
  // rollout-only baseline's mismatch), when logging.unaware_baseline is on.
  int64_t unaware_steps = 0;
  double unaware_gen_kl_error = 0, unaware_token_mult_prob_error = 0;
  std::string run_dir;
};

class Trainer {
 public:
  // Validates everything (recipes, model, tokenizer, dataset) before any work starts.
  // resume: continue from RUN_DIR's latest checkpoint (the recipe saved there is used).
  Trainer(train::RunRecipe recipe, bool resume);
  ~Trainer();
  // Runs until recipe.algorithm.steps; `stop_after` > 0 stops early after that many steps
  // of this process (tests use it to simulate an interrupted run).
  TrainSummary run(int64_t stop_after = 0);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qarl::rl
