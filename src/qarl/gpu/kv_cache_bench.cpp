// `qarl bench` case model_decode_kvcache: what native FP8 / NVFP4 KV storage costs and saves in
// the GPU rollout (paged_cache.h). Qwen3-0.6B shape (random init), fast GEMM, greedy decode,
// FP8 (constant amax) and NVFP4 (amax 8) K/V quantizers; for each, the simulated cache (bf16
// fake-quantized rows) against the native one (codes + one layer of bf16 scratch, decoded
// before each layer's attention). Reported per row: decode step time and tokens/s, the cache's
// bytes per token and device bytes, and the GPU time of the native decode (section
// fwd.kv_read) per forward, from a short run under the section timer (its prefill step
// decodes as many rows as a decode step, so the average stands for both; the attention
// metric of that run includes the prefill's). Both caches produce the same tokens (checked).
#include <algorithm>

#include <cuda_runtime.h>
#include <fmt/format.h>

#include "qarl/core/error.h"
#include "qarl/core/log.h"
#include "qarl/core/rng.h"
#include "qarl/gpu/bench_util.h"
#include "qarl/gpu/generate.h"
#include "qarl/gpu/gpu_model.h"
#include "qarl/gpu/section_timer.h"
#include "qarl/perf/registry.h"

namespace qarl::perf {
namespace {

using gpu::bench::now_s;
using gpu::bench::qwen3_06b_shape;

std::vector<quant::TensorQuantizer> quantizers(int n, quant::Format f) {
  quant::QuantizerConfig c;
  c.enable = true;
  c.format = f;
  c.block_size = f == quant::Format::NVFP4 ? 16 : 0;
  c.use_constant_amax = f == quant::Format::FP8;
  std::vector<quant::TensorQuantizer> q(size_t(n), quant::TensorQuantizer{c});
  if (f == quant::Format::NVFP4)
    for (auto& x : q) x.set_amax(8.0f);
  return q;
}

std::vector<Result> run_kv(const Options& opt) {
  const io::HFConfig cfg = qwen3_06b_shape(opt.quick);
  model::Model host = model::Model::random_init(cfg, 1234);
  gpu::GpuModel m(host, gpu::GemmMode::kFast);
  const std::string shape = fmt::format("{}L h{} kv{}x{}", cfg.num_hidden_layers, cfg.hidden_size,
                                        cfg.num_key_value_heads, cfg.head_dim);
  struct Shape { int batch, prompt, gen; };
  const std::vector<Shape> shapes = opt.quick ? std::vector<Shape>{{4, 40, 8}}
                                              : std::vector<Shape>{{1, 128, 128}, {64, 128, 128}, {64, 1024, 64}};
  std::vector<Result> out;
  for (quant::Format f : {quant::Format::FP8, quant::Format::NVFP4}) {
    m.set_kv_quantizers(quantizers(cfg.num_hidden_layers, f), quantizers(cfg.num_hidden_layers, f));
    const auto native = f == quant::Format::FP8 ? rollout::KVCacheMode::FP8 : rollout::KVCacheMode::NVFP4;
    for (const Shape& sh : shapes) {
      SequentialRng rng(7, 1);
      std::vector<rollout::GenRequest> reqs(size_t(sh.batch));
      for (auto& q : reqs) {
        for (int i = 0; i < sh.prompt; ++i) q.prompt.push_back(int32_t(rng.below(uint64_t(cfg.vocab_size))));
        q.params.temperature = 0.0f;
        q.params.max_new_tokens = sh.gen;
      }
      double sim_step = 0;
      std::vector<std::vector<int32_t>> sim_tokens;
      for (auto mode : {rollout::KVCacheMode::Auto, native}) {
        gpu::GenerateOptions o;
        o.kv_mode = mode;
        {  // warm-up (allocations, kernels)
          auto w = reqs;
          for (auto& q : w) q.params.max_new_tokens = 2;
          gpu::generate(m, w, o);
        }
        cudaDeviceSynchronize();
        gpu::GenerateStats st;
        const double t0 = now_s();
        const auto outs = gpu::generate(m, reqs, o, {}, &st);
        const double total = now_s() - t0;
        const double step = st.decode_s / double(std::max<int64_t>(1, st.decode_steps));
        // The decode's own GPU time: one more (short) run under the section timer.
        double kv_read_s = 0, attn_s = 0;
        int64_t steps_timed = 0;
        {
          auto w = reqs;
          for (auto& q : w) q.params.max_new_tokens = std::min(sh.gen, 8);
          gpu::GenerateStats ts;
          gpu::SectionTimer timer;
          gpu::generate(m, w, o, {}, &ts);
          for (const auto& [name, sec] : timer.totals()) {
            if (name == "fwd.kv_read") kv_read_s = sec;
            if (name == "fwd.attention") attn_s = sec;
          }
          steps_timed = ts.steps;
        }
        std::vector<std::vector<int32_t>> toks;
        for (const auto& s : outs) toks.push_back(s.tokens);
        const bool is_native = mode != rollout::KVCacheMode::Auto;
        if (!is_native) {
          sim_step = step;
          sim_tokens = toks;
        } else if (toks != sim_tokens) {
          throw Error(fmt::format("bench: the native {} cache generated other tokens than the simulated one",
                                  rollout::kv_cache_mode_name(mode)), ErrorKind::Internal);
        }
        const double per_fwd_kv = kv_read_s / double(std::max<int64_t>(1, steps_timed));
        const double per_fwd_attn = attn_s / double(std::max<int64_t>(1, steps_timed));
        const std::string label = is_native ? fmt::format("{}-native", quant::format_name(f))
                                            : fmt::format("{}-sim-bf16", quant::format_name(f));
        Result r{fmt::format("model_decode_kvcache_b{}_p{}_{}", sh.batch, sh.prompt, label), "BF16",
                 fmt::format("{} {}+{}", shape, sh.prompt, sh.gen), step, 0, 0,
                 fmt::format("{:.0f} tok/s decode ({:.2f} ms/step{}), {:.1f} tok/s generate; KV {} B/token, cache "
                             "{:.1f} MiB (scratch {:.1f}); kv_read (decode to scratch) {:.3f} ms GPU per forward",
                             sh.batch / step, step * 1e3,
                             is_native ? fmt::format(", {:+.1f}% vs simulated", (step / sim_step - 1) * 100) : "",
                             double(sh.batch) * sh.gen / total, st.kv_bytes_per_token,
                             double(st.kv_cache_bytes) / (1 << 20),
                             double(st.kv_scratch_bytes) / (1 << 20),
                             per_fwd_kv * 1e3)};
        r.metrics = {{"decode_tokens_per_s", sh.batch / step},
                     {"decode_step_s", step},
                     {"tokens_per_s", double(sh.batch) * sh.gen / total},
                     {"kv_bytes_per_token", double(st.kv_bytes_per_token)},
                     {"kv_cache_bytes", double(st.kv_cache_bytes)},
                     {"kv_scratch_bytes", double(st.kv_scratch_bytes)},
                     {"kv_read_s_per_forward", per_fwd_kv},
                     {"attention_s_per_forward_with_prefill", per_fwd_attn}};
        if (is_native) r.metrics.emplace_back("step_vs_simulated", step / sim_step);
        log_info("{}: {}", r.name, r.note);
        out.push_back(std::move(r));
      }
    }
  }
  return out;
}

}  // namespace

void add_gpu_kv_cache_benchmarks(Registry& r) {
  r.add(Case{"model_decode_kvcache", Backend::CUDA,
             "GPU decode with the simulated (bf16) vs native fp8/nvfp4 KV cache, Qwen3-0.6B shape: tok/s, cache bytes",
             run_kv});
}

}  // namespace qarl::perf
