// Supervised fine-tuning: maximize the log-likelihood of response tokens given their prompt
// (token-mean over all response tokens of a batch). `qarl sft` uses it on JSONL data; the
// embedded default uses it to warm-start the tiny model on the arithmetic task's format.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "qarl/model/model.h"

namespace qarl::rl {

struct SftExample {
  std::vector<int32_t> prompt;
  std::vector<int32_t> response;  // trained tokens (include the end-of-sequence token)
};

struct SftOptions {
  int64_t steps = 100;
  int batch_size = 32;
  double lr = 3e-3;
  int64_t warmup_steps = 10;
  double weight_decay = 0.0;
  double grad_clip = 1.0;
};

struct SftStepInfo {
  int64_t step = 0;
  double loss = 0;       // mean negative log-likelihood per response token
  double grad_norm = 0;
  double lr = 0;
};

// Trains `m` in place. `batch(step)` returns the examples of optimizer step `step` (1-based);
// `on_step` sees every step's numbers.
void sft_train(model::Model& m, const SftOptions& o,
               const std::function<std::vector<SftExample>(int64_t step)>& batch,
               const std::function<void(const SftStepInfo&)>& on_step = {});

}  // namespace qarl::rl
