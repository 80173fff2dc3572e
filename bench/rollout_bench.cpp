// Rollout engine throughput on the CPU: prefill and decode tokens/s and KV bytes per token for
// each KV storage mode, on a small Qwen3-shaped random model (hidden 512, 4 layers, 8 heads,
// 2 KV heads of 64, intermediate 1408, vocab 8192).
//   Prefill: 16 prompts of 256 tokens, 1 new token each  -> prompt tokens / s
//   Decode : 64 prompts of 16 tokens, 64 new tokens each -> generated tokens / s (the prefill
//            of the 16-token prompts is included; it is ~1/5 of the tokens fed)
// Run: build/bench/rollout_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <chrono>

#include "qarl/model/model.h"
#include "qarl/quant/recipe.h"
#include "qarl/rollout/engine.h"

using namespace qarl;
using namespace qarl::rollout;

namespace {

const char* kFp8 =
    "quant_cfg:\n  - {quantizer_name: '*', enable: false}\n"
    "  - {quantizer_name: '*[kv]_bmm_quantizer', cfg: {num_bits: e4m3}}\n";
const char* kNvfp4 =
    "quant_cfg:\n  - {quantizer_name: '*', enable: false}\n"
    "  - quantizer_name: '*[kv]_bmm_quantizer'\n"
    "    cfg: {num_bits: e2m1, block_sizes: {-1: 16, type: dynamic, scale_bits: e4m3}}\n";

io::HFConfig bench_config() {
  io::HFConfig c;
  c.architecture = "Qwen3ForCausalLM";
  c.family = io::ModelFamily::Qwen3;
  c.model_type = "qwen3";
  c.vocab_size = 8192;
  c.hidden_size = 512;
  c.intermediate_size = 1408;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 2;
  c.head_dim = 64;
  c.max_position_embeddings = 4096;
  c.qk_norm = true;
  c.tie_word_embeddings = true;
  return c;
}

// mode 0: auto unquantized, 1: auto + FP8 K/V, 2: fp8 storage, 3: auto + NVFP4 K/V,
// 4: nvfp4 storage.
model::Model& bench_model(int recipe) {
  static std::map<int, std::unique_ptr<model::Model>> models;
  auto& m = models[recipe];
  if (!m) {
    m = std::make_unique<model::Model>(model::Model::random_init(bench_config(), 1234));
    std::map<std::string, Tensor> amax;
    for (int i = 0; i < 4; ++i) {
      amax[model::kv_quantizer_name(i, 'k') + "._amax"] = Tensor::scalar(4.0f);
      amax[model::kv_quantizer_name(i, 'v') + "._amax"] = Tensor::scalar(0.5f);
    }
    if (recipe == 1) m->configure_kv_quantizers(quant::QuantRecipe::parse(kFp8, "fp8"), amax, true);
    if (recipe == 2) m->configure_kv_quantizers(quant::QuantRecipe::parse(kNvfp4, "nvfp4"), amax, true);
  }
  return *m;
}

void run(benchmark::State& state, int prompts, int prompt_len, int new_tokens) {
  const int which = int(state.range(0));
  const int recipe = which == 0 ? 0 : which <= 2 ? 1 : 2;
  const KVCacheMode mode = which == 2 ? KVCacheMode::FP8 : which == 4 ? KVCacheMode::NVFP4 : KVCacheMode::Auto;
  const model::Model& m = bench_model(recipe);
  std::vector<GenRequest> reqs;
  for (int i = 0; i < prompts; ++i) {
    GenRequest r;
    for (int t = 0; t < prompt_len; ++t) r.prompt.push_back(int32_t((i * 131 + t * 17) % 8192));
    r.params.max_new_tokens = new_tokens;
    r.params.temperature = 1.0f;
    reqs.push_back(r);
  }
  EngineConfig ec;
  ec.kv_mode = mode;
  ec.kv_cache_bytes = 512ull << 20;
  ec.max_batch_tokens = 1024;
  double secs = 0;
  int64_t fed_prompt = 0, generated = 0;
  size_t bpt = 0;
  for (auto _ : state) {
    Engine e(m, ec);
    bpt = e.cache().bytes_per_token();
    auto t0 = std::chrono::steady_clock::now();
    auto outs = e.generate(reqs);
    secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (const auto& o : outs) generated += int64_t(o.tokens.size());
    fed_prompt += int64_t(prompts) * prompt_len;
  }
  state.counters["prefill_tok_s"] = double(fed_prompt) / secs;
  state.counters["gen_tok_s"] = double(generated) / secs;
  state.counters["kv_bytes_per_token"] = double(bpt);
  static const char* names[] = {"auto(unquantized)", "auto(fp8 K/V)", "fp8", "auto(nvfp4 K/V)", "nvfp4"};
  state.SetLabel(names[which]);
}

void BM_Prefill(benchmark::State& s) { run(s, 16, 256, 1); }
void BM_Decode(benchmark::State& s) { run(s, 64, 16, 64); }

}  // namespace

BENCHMARK(BM_Prefill)->DenseRange(0, 4)->Unit(benchmark::kMillisecond)->Iterations(2)->UseRealTime();
BENCHMARK(BM_Decode)->DenseRange(0, 4)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
BENCHMARK_MAIN();
