// Token sampling for the rollout engine: greedy, temperature, top-k, top-p, min-p, with all
// randomness drawn from qarl::CounterRng keyed by (seed, request, sample) at the step (the
// index of the generated token). A sample's tokens therefore never depend on what else is in
// the batch, on preemption/recompute, or on thread counts.
//
// The distribution (temperature T > 0), computed in double in a fixed order:
//   w_i = exp(l_i / T - max_j l_j / T)                     (unnormalized probabilities)
//   1. top-k (k > 0): keep the k largest w (ties: lower token id first);
//   2. top-p (p < 1): over the survivors of 1, sorted by w descending (ties: lower id first),
//      keep a token while the mass of the tokens before it is < p * (mass of survivors);
//      the first token is always kept;
//   3. min-p (m > 0): keep only tokens with w_i >= m * max w (ratio, so unaffected by 1-2).
// Then one uniform u in [0,1) picks by inverse CDF over the kept tokens in ascending token
// id order. Greedy (T == 0) takes the argmax (ties: lowest id) and uses no randomness.
//
// The logprob the engine reports is NOT computed here: it is model::token_logprob() at the
// logprob temperature (T, or 1 for greedy), before any truncation, the very function the
// trainer's scoring uses, so the two agree bitwise.
#pragma once
#include <functional>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qarl/core/rng.h"

namespace qarl::rollout {

struct SamplingParams {
  float temperature = 1.0f;  // 0: greedy
  int top_k = 0;             // 0 or -1: off
  float top_p = 1.0f;        // (0, 1]; 1: off
  float min_p = 0.0f;        // [0, 1]; 0: off
  int max_new_tokens = 16;   // >= 1
  std::vector<int32_t> stop_token_ids;
  // Stop strings (or any other stop rule on the text): a factory giving each sample its own
  // incremental checker, fed every generated token in order; returning true finishes the
  // sample with reason "stop" (the token that completed the stop string is kept, as vLLM).
  std::function<std::function<bool(int32_t)>()> stop_checker;
  int n = 1;                      // samples per prompt, >= 1
  std::optional<uint64_t> seed;   // per-request seed; the engine's seed when absent

  bool greedy() const { return temperature == 0.0f; }
  // The temperature logprobs are reported at: T, or 1 for greedy.
  float logprob_temperature() const { return greedy() ? 1.0f : temperature; }
};

// Empty when valid, else a message naming the bad parameter ("top_p must be in (0, 1], got 0").
std::string validate_sampling(const SamplingParams& p, int vocab_size);

// The RNG stream of sample `sample` of request `request`: stream id (request << 24) | sample.
// Requests < 2^40 and samples < 2^24 are distinct (validated by the engine).
CounterRng sample_rng(uint64_t seed, uint64_t request, uint32_t sample);

// Greedy: index of the largest logit, lowest index on ties. NaN logits are never chosen
// unless all are NaN (then 0).
int32_t argmax_token(const float* logits, int vocab);

// Work buffers reused across calls (one per thread).
struct SamplerScratch {
  std::vector<double> w;
  std::vector<int32_t> order;
  std::vector<uint8_t> keep;
};

// Which tokens survive top-k, top-p and min-p (temperature > 0), as a 0/1 mask; also the
// weights w. Exposed for tests.
void kept_tokens(const float* logits, int vocab, const SamplingParams& p, SamplerScratch& s);

// Samples one token from logits (fp32, [vocab]) at generation step `step`.
int32_t sample_token(const float* logits, int vocab, const SamplingParams& p,
                     const CounterRng& rng, uint64_t step, SamplerScratch& s);

}  // namespace qarl::rollout
