// Learning-rate schedule, gradient clipping by global norm, and gradient accumulation over
// micro-batches: the small pieces of the optimizer step that the training loop strings
// together (accumulate micro-batch grads -> clip -> AdamW step with lr_at(step)).
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "qarl/core/tensor.h"

namespace qarl::train {

enum class LrDecay { Constant, Cosine };
LrDecay parse_lr_decay(const std::string& s);  // "constant" | "cosine"

struct LrSchedule {
  double lr = 1e-5;
  int64_t warmup_steps = 0;
  LrDecay decay = LrDecay::Constant;
  int64_t total_steps = 0;  // needed by cosine
  double min_lr = 0.0;      // cosine floor
  // Learning rate of optimizer step `step` (1-based, as the step AdamW is about to take):
  // linear warmup lr * step / warmup_steps for step <= warmup_steps, then constant, or
  // cosine min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * progress)) with progress =
  // (step - warmup) / (total - warmup) clamped to [0, 1].
  double at(int64_t step) const;
};

// The L2 norm over all gradient tensors (fp32 CPU), accumulated in double.
double global_grad_norm(const std::map<std::string, Tensor>& grads);
// Scales all gradients by max_norm / (norm + 1e-6) when norm > max_norm (torch's
// clip_grad_norm_); returns the norm before clipping. max_norm <= 0 disables clipping.
double clip_grad_norm(std::map<std::string, Tensor>& grads, double max_norm);

// Sums the gradients of micro-batches. The losses are expected to be normalized by the
// global token/sequence counts of the whole step (see rl::PgLossOptions), so the sum is the
// gradient of the full-batch loss and no further division is needed.
class GradAccumulator {
 public:
  void add(const std::map<std::string, Tensor>& micro_grads);  // fp32 CPU, same names/shapes
  std::map<std::string, Tensor>& grads() { return sum_; }
  int micro_batches() const { return count_; }
  void reset() { sum_.clear(); count_ = 0; }

 private:
  std::map<std::string, Tensor> sum_;
  int count_ = 0;
};

}  // namespace qarl::train
