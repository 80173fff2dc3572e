// GRPO advantage estimators. Rewards come grouped: n consecutive samples per prompt
// (rewards[g*n + i] is sample i of prompt g). The advantage of a sample is its reward minus
// a per-group baseline, optionally divided by the group's standard deviation.
#pragma once
#include <span>
#include <vector>

namespace qarl::rl {

struct AdvantageOptions {
  int group_size = 1;             // n samples per prompt
  bool normalize_std = true;      // divide by (std + std_epsilon)
  bool leave_one_out = false;     // baseline = mean of the other n-1 samples of the group
  double std_epsilon = 1e-6;
};

// baseline_i = mean(group) (or the leave-one-out mean); std = unbiased sample std of the
// group (torch.std default, as NeMo-RL's calculate_baseline_and_std_per_prompt); with
// normalize_std, A_i = (r_i - baseline_i) / (std + eps). A group of one sample has zero
// advantage. Groups whose rewards are all equal get zero advantage (std is 0: not divided).
// Errors (usage) when rewards.size() is not a multiple of group_size.
std::vector<double> grpo_advantages(std::span<const double> rewards, const AdvantageOptions& o);

}  // namespace qarl::rl
