// Batched generation with the GPU model: one prefill forward for all prompts, then one decode
// forward per step for every unfinished sample, K/V in a PagedCache. Sampling runs on the host
// over the fp32 logits row with rollout::sample_token (the CPU engine's sampler, Philox keyed
// by (seed, request, sample, step)); the reported logprob is z[token] - lse with lse from the
// device's logprobs kernel: bitwise what the trainer's forward_train computes for that token in
// exact GEMM mode.
#pragma once
#include <cstdint>
#include <vector>

#include "qarl/gpu/gpu_model.h"
#include "qarl/rollout/sampling.h"

namespace qarl::gpu {

struct GenerateResult {
  std::vector<int32_t> tokens;   // generated tokens (not the prompt)
  std::vector<float> logprobs;   // at the logprob temperature, one per generated token
  bool stopped = false;          // hit a stop token (else the length limit)
};

struct GenerateStats {
  double prefill_s = 0, decode_s = 0;
  int64_t prefill_tokens = 0, decode_tokens = 0, decode_steps = 0;
};

// One sample per prompt (request ids 0..n-1). Prompts must be non-empty.
std::vector<GenerateResult> generate(GpuModel& m, const std::vector<std::vector<int32_t>>& prompts,
                                     const rollout::SamplingParams& p, uint64_t seed,
                                     GenerateStats* stats = nullptr);

}  // namespace qarl::gpu
