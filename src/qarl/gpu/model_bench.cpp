// `qarl bench` cases of the GPU model on the Qwen3-0.6B shape (random init, bf16 weights),
// the shape bench/gpu/peers.py runs transformers on, in both GEMM modes:
//   model_decode_b{1,64}_{fast,exact}: generate 128 new tokens after a 128-token prompt,
//     greedy; tokens/s as transformers' generate is timed (prefill included), and the decode
//     step against the roofline "bf16 weights read once per step" (GB/s of weight bytes);
//     b1 also with the CUDA graphs off (_nograph: what launching costs);
//   model_decode_gemm_*: the decode step's products alone, by mode and exact tile;
//   model_train_{fast,exact}: one training step of 8 x 1024 tokens (forward, backward of a
//     token-mean loss, clipping, AdamW); TFLOP/s at 6 x params x tokens.
#include <algorithm>
#include <functional>
#include <memory>

#include <cuda_runtime.h>
#include <fmt/format.h>

#include "qarl/core/error.h"
#include "qarl/core/log.h"
#include "qarl/core/rng.h"
#include "qarl/gpu/bench_util.h"
#include "qarl/gpu/generate.h"
#include "qarl/gpu/gpu_adamw.h"
#include "qarl/gpu/gpu_model.h"
#include "qarl/gpu/paged_cache.h"
#include "qarl/gpu/section_timer.h"
#include "qarl/gpu/train_state.h"
#include "qarl/kernels/cuda/device.h"
#include "qarl/kernels/cuda/gemm.h"
#include "qarl/kernels/cuda/gemm_internal.h"
#include "qarl/perf/registry.h"

namespace qarl::perf {
namespace {

using gpu::bench::now_s;
using gpu::bench::qwen3_06b_shape;

std::vector<std::vector<int32_t>> random_tokens(int batch, int len, int vocab, uint64_t seed) {
  SequentialRng rng(seed, 1);
  std::vector<std::vector<int32_t>> s(static_cast<size_t>(batch));
  for (auto& v : s)
    for (int i = 0; i < len; ++i) v.push_back(int32_t(rng.below(uint64_t(vocab))));
  return s;
}

// The decode step's matrix products alone, as the step runs them (28 layers x 4 + lm_head,
// one CUDA graph, the model's own weights): the graph's time against the whole step's is how
// much of a decode step the GEMMs are, the rest being the small kernels between them.
double graph_gemm_step_s(gpu::GpuModel& m, int64_t B) {
  namespace kg = kernels::gpu;
  const io::HFConfig& c = m.config();
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t qd = m.q_dim(), W = qd + 2 * int64_t(m.kv_dim());
  auto bf = [](const Tensor& t) { return static_cast<const kg::bf16*>(t.data()); };
  Tensor h1 = Tensor::zeros({B, H}, DType::BF16, Device::CUDA), attn = Tensor::zeros({B, qd}, DType::BF16, Device::CUDA);
  Tensor act = Tensor::zeros({B, I}, DType::BF16, Device::CUDA), gu = Tensor::empty({B, 2 * I}, DType::BF16, Device::CUDA);
  Tensor qkv = Tensor::empty({B, W}, DType::F32, Device::CUDA), x = Tensor::zeros({B, H}, DType::F32, Device::CUDA);
  Tensor logits = Tensor::empty({B, V}, DType::F32, Device::CUDA);
  const kg::GemmMode mode = m.gemm_mode();
  cudaStream_t s = nullptr;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  auto products = [&] {
    for (int l = 0; l < c.num_hidden_layers; ++l) {
      const gpu::GpuLayer& L = m.layer(l);
      kg::gemm_forward(mode, B, W, H, bf(h1), H, bf(L.w_qkv), H, kg::Elem::F32, qkv.data(), W, false, s);
      kg::gemm_forward(mode, B, H, qd, bf(attn), qd, bf(L.w_o), qd, kg::Elem::F32, x.data(), H, true, s);
      kg::gemm_forward(mode, B, 2 * I, H, bf(h1), H, bf(L.w_gu), H, kg::Elem::BF16, gu.data(), 2 * I, false, s);
      kg::gemm_forward(mode, B, H, I, bf(act), I, bf(L.w_down), I, kg::Elem::F32, x.data(), H, true, s);
    }
    kg::gemm_forward(mode, B, V, H, bf(h1), H, bf(m.lm_head_bf16()), H, kg::Elem::F32, logits.data(), V, false, s);
  };
  products();  // warm (attributes, cuBLAS workspace for this stream)
  cudaStreamSynchronize(s);
  cudaGraph_t g = nullptr;
  cudaGraphExec_t ge = nullptr;
  cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed);
  products();
  cudaStreamEndCapture(s, &g);
  double sec = -1;
  if (g && cudaGraphInstantiate(&ge, g, 0) == cudaSuccess) {
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    cudaGraphLaunch(ge, s);
    const int reps = 20;
    cudaEventRecord(e0, s);
    for (int i = 0; i < reps; ++i) cudaGraphLaunch(ge, s);
    cudaEventRecord(e1, s);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    sec = ms * 1e-3 / reps;
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaGraphExecDestroy(ge);
  }
  if (g) cudaGraphDestroy(g);
  cudaStreamSynchronize(s);
  cudaStreamDestroy(s);
  kernels::gpu::check_last_launch("bench: GEMM-only decode graph");
  return sec;
}

struct BenchModel {
  io::HFConfig cfg;
  std::unique_ptr<gpu::GpuModel> m;
  double params = 0, wbytes = 0;
  std::string shape;
};

BenchModel make_model(const Options& opt) {
  BenchModel b;
  b.cfg = qwen3_06b_shape(opt.quick);
  const double t_init = now_s();
  model::Model host = model::Model::random_init(b.cfg, 1234);
  b.m = std::make_unique<gpu::GpuModel>(host, gpu::GemmMode::kFast);
  b.params = double(b.m->num_params());
  b.wbytes = double(b.m->weight_bytes_bf16());
  log_info("bench model: Qwen3-0.6B shape ({} layers), {:.0f} M params, init {:.1f} s", b.cfg.num_hidden_layers,
           b.params / 1e6, now_s() - t_init);
  b.shape = fmt::format("{}L h{} v{}", b.cfg.num_hidden_layers, b.cfg.hidden_size, b.cfg.vocab_size);
  return b;
}

std::vector<Result> run_decode(const Options& opt) {
  BenchModel bm = make_model(opt);
  gpu::GpuModel& m = *bm.m;
  const io::HFConfig& cfg = bm.cfg;
  std::vector<Result> out;
  const int prompt = 128, gen = opt.quick ? 16 : 128;
  for (gpu::GemmMode mode : {gpu::GemmMode::kFast, gpu::GemmMode::kExact}) {
    m.set_gemm_mode(mode);
    const char* mn = kernels::gpu::gemm_mode_name(mode);
    // b1 also without graphs: the launch overhead the graphs remove.
    for (auto [batch, graphs] : {std::pair{1, true}, {64, true}, {1, false}}) {
      rollout::SamplingParams p;
      p.temperature = 0.0f;
      p.max_new_tokens = gen;
      const auto prompts = random_tokens(batch, prompt, cfg.vocab_size, 7);
      std::vector<rollout::GenRequest> reqs, warm;
      for (const auto& pr : prompts) {
        rollout::GenRequest q;
        q.prompt = pr;
        q.params = p;
        reqs.push_back(q);
        q.params.max_new_tokens = 4;
        warm.push_back(q);
      }
      gpu::GenerateOptions go;
      go.seed = 1;
      go.cuda_graphs = graphs;
      gpu::generate(m, warm, go);  // warm-up
      cudaDeviceSynchronize();
      gpu::GenerateStats st;
      const double t0 = now_s();
      gpu::generate(m, reqs, go, {}, &st);
      const double total = now_s() - t0;
      const double step_s = st.decode_s / std::max<int64_t>(1, st.decode_steps);
      Result r{fmt::format("model_decode_b{}_{}{}", batch, mn, graphs ? "" : "_nograph"), "BF16", bm.shape, step_s,
               bm.wbytes, 0,
               fmt::format("{:.1f} tok/s generate ({} prompt + {} new, prefill {:.1f} ms); decode step "
                           "{:.3f} ms = {:.0f} tok/s ({} of {} steps from CUDA graphs); GB/s = weights read per step",
                           double(batch) * gen / total, prompt, gen, st.prefill_s * 1e3, step_s * 1e3,
                           batch / step_s, st.graph_steps, st.decode_steps)};
      r.metrics = {{"tokens_per_s", double(batch) * gen / total}, {"decode_step_s", step_s},
                   {"decode_tokens_per_s", batch / step_s}, {"prefill_s", st.prefill_s},
                   {"graph_steps", double(st.graph_steps)}};
      if (graphs) {
        const double gemm_s = graph_gemm_step_s(m, batch);
        r.note += fmt::format("; its GEMMs alone (one graph): {:.3f} ms", gemm_s * 1e3);
        r.metrics.emplace_back("gemm_graph_s", gemm_s);
      }
      out.push_back(r);
    }
    // Where a batch-1 decode step's GPU time goes: one eager step (kernels launched one by one,
    // so a section also holds the GPU's idle time between its launches) after a 128-token
    // prefill, CUDA events between the model's section marks.
    {
      gpu::PagedCache cache = gpu::PagedCache::for_sequences(cfg.num_hidden_layers, cfg.num_key_value_heads,
                                                             cfg.head_dim, 1, prompt + 2);
      const auto pr = random_tokens(1, prompt, cfg.vocab_size, 9);
      m.forward({gpu::Chunk{0, pr[0], 0, 1}}, cache);
      m.forward({gpu::Chunk{0, {pr[0][0]}, prompt, 1}}, cache);  // warm
      cache.release(0);
      m.forward({gpu::Chunk{0, pr[0], 0, 1}}, cache);
      cudaDeviceSynchronize();
      gpu::SectionTimer timer;
      m.forward({gpu::Chunk{0, {pr[0][0]}, prompt, 1}}, cache);
      const auto sections = timer.totals();
      log_info("model_decode_b1_{}: GPU time by section, one eager decode step:\n{}", mn,
               gpu::format_sections(sections));
      for (const auto& [name, sec] : sections) out.back().metrics.emplace_back("b1_eager_section_s." + name, sec);
    }
  }
  return out;
}

// The decode step's matrix products alone (M = 1 and 64, Qwen3-0.6B shapes): the fast mode's
// dispatch, cuBLAS, and every exact configuration that suits M, against the time to read W.
std::vector<Result> run_decode_gemm(const Options& opt) {
  namespace kg = kernels::gpu;
  struct Shape { const char* name; int64_t N, K; };
  const Shape shapes[] = {{"qkv", 4096, 1024}, {"o", 1024, 2048}, {"gate_up", 6144, 1024},
                          {"down", 1024, 3072}, {"lm_head", opt.quick ? 4099 : 151936, 1024}};
  std::vector<Result> out;
  // The exact chain's link: a batch-1 exact product of depth K is >= ceil(K/16) of these.
  for (int chains : {1, 4}) {
    double ns = 0, cyc = 0;
    const int links = 1 << 16;
    const std::string e = kg::detail::mma_chain_probe(links, chains, &ns, &cyc);
    if (!e.empty()) throw runtime_err("mma chain probe: {}", e);
    out.push_back(Result{fmt::format("model_decode_gemm_mma_chain_x{}", chains), "BF16",
                         fmt::format("{} links", links), ns * 1e-9, 0, 0,
                         fmt::format("one warp, {} dependent chain(s): {:.1f} ns = {:.1f} SM cycles per link "
                                     "(time = per link)", chains, ns, cyc),
                         {{"ns_per_link", ns}, {"cycles_per_link", cyc}}});
  }
  for (const Shape& sh : shapes) {
    Tensor W = Tensor::empty({sh.N, sh.K}, DType::BF16, Device::CUDA);
    cudaMemset(W.data(), 0x11, size_t(W.nbytes()));
    for (int64_t M : {int64_t(1), int64_t(64)}) {
      Tensor A = Tensor::empty({M, sh.K}, DType::BF16, Device::CUDA);
      cudaMemset(A.data(), 0x22, size_t(A.nbytes()));
      Tensor C = Tensor::empty({M, sh.N}, DType::F32, Device::CUDA);
      const auto* a = static_cast<const kg::bf16*>(A.data());
      const auto* w = static_cast<const kg::bf16*>(W.data());
      auto add = [&](const std::string& what, const std::function<void()>& fn) {
        const double t = kg::time_median_s(fn, 3, opt.quick ? 5 : 20);
        out.push_back(Result{fmt::format("model_decode_gemm_{}_m{}_{}", sh.name, M, what), "BF16",
                             fmt::format("{}x{}x{}", M, sh.N, sh.K), t, double(W.nbytes()), 0,
                             "GB/s = W read once"});
      };
      add("fast", [&] { kg::gemm_forward(kg::GemmMode::kFast, M, sh.N, sh.K, a, sh.K, w, sh.K, kg::Elem::F32, C.data(), sh.N, false, nullptr); });
      add("cublas", [&] { kg::detail::cublas_forward(M, sh.N, sh.K, a, sh.K, w, sh.K, kg::Elem::F32, C.data(), sh.N, false, nullptr); });
      add("exact", [&] { kg::gemm_forward(kg::GemmMode::kExact, M, sh.N, sh.K, a, sh.K, w, sh.K, kg::Elem::F32, C.data(), sh.N, false, nullptr); });
      for (int c = 0; c < kg::detail::gemm_exact_config_count(); ++c) {
        const std::string name = kg::detail::gemm_exact_config_name(c);
        const bool m64 = name.rfind("skinny 64", 0) == 0 || name.rfind("mid", 0) == 0;
        if (M == 1 ? name.rfind("skinny 16", 0) != 0 : !m64) continue;
        std::string tag = name;
        for (char& ch : tag) if (ch == ' ') ch = '_';
        add("exact_" + tag, [&] {
          kg::detail::launch_gemm_exact_as(c, M, sh.N, sh.K, a, sh.K, w, sh.K, kg::Elem::F32, C.data(), sh.N, false, nullptr);
        });
      }
    }
  }
  return out;
}

std::vector<Result> run_train(const Options& opt) {
  BenchModel bm = make_model(opt);
  gpu::GpuModel& m = *bm.m;
  const io::HFConfig& cfg = bm.cfg;
  const double params = bm.params;
  const std::string& shape = bm.shape;
  std::vector<Result> out;
  // Training step: 8 x 1024 tokens (2 x 256 in quick mode).
  const int tb = opt.quick ? 2 : 8, tl = opt.quick ? 256 : 1024;
  const auto seqs = random_tokens(tb, tl, cfg.vocab_size, 11);
  gpu::GpuGrads grads(m);
  gpu::GpuAdamW adam(m);
  std::vector<std::vector<float>> d(seqs.size(), std::vector<float>(size_t(tl - 1), -1.0f / float(tb * (tl - 1))));
  // The two modes with the weight-gradient products on the side stream (the default), then
  // fast mode without (model_train_fast_serial_dw: what the overlap buys).
  struct Run { gpu::GemmMode mode; bool overlap; };
  for (const Run run : {Run{gpu::GemmMode::kFast, true}, Run{gpu::GemmMode::kExact, true},
                        Run{gpu::GemmMode::kFast, false}}) {
    const gpu::GemmMode mode = run.mode;
    const std::string name = fmt::format("model_train_{}{}", kernels::gpu::gemm_mode_name(mode),
                                         run.overlap ? "" : "_serial_dw");
    gpu::set_backward_overlap(run.overlap);
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
    log_info("{}: GPU time by section (main stream; with overlap the weight-gradient products run "
             "beside it), one step:\n{}", name, gpu::format_sections(sections));
    for (double& p : phase) p /= reps;
    const double tokens = double(tb) * tl, flops = 6.0 * params * tokens;
    out.push_back(Result{name, "BF16",
                         fmt::format("{}x{} {}", tb, tl, shape), s, 0, flops,
                         fmt::format("{:.0f} tok/s, {:.0f} TFLOP/s at 6 N T (N = {:.0f} M); forward {:.0f} ms, "
                                     "backward {:.0f} ms, clip+AdamW {:.0f} ms",
                                     tokens / s, flops / s / 1e12, params / 1e6, phase[0] * 1e3,
                                     phase[1] * 1e3, phase[2] * 1e3),
                         {{"tokens_per_s", tokens / s}, {"params", params}, {"forward_s", phase[0]},
                          {"backward_s", phase[1]}, {"optimizer_s", phase[2]}}});
    for (const auto& [sec_name, sec] : sections) out.back().metrics.emplace_back("section_s." + sec_name, sec);
  }
  gpu::set_backward_overlap(true);
  return out;
}

}  // namespace

void add_gpu_model_benchmarks(Registry& r) {
  r.add(Case{"model_decode", Backend::CUDA,
             "GPU model on the Qwen3-0.6B shape: generate b1/b64, fast and exact GEMM", run_decode});
  r.add(Case{"model_decode_gemm", Backend::CUDA,
             "the decode step's matrix products (M = 1, 64) by mode and exact tile", run_decode_gemm});
  r.add(Case{"model_train", Backend::CUDA,
             "GPU model on the Qwen3-0.6B shape: a training step, fast and exact GEMM", run_train});
}

}  // namespace qarl::perf
