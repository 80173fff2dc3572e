#include "qarl/rl/mismatch.h"

#include <algorithm>
#include <cmath>

#include "qarl/core/error.h"

namespace qarl::rl {

template <typename T>
void MismatchAccumulator::add(std::span<const T> gen_logp, std::span<const T> prev_logp,
                              std::span<const T> mask) {
  if (gen_logp.size() != prev_logp.size() || mask.size() != gen_logp.size())
    throw usage_err("mismatch metrics: sizes differ (gen {}, prev {}, mask {})", gen_logp.size(),
                    prev_logp.size(), mask.size());
  for (size_t i = 0; i < mask.size(); ++i) {
    const double m = double(mask[i]);
    if (m == 0) continue;
    const double g = double(gen_logp[i]), p = double(prev_logp[i]);
    const double mult = std::exp(std::abs(g - p));
    mult_ += m * mult;
    max_mult_ = std::max(max_mult_, mult);
    gen_kl_ += m * kl_estimate(g, p, kl_type_).value;
    policy_kl_ += m * kl_estimate(p, g, kl_type_).value;
    // log(0.5 e^p + 0.5 e^g) as a log-sum-exp: exactly p when g == p (so identical logprobs
    // give exactly 0, not rounding noise), and no underflow for very unlikely tokens.
    const double mx = std::max(p, g);
    const double lm = mx + std::log(0.5 * std::exp(p - mx) + 0.5 * std::exp(g - mx));
    const double kp = std::exp(p - lm) - (p - lm) - 1.0;
    const double kg = std::exp(g - lm) - (g - lm) - 1.0;
    js_ += m * (0.5 * kp + 0.5 * kg);
    tokens_ += m;
  }
}

MismatchMetrics MismatchAccumulator::mean() const {
  MismatchMetrics r;
  r.valid_tokens = tokens_;
  r.max_token_mult_prob_error = max_mult_;
  if (tokens_ == 0) return r;
  r.token_mult_prob_error = mult_ / tokens_;
  r.gen_kl_error = gen_kl_ / tokens_;
  r.policy_kl_error = policy_kl_ / tokens_;
  r.js_divergence_error = js_ / tokens_;
  return r;
}

template void MismatchAccumulator::add(std::span<const float>, std::span<const float>, std::span<const float>);
template void MismatchAccumulator::add(std::span<const double>, std::span<const double>, std::span<const double>);

}  // namespace qarl::rl
