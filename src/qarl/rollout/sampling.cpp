#include "qarl/rollout/sampling.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace qarl::rollout {

std::string validate_sampling(const SamplingParams& p, int vocab_size) {
  if (!std::isfinite(p.temperature) || p.temperature < 0)
    return fmt::format("temperature must be finite and >= 0, got {}", p.temperature);
  if (p.top_k < -1) return fmt::format("top_k must be >= 0 (or -1 for off), got {}", p.top_k);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
    return fmt::format("top_p must be in (0, 1], got {}", p.top_p);
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f))
    return fmt::format("min_p must be in [0, 1], got {}", p.min_p);
  if (p.max_new_tokens < 1)
    return fmt::format("max_new_tokens must be >= 1, got {}", p.max_new_tokens);
  if (p.n < 1 || p.n >= (1 << 24)) return fmt::format("n must be in [1, 2^24), got {}", p.n);
  for (int32_t t : p.stop_token_ids)
    if (t < 0 || t >= vocab_size)
      return fmt::format("stop token id {} is outside the vocabulary [0, {})", t, vocab_size);
  return {};
}

CounterRng sample_rng(uint64_t seed, uint64_t request, uint32_t sample) {
  return CounterRng(seed, (request << 24) | sample);
}

int32_t argmax_token(const float* logits, int vocab) {
  int32_t best = -1;
  for (int i = 0; i < vocab; ++i) {
    float v = logits[i];
    if (v != v) continue;
    if (best < 0 || v > logits[best]) best = i;
  }
  return best < 0 ? 0 : best;
}

void kept_tokens(const float* logits, int vocab, const SamplingParams& p, SamplerScratch& s) {
  s.w.resize(size_t(vocab));
  s.keep.assign(size_t(vocab), 1);
  const double T = p.temperature;
  double m = -INFINITY;
  for (int i = 0; i < vocab; ++i) {
    double z = double(logits[i]) / T;
    if (z > m) m = z;  // NaN never wins
  }
  for (int i = 0; i < vocab; ++i) {
    double z = double(logits[i]) / T;
    double w = z == z ? std::exp(z - m) : 0.0;  // NaN logits get weight 0
    s.w[size_t(i)] = w;
    if (!(w > 0)) s.keep[size_t(i)] = 0;
  }
  const bool top_k = p.top_k > 0 && p.top_k < vocab;
  const bool top_p = p.top_p < 1.0f;
  if (top_k || top_p) {
    s.order.resize(size_t(vocab));
    for (int i = 0; i < vocab; ++i) s.order[size_t(i)] = i;
    auto before = [&](int32_t a, int32_t b) {
      double wa = s.w[size_t(a)], wb = s.w[size_t(b)];
      return wa != wb ? wa > wb : a < b;
    };
    size_t n = size_t(vocab);
    if (top_k) {
      std::partial_sort(s.order.begin(), s.order.begin() + p.top_k, s.order.end(), before);
      for (size_t j = size_t(p.top_k); j < size_t(vocab); ++j) s.keep[size_t(s.order[j])] = 0;
      n = size_t(p.top_k);
    } else {
      std::sort(s.order.begin(), s.order.end(), before);
    }
    if (top_p) {
      double total = 0;
      for (size_t j = 0; j < n; ++j) total += s.w[size_t(s.order[j])];
      const double limit = double(p.top_p) * total;
      double before_mass = 0;
      for (size_t j = 0; j < n; ++j) {
        if (j > 0 && !(before_mass < limit)) s.keep[size_t(s.order[j])] = 0;
        before_mass += s.w[size_t(s.order[j])];
      }
    }
  }
  if (p.min_p > 0.0f) {
    const double thr = double(p.min_p);  // max w is exp(0) = 1
    for (int i = 0; i < vocab; ++i)
      if (s.w[size_t(i)] < thr) s.keep[size_t(i)] = 0;
  }
}

int32_t sample_token(const float* logits, int vocab, const SamplingParams& p,
                     const CounterRng& rng, uint64_t step, SamplerScratch& s) {
  if (p.greedy()) return argmax_token(logits, vocab);
  kept_tokens(logits, vocab, p, s);
  double total = 0;
  int32_t last = -1;
  for (int i = 0; i < vocab; ++i)
    if (s.keep[size_t(i)]) {
      total += s.w[size_t(i)];
      last = i;
    }
  if (last < 0) return argmax_token(logits, vocab);  // every logit NaN
  const double target = rng.uniform_f64(step, 0) * total;
  double cum = 0;
  for (int i = 0; i <= last; ++i)
    if (s.keep[size_t(i)]) {
      cum += s.w[size_t(i)];
      if (cum > target) return i;
    }
  return last;  // u * total rounded up to total
}

}  // namespace qarl::rollout
