// `qarl score`: per-token logprobs of token sequences under a checkpoint, with optional K/V
// fake quantization (recipe + amax), at a temperature.
#include <string>

#include "qarl/cli/command.h"
#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/core/log.h"
#include "qarl/model/cli_support.h"
#include "qarl/model/forward.h"
#include "qarl/quant/recipe.h"
#include "qarl/kernels/cuda/device.h"
#if QARL_HAVE_CUDA
#include "qarl/gpu/gpu_model.h"
#include "qarl/gpu/train_state.h"
#endif

namespace {
std::function<int()> setup(CLI::App& app) {
  struct Opts {
    std::string model, tokens, out, recipe, kv_amax, device = "cpu", gemm_mode = "exact";
    float temperature = 1.0f;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--model", o->model, "checkpoint directory (config.json + safetensors)")->required();
  app.add_option("--tokens", o->tokens, "input JSONL: one JSON array of token ids per line")->required();
  app.add_option("--out", o->out, "output JSONL: {\"logprobs\": [...]} per line")->required();
  app.add_option("--recipe", o->recipe, "quantization recipe YAML (K/V quantizers)");
  app.add_option("--kv-amax", o->kv_amax, "safetensors file with K/V quantizer _amax tensors");
  app.add_option("--temperature", o->temperature, "logprobs of log_softmax(logits / T)");
  app.add_option("--device", o->device, "cpu (fp32 reference) or cuda (bf16 GPU model)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--gemm-mode", o->gemm_mode,
                 "cuda only: exact (batch-invariant, equals `qarl generate --device cuda` bitwise) or fast (cuBLAS)")
      ->check(CLI::IsMember({"exact", "fast"}));
  return [o] {
    using namespace qarl;
    if (!(o->temperature > 0.0f)) throw usage_err("--temperature must be positive, got {}", o->temperature);
    model::Model m = model::Model::load(o->model);
    const auto recipe = o->recipe.empty() ? quant::QuantRecipe::none() : quant::QuantRecipe::load(o->recipe);
    std::map<std::string, Tensor> amax;
    if (!o->kv_amax.empty()) amax = model::load_kv_amax_file(o->kv_amax, m);
    m.configure_kv_quantizers(recipe, amax, /*require_amax=*/true);
    const auto seqs = model::read_token_sequences(o->tokens);
    for (size_t i = 0; i < seqs.size(); ++i)
      for (int32_t t : seqs[i])
        if (t >= m.config().vocab_size)
          throw err("line {}: token id {} is outside the vocabulary [0, {})", i + 1, t,
                    m.config().vocab_size).file(o->tokens);
    std::vector<std::vector<float>> lps;
    if (o->device == "cuda") {
#if QARL_HAVE_CUDA
      if (!kernels::gpu::available()) throw usage_err("--device cuda: {}", kernels::gpu::unavailable_reason());
      gpu::GpuModel g(m, kernels::gpu::parse_gemm_mode(o->gemm_mode.c_str()));
      for (size_t s0 = 0; s0 < seqs.size(); s0 += 64) {  // batches of 64 sequences
        std::vector<std::vector<int32_t>> part(seqs.begin() + long(s0),
                                               seqs.begin() + long(std::min(seqs.size(), s0 + 64)));
        gpu::TrainState st;
        for (auto& lp : gpu::forward_train(g, part, o->temperature, st)) lps.push_back(std::move(lp));
      }
      log_info("scored {} sequences on {} ({} GEMM)", seqs.size(), kernels::gpu::device_name(), o->gemm_mode);
#else
      throw usage_err("--device cuda: this qarl was built without CUDA");
#endif
    } else {
      lps = model::score_sequences(m, seqs, o->temperature);
    }
    std::string out;
    for (const auto& lp : lps) out += model::logprobs_json_line(lp);
    write_file_atomic(o->out, out);
    return 0;
  };
}
QARL_REGISTER_COMMAND("score", "Per-token logprobs of token sequences under a checkpoint", setup);
}  // namespace
