// `qarl calibrate`: max calibration of the recipe's K/V quantizers over token sequences;
// writes a complete checkpoint whose safetensors hold the `_amax` tensors.
#include <cstdio>
#include <string>

#include "qarl/cli/command.h"
#include "qarl/core/error.h"
#include "qarl/model/cli_support.h"
#include "qarl/quant/recipe.h"

namespace {
std::function<int()> setup(CLI::App& app) {
  struct Opts {
    std::string model, recipe, tokens, out;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--model", o->model, "checkpoint directory")->required();
  app.add_option("--recipe", o->recipe, "quantization recipe YAML")->required();
  app.add_option("--tokens", o->tokens, "calibration data: JSONL, one JSON array of token ids per line")->required();
  app.add_option("--out", o->out, "output checkpoint directory (new or empty)")->required();
  return [o] {
    using namespace qarl;
    model::Model m = model::Model::load(o->model);
    const auto recipe = quant::QuantRecipe::load(o->recipe);
    m.configure_kv_quantizers(recipe, {}, /*require_amax=*/false);
    const auto seqs = model::read_token_sequences(o->tokens);
    if (seqs.empty()) throw err("no calibration sequences").file(o->tokens);
    const auto table = model::calibrate_kv(m, seqs);
    if (table.empty())
      std::fprintf(stderr, "note: the recipe enables no calibrated K/V quantizer; nothing to calibrate\n");
    std::printf("%-48s %s\n", "quantizer", "amax");
    for (const auto& [name, a] : table) std::printf("%-48s %.9g\n", name.c_str(), double(a));
    model::save_checkpoint_dir(m, o->model, o->out);
    std::printf("wrote %s\n", o->out.c_str());
    return 0;
  };
}
QARL_REGISTER_COMMAND("calibrate", "Max-calibrate K/V quantizers and write a checkpoint with their amax", setup);
}  // namespace
