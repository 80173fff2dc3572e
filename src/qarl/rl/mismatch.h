// Trainer/rollout mismatch metrics, exactly as NeMo-RL's ClippedPGLossFn computes them
// (reference-spec 1.5), as masked token means with g = generation (rollout) logprobs and
// p = prev (trainer, quantized) logprobs of the sampled tokens:
//   token_mult_prob_error = mean(exp(|g - p|))
//   gen_kl_error          = mean(calculate_kl(logprobs=g, reference=p, kl_type))
//   policy_kl_error       = mean(calculate_kl(logprobs=p, reference=g, kl_type))
//   js_divergence_error   = mean(0.5*(exp(p-m) - (p-m) - 1) + 0.5*(exp(g-m) - (g-m) - 1)),
//                           m = log(0.5*exp(p) + 0.5*exp(g))
// The sums are kept separately so that micro-batches and steps can be merged exactly.
#pragma once
#include <span>

#include "qarl/rl/kl.h"

namespace qarl::rl {

struct MismatchMetrics {
  double token_mult_prob_error = 0;
  double gen_kl_error = 0;
  double policy_kl_error = 0;
  double js_divergence_error = 0;
  double max_token_mult_prob_error = 0;  // largest exp(|g - p|) of one token
  double valid_tokens = 0;
};

// Accumulates masked sums; mean() divides by the token count (0 tokens: all zero).
class MismatchAccumulator {
 public:
  explicit MismatchAccumulator(KlType kl_type = KlType::K3) : kl_type_(kl_type) {}
  template <typename T>
  void add(std::span<const T> gen_logp, std::span<const T> prev_logp, std::span<const T> mask);
  MismatchMetrics mean() const;

 private:
  KlType kl_type_;
  double mult_ = 0, gen_kl_ = 0, policy_kl_ = 0, js_ = 0, max_mult_ = 0, tokens_ = 0;
};

template <typename T>
MismatchMetrics mismatch_metrics(std::span<const T> gen_logp, std::span<const T> prev_logp,
                                 std::span<const T> mask, KlType kl_type = KlType::K3) {
  MismatchAccumulator acc(kl_type);
  acc.add(gen_logp, prev_logp, mask);
  return acc.mean();
}

}  // namespace qarl::rl
