// Agreement with Hugging Face transformers 5.17 (fp32, eager attention) on checkpoints it saved
// (tests/data/model, made by make_reference.py): logprobs within 1e-4 unquantized; with K/V
// fake quantization (FP8 calibrated, FP8 constant, NVFP4) the max difference is printed and
// bounded (a flip of a rounding tie can move one K/V element by a quantization step).
#include <cmath>
#include <cstdio>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "qarl/core/fs.h"
#include "qarl/model/cli_support.h"
#include "qarl/model/forward.h"
#include "qarl/model/model.h"
#include "qarl/quant/recipe.h"
#include "test_util.h"

namespace qarl::model {
namespace {

nlohmann::json reference() {
  static const nlohmann::json j = nlohmann::json::parse(read_file(test::data_path("model/reference.json")));
  return j;
}

struct Mode {
  const char* key;
  const char* recipe;  // file under tests/data/model, or nullptr
  double tol;
  float temperature = 1.0f;
  float amax_scale = 1.0f;
};

double max_diff(const std::vector<std::vector<float>>& got, const nlohmann::json& want) {
  double md = 0;
  EXPECT_EQ(got.size(), want.size());
  for (size_t s = 0; s < got.size(); ++s) {
    EXPECT_EQ(got[s].size(), want[s].size());
    for (size_t i = 0; i < got[s].size() && i < want[s].size(); ++i)
      md = std::max(md, std::fabs(double(got[s][i]) - want[s][i].get<double>()));
  }
  return md;
}

class HFAgreement : public ::testing::TestWithParam<std::string> {};

TEST_P(HFAgreement, LogprobsMatchTransformers) {
  const std::string fam = GetParam();
  const auto ref = reference()["families"][fam];
  Model m = Model::load(test::data_path("model/" + fam));
  std::vector<std::vector<int32_t>> seqs = ref["sequences"].get<std::vector<std::vector<int32_t>>>();
  const Mode modes[] = {{"none", nullptr, 1e-4},
                        {"none_t0.7", nullptr, 1e-4, 0.7f},
                        {"fp8_calibrated", "kv_fp8_calibrated.yaml", 2e-3},
                        {"fp8_constant", "kv_fp8_constant.yaml", 2e-3},
                        {"nvfp4", "kv_nvfp4.yaml", 2e-2},
                        {"nvfp4_half_amax", "kv_nvfp4.yaml", 2e-2, 1.0f, 0.5f}};
  for (const Mode& mode : modes) {
    if (!ref["logprobs"].contains(mode.key)) continue;
    SCOPED_TRACE(fam + " " + mode.key);
    const auto recipe = mode.recipe ? quant::QuantRecipe::load(test::data_path(std::string("model/") + mode.recipe))
                                    : quant::QuantRecipe::none();
    auto amax = load_kv_amax_file(test::data_path("model/" + fam + "_kv_amax.safetensors"), m);
    for (auto& [n, t] : amax) t = Tensor::scalar(float(t.item()) * mode.amax_scale);
    m.configure_kv_quantizers(recipe, amax, true);
    const double d = max_diff(score_sequences(m, seqs, mode.temperature), ref["logprobs"][mode.key]);
    std::printf("[hf-agreement] %-6s %-16s max |qarl - transformers| = %.3g\n", fam.c_str(), mode.key, d);
    EXPECT_LT(d, mode.tol);
  }
}

INSTANTIATE_TEST_SUITE_P(Families, HFAgreement, ::testing::Values("llama", "qwen2", "qwen3"));

}  // namespace
}  // namespace qarl::model
