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

namespace {
std::function<int()> setup(CLI::App& app) {
  struct Opts {
    std::string model, tokens, out, recipe, kv_amax;
    float temperature = 1.0f;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--model", o->model, "checkpoint directory (config.json + safetensors)")->required();
  app.add_option("--tokens", o->tokens, "input JSONL: one JSON array of token ids per line")->required();
  app.add_option("--out", o->out, "output JSONL: {\"logprobs\": [...]} per line")->required();
  app.add_option("--recipe", o->recipe, "quantization recipe YAML (K/V quantizers)");
  app.add_option("--kv-amax", o->kv_amax, "safetensors file with K/V quantizer _amax tensors");
  app.add_option("--temperature", o->temperature, "logprobs of log_softmax(logits / T)");
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
    const auto lps = model::score_sequences(m, seqs, o->temperature);
    std::string out;
    for (const auto& lp : lps) out += model::logprobs_json_line(lp);
    write_file_atomic(o->out, out);
    return 0;
  };
}
QARL_REGISTER_COMMAND("score", "Per-token logprobs of token sequences under a checkpoint", setup);
}  // namespace
