// Generation with the GPU model: continuous batching over a PagedCache (up to max_active
// samples at a time; a finished sample's slot is refilled by the next one, whose prompt is
// prefilled in the same forward as the others' decode steps). Steps without a prefill run as
// CUDA graphs (decode_graph.h). Greedy rows pick their token on the device (argmax_gpu.h: the
// same index as rollout::argmax_token) and copy back only it and its logit; sampled rows copy
// their fp32 logits row and sample on the host with the CPU engine's sampler
// (rollout::sample_token, Philox keyed by (seed, request, sample, step)), so the requests,
// parameters and outputs are the rollout engine's (rollout/engine.h). The reported logprob is
// z[token] - lse with lse from the device's logprobs kernel: bitwise what forward_train
// computes for that token in exact mode.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "qarl/gpu/gpu_model.h"
#include "qarl/rollout/engine.h"
#include "qarl/rollout/sampling.h"

namespace qarl::gpu {

struct GenerateStats {
  double prefill_s = 0, decode_s = 0;  // forward + logits copy of steps with / without prefill
  int64_t prefill_tokens = 0, decode_tokens = 0, steps = 0, decode_steps = 0;
  int64_t graph_steps = 0, graph_captures = 0;  // decode steps replayed from a CUDA graph
  // The PagedCache's (paged_cache.h): device bytes (incl. scratch), storage per token, scratch.
  int64_t kv_cache_bytes = 0, kv_bytes_per_token = 0, kv_scratch_bytes = 0;
};

struct GenerateOptions {
  uint64_t seed = 0;     // for requests without their own
  int max_active = 256;  // samples in flight (cache slots)
  bool cuda_graphs = true;  // capture decode steps (off: the same kernels launched one by one)
  // KV storage, as the CPU engine's EngineConfig::kv_mode (--kv-cache, rollout.kv_cache): auto
  // keeps bf16 fake-quantized rows; fp8 / nvfp4 keep the K/V quantizers' codes (needs them
  // enabled in that format with their amax: usage Error otherwise). Same tokens and logprobs.
  // Native caches decode in CUDA graphs too (the decode to scratch reads its count on the device).
  rollout::KVCacheMode kv_mode = rollout::KVCacheMode::Auto;
};

// Outputs in request order, samples in order within a request; a request with bad parameters
// or an empty prompt gets one output carrying `error`.
std::vector<rollout::SampleOutput> generate(GpuModel& m, std::vector<rollout::GenRequest> reqs,
                                            const GenerateOptions& o,
                                            const std::function<void(int64_t)>& progress = {},
                                            GenerateStats* stats = nullptr);

// Convenience: one sample per prompt with shared parameters and seed.
std::vector<rollout::SampleOutput> generate(GpuModel& m,
                                            const std::vector<std::vector<int32_t>>& prompts,
                                            const rollout::SamplingParams& p, uint64_t seed,
                                            GenerateStats* stats = nullptr);

}  // namespace qarl::gpu
