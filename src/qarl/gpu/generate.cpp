#include "qarl/gpu/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>

#include <cuda_runtime.h>

#include "qarl/core/error.h"
#include "qarl/gpu/decode_graph.h"
#include "qarl/gpu/paged_cache.h"
#include "qarl/kernels/cuda/argmax_gpu.h"
#include "qarl/kernels/cuda/model_ops.h"

namespace qarl::gpu {
namespace kg = kernels::gpu;

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A pinned host buffer (the per-step copies back are a few bytes per row).
struct PinnedF32 {
  float* p = nullptr;
  explicit PinnedF32(size_t n) {
    if (cudaMallocHost(&p, std::max<size_t>(n, 1) * 4) != cudaSuccess)
      throw runtime_err("generate: cudaMallocHost of {} bytes failed", n * 4);
  }
  ~PinnedF32() { cudaFreeHost(p); }
  PinnedF32(const PinnedF32&) = delete;
  PinnedF32& operator=(const PinnedF32&) = delete;
};

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
                                               slots, max_len, 16, o.kv_mode);
  cache.set_codecs(m.k_quantizers(), m.v_quantizers());  // native modes: the scales, checked
  if (stats) {
    stats->kv_cache_bytes = cache.bytes();
    stats->kv_bytes_per_token = cache.bytes_per_token();
    stats->kv_scratch_bytes = cache.scratch_bytes();
  }
  // The RoPE tables cover every position up front: a captured decode step reads them in place.
  m.ensure_rope(max_len);
  DecodeGraphs graphs(m, cache, o.cuda_graphs);
  std::vector<int> free_slots;
  for (int s = slots - 1; s >= 0; --s) free_slots.push_back(s);
  std::vector<Sample> active;
  std::vector<Chunk> chunks;
  Tensor lse_d = Tensor::empty({slots}, DType::F32, Device::CUDA);
  Tensor idx_d = Tensor::empty({slots}, DType::I32, Device::CUDA);
  Tensor val_d = Tensor::empty({slots}, DType::F32, Device::CUDA);
  Tensor argmax_scratch = Tensor::empty({std::max<int64_t>(1, kg::argmax_scratch_bytes(slots, V))}, DType::U8,
                                        Device::CUDA);
  // Per row back to the host: lse, and for greedy rows the argmax and its logit (pinned, one
  // copy each); sampled rows copy their whole logits row.
  PinnedF32 small(size_t(3 * slots));
  float* lse_h = small.p;
  int32_t* idx_h = reinterpret_cast<int32_t*>(small.p + slots);
  float* val_h = small.p + 2 * slots;
  std::vector<float> logits_h;
  std::vector<int32_t> step_tok, step_pos, step_seq;
  rollout::SamplerScratch scratch;
  int64_t done = 0;

  while (!pending.empty() || !active.empty()) {
    // Admit waiting samples into free slots: their prompts are prefilled in this step.
    chunks.clear();
    step_tok.clear();
    step_pos.clear();
    step_seq.clear();
    bool has_prefill = false;
    for (Sample& a : active) {
      const auto& toks = outs[a.out].tokens;
      chunks.push_back(Chunk{a.slot, {toks.back()}, a.len, 1});
      step_tok.push_back(toks.back());
      step_pos.push_back(a.len);
      step_seq.push_back(a.slot);
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
    Tensor logits;
    void* stream = nullptr;
    if (has_prefill) {
      logits = m.forward(chunks, cache);
    } else {
      // A pure decode step: one token per active sample, through the (captured) decode step.
      for (size_t r = 0; r < step_seq.size(); ++r) cache.reserve(step_seq[r], step_pos[r] + 1);
      logits = graphs.step(step_tok, step_pos, step_seq);
      stream = graphs.stream();
    }
    const int64_t n = logits.dim(0);
    // One lse per row at its request's logprob temperature (T, or 1 for greedy): rows are
    // grouped by equal temperature so every row uses the kernel's own expression.
    bool any_greedy = false;
    for (int64_t r = 0; r < n;) {
      const float lt = reqs[active[size_t(r)].req].params.logprob_temperature();
      int64_t e = r + 1;
      while (e < n && reqs[active[size_t(e)].req].params.logprob_temperature() == lt) ++e;
      kg::launch_logprobs_forward(logits.data_as<float>() + r * V, V, e - r, V, lt, nullptr,
                                  lse_d.data_as<float>() + r, nullptr, stream);
      r = e;
    }
    for (int64_t r = 0; r < n; ++r) any_greedy = any_greedy || reqs[active[size_t(r)].req].params.greedy();
    if (any_greedy)
      kg::launch_argmax_rows(logits.data_as<float>(), V, n, V, argmax_scratch.data(), idx_d.data_as<int32_t>(),
                             val_d.data_as<float>(), stream);
    kg::check_last_launch("generate: logprobs / argmax");
    cudaStream_t cs = static_cast<cudaStream_t>(stream);
    cudaMemcpyAsync(lse_h, lse_d.data(), size_t(n) * 4, cudaMemcpyDeviceToHost, cs);
    if (any_greedy) {
      cudaMemcpyAsync(idx_h, idx_d.data(), size_t(n) * 4, cudaMemcpyDeviceToHost, cs);
      cudaMemcpyAsync(val_h, val_d.data(), size_t(n) * 4, cudaMemcpyDeviceToHost, cs);
    }
    // Sampled rows: the whole row, in runs of consecutive sampled rows.
    if (!std::all_of(active.begin(), active.begin() + n, [&](const Sample& a) { return reqs[a.req].params.greedy(); }))
      logits_h.resize(size_t(n) * size_t(V));
    for (int64_t r = 0; r < n;) {
      if (reqs[active[size_t(r)].req].params.greedy()) {
        ++r;
        continue;
      }
      int64_t e = r + 1;
      while (e < n && !reqs[active[size_t(e)].req].params.greedy()) ++e;
      cudaMemcpyAsync(logits_h.data() + r * V, logits.data_as<float>() + r * V, size_t(e - r) * size_t(V) * 4,
                      cudaMemcpyDeviceToHost, cs);
      r = e;
    }
    cudaStreamSynchronize(cs);
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
      const uint64_t step = so.tokens.size();
      const int64_t rng_index = reqs[a.req].rng_index >= 0 ? reqs[a.req].rng_index : int64_t(a.req);
      int32_t tok;
      float z;
      if (p.greedy()) {
        // The device's argmax_token and the logit there (T = 1: z is the logit itself).
        tok = idx_h[r];
        z = val_h[r];
      } else {
        const float* row = logits_h.data() + r * V;
        tok = rollout::sample_token(row, V, p, rollout::sample_rng(a.seed, uint64_t(rng_index), uint32_t(a.sample)),
                                    step, scratch);
        // The device kernel's expression: z = logits / T (no division at T == 1), z[tok] - lse.
        const float lt = p.logprob_temperature();
        z = lt == 1.0f ? row[tok] : row[tok] / lt;
      }
      so.tokens.push_back(tok);
      so.logprobs.push_back(z - lse_h[r]);
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
  if (stats) {
    stats->graph_steps += graphs.graph_steps();
    stats->graph_captures += graphs.captures();
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
