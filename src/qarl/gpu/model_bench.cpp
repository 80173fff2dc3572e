// `qarl bench` cases of the GPU model on the Qwen3-0.6B shape (random init, bf16 weights),
// the shape bench/gpu/peers.py runs transformers on, in both GEMM modes:
//   model_decode_b{1,64}_{fast,exact}: generate 128 new tokens after a 128-token prompt,
//     greedy; tokens/s as transformers' generate is timed (prefill included), and the decode
//     step against the roofline "bf16 weights read once per step" (GB/s of weight bytes);
//   model_train_{fast,exact}: one training step of 8 x 1024 tokens (forward, backward of a
//     token-mean loss, clipping, AdamW); TFLOP/s at 6 x params x tokens.
#include <algorithm>
#include <chrono>

#include <cuda_runtime.h>
#include <fmt/format.h>

#include "qarl/core/log.h"
#include "qarl/core/rng.h"
#include "qarl/gpu/generate.h"
#include "qarl/gpu/gpu_adamw.h"
#include "qarl/gpu/gpu_model.h"
#include "qarl/gpu/section_timer.h"
#include "qarl/gpu/train_state.h"
#include "qarl/kernels/cuda/device.h"
#include "qarl/perf/registry.h"

namespace qarl::perf {
namespace {

io::HFConfig qwen3_06b(bool quick) {
  io::HFConfig c;
  c.architecture = "Qwen3ForCausalLM";
  c.family = io::ModelFamily::Qwen3;
  c.model_type = "qwen3";
  c.vocab_size = quick ? 4099 : 151936;
  c.hidden_size = 1024;
  c.intermediate_size = 3072;
  c.num_hidden_layers = quick ? 2 : 28;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.max_position_embeddings = 40960;
  c.rope_theta = 1000000.0;
  c.rms_norm_eps = 1e-6;
  c.qk_norm = true;
  c.tie_word_embeddings = true;
  return c;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<std::vector<int32_t>> random_tokens(int batch, int len, int vocab, uint64_t seed) {
  SequentialRng rng(seed, 1);
  std::vector<std::vector<int32_t>> s(static_cast<size_t>(batch));
  for (auto& v : s)
    for (int i = 0; i < len; ++i) v.push_back(int32_t(rng.below(uint64_t(vocab))));
  return s;
}

std::vector<Result> run_model(const Options& opt) {
  const io::HFConfig cfg = qwen3_06b(opt.quick);
  const double t_init = now_s();
  model::Model host = model::Model::random_init(cfg, 1234);
  gpu::GpuModel m(host, gpu::GemmMode::kFast);
  const double params = double(m.num_params());
  const double wbytes = double(m.weight_bytes_bf16());
  log_info("bench model: Qwen3-0.6B shape ({} layers), {:.0f} M params, init {:.1f} s", cfg.num_hidden_layers,
           params / 1e6, now_s() - t_init);
  std::vector<Result> out;
  const std::string shape = fmt::format("{}L h{} v{}", cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size);
  const int prompt = 128, gen = opt.quick ? 16 : 128;
  for (gpu::GemmMode mode : {gpu::GemmMode::kFast, gpu::GemmMode::kExact}) {
    m.set_gemm_mode(mode);
    const char* mn = kernels::gpu::gemm_mode_name(mode);
    for (int batch : {1, 64}) {
      rollout::SamplingParams p;
      p.temperature = 0.0f;
      p.max_new_tokens = gen;
      const auto prompts = random_tokens(batch, prompt, cfg.vocab_size, 7);
      gpu::generate(m, prompts, [&] { auto q = p; q.max_new_tokens = 4; return q; }(), 1);  // warm-up
      cudaDeviceSynchronize();
      gpu::GenerateStats st;
      const double t0 = now_s();
      gpu::generate(m, prompts, p, 1, &st);
      const double total = now_s() - t0;
      const double step_s = st.decode_s / std::max<int64_t>(1, st.decode_steps);
      Result r{fmt::format("model_decode_b{}_{}", batch, mn), "BF16", shape, step_s, wbytes, 0,
               fmt::format("{:.1f} tok/s generate ({} prompt + {} new, prefill {:.1f} ms); decode step "
                           "{:.2f} ms = {:.0f} tok/s; GB/s = weights read per step",
                           double(batch) * gen / total, prompt, gen, st.prefill_s * 1e3, step_s * 1e3,
                           batch / step_s)};
      r.metrics = {{"tokens_per_s", double(batch) * gen / total}, {"decode_step_s", step_s},
                   {"decode_tokens_per_s", batch / step_s}, {"prefill_s", st.prefill_s}};
      out.push_back(r);
    }
  }
  // Training step: 8 x 1024 tokens (2 x 256 in quick mode).
  const int tb = opt.quick ? 2 : 8, tl = opt.quick ? 256 : 1024;
  const auto seqs = random_tokens(tb, tl, cfg.vocab_size, 11);
  gpu::GpuGrads grads(m);
  gpu::GpuAdamW adam(m);
  std::vector<std::vector<float>> d(seqs.size(), std::vector<float>(size_t(tl - 1), -1.0f / float(tb * (tl - 1))));
  for (gpu::GemmMode mode : {gpu::GemmMode::kFast, gpu::GemmMode::kExact}) {
    m.set_gemm_mode(mode);
    gpu::TrainState st;
    double phase[3] = {0, 0, 0};  // forward, backward, clip + AdamW (synchronized, summed)
    auto step = [&] {
      double t0 = now_s();
      gpu::forward_train(m, seqs, 1.0f, st);
      cudaDeviceSynchronize();
      double t1 = now_s();
      grads.zero();
      gpu::backward(m, st, d, grads);
      cudaDeviceSynchronize();
      double t2 = now_s();
      adam.clip(grads, 1.0);
      adam.step(grads, 1e-6);
      cudaDeviceSynchronize();
      double t3 = now_s();
      phase[0] += t1 - t0, phase[1] += t2 - t1, phase[2] += t3 - t2;
    };
    step();
    phase[0] = phase[1] = phase[2] = 0;
    std::vector<double> t;
    const int reps = opt.quick ? 2 : 4;
    for (int i = 0; i < reps; ++i) {
      const double t0 = now_s();
      step();
      t.push_back(now_s() - t0);
    }
    std::sort(t.begin(), t.end());
    const double s = t[t.size() / 2];
    // One more step with every section timed (CUDA events between the model's marks).
    std::vector<std::pair<std::string, double>> sections;
    {
      gpu::SectionTimer timer;
      gpu::forward_train(m, seqs, 1.0f, st);
      gpu::section("zero_grads");
      grads.zero();
      gpu::backward(m, st, d, grads);
      gpu::section("clip");
      adam.clip(grads, 1.0);
      gpu::section("adamw");
      adam.step(grads, 1e-6);
      sections = timer.totals();
    }
    log_info("model_train_{}: GPU time by section, one step:\n{}", kernels::gpu::gemm_mode_name(mode),
             gpu::format_sections(sections));
    for (double& p : phase) p /= reps;
    const double tokens = double(tb) * tl, flops = 6.0 * params * tokens;
    out.push_back(Result{fmt::format("model_train_{}", kernels::gpu::gemm_mode_name(mode)), "BF16",
                         fmt::format("{}x{} {}", tb, tl, shape), s, 0, flops,
                         fmt::format("{:.0f} tok/s, {:.0f} TFLOP/s at 6 N T (N = {:.0f} M); forward {:.0f} ms, "
                                     "backward {:.0f} ms, clip+AdamW {:.0f} ms",
                                     tokens / s, flops / s / 1e12, params / 1e6, phase[0] * 1e3,
                                     phase[1] * 1e3, phase[2] * 1e3),
                         {{"tokens_per_s", tokens / s}, {"params", params}, {"forward_s", phase[0]},
                          {"backward_s", phase[1]}, {"optimizer_s", phase[2]}}});
    for (const auto& [name, sec] : sections) out.back().metrics.emplace_back("section_s." + name, sec);
  }
  return out;
}

}  // namespace

void add_gpu_model_benchmarks(Registry& r) {
  r.add(Case{"model", Backend::CUDA,
             "GPU model on the Qwen3-0.6B shape: generate b1/b64 and a training step, fast and exact GEMM",
             run_model});
}

}  // namespace qarl::perf
