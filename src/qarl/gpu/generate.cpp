#include "qarl/gpu/generate.h"

#include <chrono>
#include <cmath>

#include <cuda_runtime.h>

#include "qarl/core/error.h"
#include "qarl/gpu/paged_cache.h"
#include "qarl/kernels/cuda/model_ops.h"

namespace qarl::gpu {
namespace kg = kernels::gpu;

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

std::vector<GenerateResult> generate(GpuModel& m, const std::vector<std::vector<int32_t>>& prompts,
                                     const rollout::SamplingParams& p, uint64_t seed,
                                     GenerateStats* stats) {
  const auto& c = m.config();
  const int V = c.vocab_size;
  const std::string bad = rollout::validate_sampling(p, V);
  if (!bad.empty()) throw usage_err("{}", bad);
  if (p.n != 1) throw usage_err("GPU generate: n > 1 samples per prompt is not supported yet");
  const int B = int(prompts.size());
  int max_len = 1;
  for (int i = 0; i < B; ++i) {
    if (prompts[size_t(i)].empty()) throw usage_err("prompt {} is empty", i);
    max_len = std::max(max_len, int(prompts[size_t(i)].size()) + p.max_new_tokens);
  }
  PagedCache cache = PagedCache::for_sequences(c.num_hidden_layers, c.num_key_value_heads,
                                               c.head_dim, std::max(B, 1), max_len);
  std::vector<GenerateResult> out(size_t(B));
  std::vector<int> len(size_t(B));
  std::vector<bool> done(size_t(B), false);
  const float lt = p.logprob_temperature();
  Tensor lse_d = Tensor::empty({std::max(B, 1)}, DType::F32, Device::CUDA);
  std::vector<float> logits_h, lse_h;
  rollout::SamplerScratch scratch;

  std::vector<Chunk> chunks;
  for (int i = 0; i < B; ++i) {
    chunks.push_back(Chunk{i, prompts[size_t(i)], 0, 1});
    len[size_t(i)] = int(prompts[size_t(i)].size());
  }
  bool prefill = true;
  double t0 = now_s();
  while (!chunks.empty()) {
    Tensor logits = m.forward(chunks, cache);
    const int64_t n = logits.dim(0);
    kg::launch_logprobs_forward(logits.data_as<float>(), V, n, V, lt, nullptr, lse_d.data_as<float>(),
                                nullptr, nullptr);
    kg::check_last_launch("generate: logprobs");
    logits_h.resize(size_t(n) * size_t(V));
    lse_h.resize(size_t(n));
    cudaMemcpy(logits_h.data(), logits.data(), logits_h.size() * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(lse_h.data(), lse_d.data(), lse_h.size() * 4, cudaMemcpyDeviceToHost);
    kg::check_last_launch("generate: copy logits");
    const double t1 = now_s();
    if (stats) {
      if (prefill) { stats->prefill_s += t1 - t0; for (auto& ch : chunks) stats->prefill_tokens += int64_t(ch.tokens.size()); }
      else { stats->decode_s += t1 - t0; stats->decode_tokens += n; stats->decode_steps += 1; }
    }
    prefill = false;
    std::vector<Chunk> next;
    for (int64_t r = 0; r < n; ++r) {
      const int i = chunks[size_t(r)].seq;
      GenerateResult& g = out[size_t(i)];
      const float* row = logits_h.data() + r * V;
      const uint64_t step = g.tokens.size();
      const int32_t tok = p.greedy() ? rollout::argmax_token(row, V)
                                     : rollout::sample_token(row, V, p, rollout::sample_rng(seed, uint64_t(i), 0),
                                                             step, scratch);
      // The device kernel's expression: z = logits / T (no division at T == 1), z[tok] - lse.
      const float z = lt == 1.0f ? row[tok] : row[tok] / lt;
      g.tokens.push_back(tok);
      g.logprobs.push_back(z - lse_h[size_t(r)]);
      bool stop = false;
      for (int32_t s : p.stop_token_ids) stop = stop || s == tok;
      if (stop) g.stopped = true;
      if (stop || int(g.tokens.size()) >= p.max_new_tokens) {
        done[size_t(i)] = true;
        continue;
      }
      next.push_back(Chunk{i, {tok}, len[size_t(i)], 1});
      len[size_t(i)] += 1;
    }
    chunks = std::move(next);
    t0 = now_s();
  }
  return out;
}

}  // namespace qarl::gpu
