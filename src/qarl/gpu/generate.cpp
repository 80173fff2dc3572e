#include "qarl/gpu/generate.h"

#include <chrono>
#include <cmath>
#include <deque>

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

struct Sample {
  size_t out = 0;       // index into the outputs
  size_t req = 0;
  int sample = 0;
  uint64_t seed = 0;
  int slot = -1;
  int len = 0;          // tokens in the cache after this step's chunk
  std::function<bool(int32_t)> stop;
};
}  // namespace

std::vector<rollout::SampleOutput> generate(GpuModel& m, std::vector<rollout::GenRequest> reqs,
                                            const GenerateOptions& o,
                                            const std::function<void(int64_t)>& progress,
                                            GenerateStats* stats) {
  const auto& c = m.config();
  const int V = c.vocab_size;
  std::vector<rollout::SampleOutput> outs;
  std::deque<Sample> pending;
  int max_len = 1;
  for (size_t r = 0; r < reqs.size(); ++r) {
    const rollout::GenRequest& q = reqs[r];
    std::string bad = rollout::validate_sampling(q.params, V);
    if (bad.empty() && q.prompt.empty()) bad = "the prompt is empty";
    for (int32_t t : q.prompt)
      if (bad.empty() && (t < 0 || t >= V)) bad = fmt::format("token id {} is outside the vocabulary [0, {})", t, V);
    if (!bad.empty()) {
      rollout::SampleOutput e;
      e.request = int64_t(r);
      e.prompt_tokens = q.prompt;
      e.error = bad;
      outs.push_back(std::move(e));
      continue;
    }
    max_len = std::max(max_len, int(q.prompt.size()) + q.params.max_new_tokens);
    for (int s = 0; s < q.params.n; ++s) {
      rollout::SampleOutput so;
      so.request = int64_t(r);
      so.sample = s;
      so.prompt_tokens = q.prompt;
      outs.push_back(std::move(so));
      Sample smp;
      smp.out = outs.size() - 1;
      smp.req = r;
      smp.sample = s;
      smp.seed = q.params.seed ? *q.params.seed : o.seed;
      if (q.params.stop_checker) smp.stop = q.params.stop_checker();
      pending.push_back(std::move(smp));
    }
  }
  const int slots = std::max(1, std::min(o.max_active, int(pending.size())));
  PagedCache cache = PagedCache::for_sequences(c.num_hidden_layers, c.num_key_value_heads, c.head_dim,
                                               slots, max_len);
  std::vector<int> free_slots;
  for (int s = slots - 1; s >= 0; --s) free_slots.push_back(s);
  std::vector<Sample> active;
  std::vector<Chunk> chunks;
  Tensor lse_d = Tensor::empty({slots}, DType::F32, Device::CUDA);
  std::vector<float> logits_h, lse_h;
  rollout::SamplerScratch scratch;
  int64_t done = 0;

  while (!pending.empty() || !active.empty()) {
    // Admit waiting samples into free slots: their prompts are prefilled in this step.
    chunks.clear();
    bool has_prefill = false;
    for (Sample& a : active) {
      const auto& toks = outs[a.out].tokens;
      chunks.push_back(Chunk{a.slot, {toks.back()}, a.len, 1});
      a.len += 1;
    }
    while (!pending.empty() && !free_slots.empty()) {
      Sample s = std::move(pending.front());
      pending.pop_front();
      s.slot = free_slots.back();
      free_slots.pop_back();
      const auto& prompt = reqs[s.req].prompt;
      chunks.push_back(Chunk{s.slot, prompt, 0, 1});
      s.len = int(prompt.size());
      active.push_back(std::move(s));
      has_prefill = true;
    }
    const double t0 = now_s();
    Tensor logits = m.forward(chunks, cache);
    const int64_t n = logits.dim(0);
    // One lse per row at its request's logprob temperature (T, or 1 for greedy): rows are
    // grouped by equal temperature so every row uses the kernel's own expression.
    logits_h.resize(size_t(n) * size_t(V));
    lse_h.resize(size_t(n));
    for (int64_t r = 0; r < n;) {
      const float lt = reqs[active[size_t(r)].req].params.logprob_temperature();
      int64_t e = r + 1;
      while (e < n && reqs[active[size_t(e)].req].params.logprob_temperature() == lt) ++e;
      kg::launch_logprobs_forward(logits.data_as<float>() + r * V, V, e - r, V, lt, nullptr,
                                  lse_d.data_as<float>() + r, nullptr, nullptr);
      r = e;
    }
    kg::check_last_launch("generate: logprobs");
    cudaMemcpy(logits_h.data(), logits.data(), logits_h.size() * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(lse_h.data(), lse_d.data(), lse_h.size() * 4, cudaMemcpyDeviceToHost);
    kg::check_last_launch("generate: copy logits");
    const double t1 = now_s();
    if (stats) {
      stats->steps += 1;
      if (has_prefill) {
        stats->prefill_s += t1 - t0;
        for (const Chunk& ch : chunks) stats->prefill_tokens += int64_t(ch.tokens.size()) - 1;
      } else {
        stats->decode_s += t1 - t0;
        stats->decode_steps += 1;
      }
      stats->decode_tokens += n;
    }
    // Sample every row; finished samples give their slot back.
    std::vector<Sample> still;
    for (int64_t r = 0; r < n; ++r) {
      Sample& a = active[size_t(r)];
      const rollout::SamplingParams& p = reqs[a.req].params;
      rollout::SampleOutput& so = outs[a.out];
      const float* row = logits_h.data() + r * V;
      const uint64_t step = so.tokens.size();
      const int64_t rng_index = reqs[a.req].rng_index >= 0 ? reqs[a.req].rng_index : int64_t(a.req);
      const int32_t tok =
          p.greedy() ? rollout::argmax_token(row, V)
                     : rollout::sample_token(row, V, p, rollout::sample_rng(a.seed, uint64_t(rng_index), uint32_t(a.sample)),
                                             step, scratch);
      // The device kernel's expression: z = logits / T (no division at T == 1), z[tok] - lse.
      const float lt = p.logprob_temperature();
      const float z = lt == 1.0f ? row[tok] : row[tok] / lt;
      so.tokens.push_back(tok);
      so.logprobs.push_back(z - lse_h[size_t(r)]);
      bool stop = false;
      for (int32_t s : p.stop_token_ids) stop = stop || s == tok;
      if (!stop && a.stop) stop = a.stop(tok);
      if (stop || int(so.tokens.size()) >= p.max_new_tokens) {
        so.finish_reason = stop ? "stop" : "length";
        cache.release(a.slot);
        free_slots.push_back(a.slot);
        ++done;
        if (progress) progress(done);
      } else {
        still.push_back(std::move(a));
      }
    }
    active = std::move(still);
  }
  return outs;
}

std::vector<rollout::SampleOutput> generate(GpuModel& m, const std::vector<std::vector<int32_t>>& prompts,
                                            const rollout::SamplingParams& p, uint64_t seed,
                                            GenerateStats* stats) {
  std::vector<rollout::GenRequest> reqs;
  for (const auto& pr : prompts) {
    rollout::GenRequest q;
    q.prompt = pr;
    q.params = p;
    reqs.push_back(std::move(q));
  }
  GenerateOptions o;
  o.seed = seed;
  return generate(m, std::move(reqs), o, {}, stats);
}

}  // namespace qarl::gpu
