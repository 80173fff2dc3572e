#include "qarl/rl/advantages.h"

#include <cmath>

#include "qarl/core/error.h"

namespace qarl::rl {

std::vector<double> grpo_advantages(std::span<const double> rewards, const AdvantageOptions& o) {
  if (o.group_size < 1) throw usage_err("advantages: group_size must be >= 1, got {}", o.group_size);
  const size_t n = size_t(o.group_size);
  if (rewards.size() % n != 0)
    throw usage_err("advantages: {} rewards are not a multiple of the group size {}",
                    rewards.size(), n);
  std::vector<double> adv(rewards.size(), 0.0);
  for (size_t g = 0; g < rewards.size(); g += n) {
    if (n == 1) continue;  // no baseline can be formed from one sample
    double sum = 0;
    for (size_t i = 0; i < n; ++i) sum += rewards[g + i];
    const double mean = sum / double(n);
    double ss = 0;
    for (size_t i = 0; i < n; ++i) ss += (rewards[g + i] - mean) * (rewards[g + i] - mean);
    const double std = std::sqrt(ss / double(n - 1));  // unbiased, like torch.std
    for (size_t i = 0; i < n; ++i) {
      const double baseline =
          o.leave_one_out ? (sum - rewards[g + i]) / double(n - 1) : mean;
      double a = rewards[g + i] - baseline;
      // As NeMo-RL: only groups with non-zero std are normalized (no 0/0 with eps 0).
      if (o.normalize_std && std > 0) a /= (std + o.std_epsilon);
      adv[g + i] = a;
    }
  }
  return adv;
}

}  // namespace qarl::rl
