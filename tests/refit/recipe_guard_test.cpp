// Same-recipe guard: the merged rule (same recipe, except rollout-only constant-amax FP8)
// plus the superseded validator's cases (738d829d7) and the explicit experiment opt-in.
#include <gtest/gtest.h>

#include "qarl/core/error.h"
#include "qarl/refit/recipe_guard.h"

namespace qarl::refit {
namespace {

const char* kFp8Const = R"(
metadata: {recipe_type: ptq, description: FP8 E4M3 simulated KV-cache quantization with constant amax.}
quantize:
  algorithm: max
  quant_cfg:
    - {quantizer_name: '*', enable: false}
    - quantizer_name: '*[kv]_bmm_quantizer'
      enable: true
      cfg: {num_bits: e4m3, use_constant_amax: true}
)";
const char* kFp8Calibrated = R"(
quantize:
  algorithm: max
  quant_cfg:
    - {quantizer_name: '*', enable: false}
    - {quantizer_name: '*[kv]_bmm_quantizer', enable: true, cfg: {num_bits: e4m3}}
)";
const char* kNvfp4 = R"(
quantize:
  algorithm: max
  quant_cfg:
    - {quantizer_name: '*', enable: false}
    - quantizer_name: '*[kv]_bmm_quantizer'
      enable: true
      cfg:
        block_sizes: {-1: 16, type: dynamic, scale_bits: e4m3}
        num_bits: e2m1
)";
// The same recipe written differently: key order, tuple spelling, no quantize: wrapper.
const char* kNvfp4Respelled = R"(
algorithm: max
quant_cfg:
  - {quantizer_name: '*', enable: false}
  - quantizer_name: '*[kv]_bmm_quantizer'
    cfg: {num_bits: [2, 1], block_sizes: {type: dynamic, scale_bits: [4, 3], -1: 16}}
    enable: true
)";

NormalizedRecipe R(const char* text, const char* name) { return NormalizedRecipe::parse(text, name); }

TEST(RefitRecipeGuard, IdenticalRecipesPassEvenWhenSpelledDifferently) {
  auto r = check_same_recipe(R(kNvfp4, "a.yaml"), R(kNvfp4Respelled, "b.yaml"), false);
  EXPECT_TRUE(r.identical);
  EXPECT_FALSE(r.rollout_only_experiment);
  EXPECT_TRUE(check_same_recipe(R(kFp8Const, "a"), R(kFp8Const, "b"), false).identical);
  EXPECT_TRUE(check_same_recipe(NormalizedRecipe::none(), NormalizedRecipe::none(), false).identical);
}

TEST(RefitRecipeGuard, RolloutOnlyConstantFp8IsTheOneException) {
  auto r = check_same_recipe(NormalizedRecipe::none(), R(kFp8Const, "fp8.yaml"), false);
  EXPECT_TRUE(r.rollout_only_constant_fp8);
  EXPECT_FALSE(r.rollout_only_experiment);
  EXPECT_FALSE(r.identical);
}

TEST(RefitRecipeGuard, OtherDifferencesAreRefusedNamingTheQuantizer) {
  struct Case { NormalizedRecipe t, r; };
  std::vector<Case> cases = {
      {NormalizedRecipe::none(), R(kNvfp4, "nvfp4.yaml")},          // rollout-only NVFP4
      {NormalizedRecipe::none(), R(kFp8Calibrated, "fp8cal.yaml")},  // needs calibration
      {R(kFp8Calibrated, "fp8cal.yaml"), R(kFp8Const, "fp8.yaml")},  // trainer quantizes K/V
      {R(kNvfp4, "nvfp4.yaml"), R(kFp8Const, "fp8.yaml")},
      {R(kFp8Const, "fp8.yaml"), NormalizedRecipe::none()},          // policy-only KV
  };
  for (const auto& c : cases) {
    try {
      check_same_recipe(c.t, c.r, false);
      ADD_FAILURE() << c.t.source << " vs " << c.r.source << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      EXPECT_NE(std::string(e.what()).find("_bmm_quantizer"), std::string::npos) << e.what();
    }
  }
}

TEST(RefitRecipeGuard, ConstantFp8PlusWeightQuantizationIsNotTheException) {
  const char* w4a8_kv = R"(
quant_cfg:
  - {quantizer_name: '*', enable: false}
  - {quantizer_name: '*weight_quantizer', enable: true, cfg: {num_bits: 4, block_sizes: {-1: 128}}}
  - {quantizer_name: '*[kv]_bmm_quantizer', enable: true, cfg: {num_bits: e4m3, use_constant_amax: true}}
)";
  EXPECT_THROW(check_same_recipe(NormalizedRecipe::none(), R(w4a8_kv, "w.yaml"), false), Error);
  auto r = check_same_recipe(NormalizedRecipe::none(), R(w4a8_kv, "w.yaml"), true);
  EXPECT_TRUE(r.rollout_only_experiment);
  EXPECT_NE(r.note.find("weight_quantizer"), std::string::npos) << r.note;
}

TEST(RefitRecipeGuard, ExperimentOptInIsReturnedAsAFlag) {
  auto r = check_same_recipe(NormalizedRecipe::none(), R(kNvfp4, "nvfp4.yaml"), true);
  EXPECT_TRUE(r.rollout_only_experiment);
  EXPECT_NE(r.note.find("ROLLOUT-ONLY EXPERIMENT"), std::string::npos);
}

TEST(RefitRecipeGuard, PathQualifiedSelectorIsDetected) {
  const char* megatron_only = R"(
quant_cfg:
  - {quantizer_name: '*', enable: false}
  - {quantizer_name: '*core_attention.k_bmm_quantizer', enable: true, cfg: {num_bits: e2m1}}
)";
  auto rec = R(megatron_only, "m.yaml");
  EXPECT_TRUE(rec.resolve("decoder.layers.0.self_attention.core_attention.k_bmm_quantizer").enabled);
  EXPECT_FALSE(rec.resolve("model.layers.0.self_attn.k_bmm_quantizer").enabled);
  EXPECT_THROW(check_same_recipe(NormalizedRecipe::none(), rec, false), Error);
}

TEST(RefitRecipeGuard, LastMatchWinsAndDraftExclusionKeepsMainEnable) {
  const char* with_draft = R"(
quant_cfg:
  - {quantizer_name: '*', enable: false}
  - {quantizer_name: '*[kv]_bmm_quantizer', enable: true, cfg: {num_bits: e4m3}}
  - {quantizer_name: '*draft.*', enable: false}
)";
  auto rec = R(with_draft, "d.yaml");
  EXPECT_TRUE(rec.resolve("model.layers.3.self_attn.k_bmm_quantizer").enabled);
  EXPECT_TRUE(rec.resolve("model.layers.3.self_attn.v_bmm_quantizer").enabled);
  EXPECT_FALSE(rec.resolve("model.draft.layers.0.self_attn.k_bmm_quantizer").enabled);
  EXPECT_FALSE(rec.resolve("model.layers.3.self_attn.q_bmm_quantizer").enabled);
  EXPECT_EQ(rec.resolve("model.layers.3.self_attn.k_bmm_quantizer").cfg, R"({"num_bits":[4,3]})");
}

TEST(RefitRecipeGuard, EnableDefaultsFollowModelOpt) {
  // cfg without enable enables; an entry with neither changes nothing; a later entry with
  // only enable toggles without touching the cfg.
  auto a = R("quant_cfg: [{quantizer_name: '*', enable: false}, {quantizer_name: '*k_bmm_quantizer', cfg: {num_bits: e4m3}}]", "a");
  auto b = R("quant_cfg: [{quantizer_name: '*', enable: false}, {quantizer_name: '*k_bmm_quantizer', enable: true, cfg: {num_bits: [4, 3]}}]", "b");
  EXPECT_TRUE(check_same_recipe(a, b, false).identical);
  auto c = R("quant_cfg: [{quantizer_name: '*', enable: false}, {quantizer_name: '*k_bmm_quantizer', cfg: {num_bits: e4m3}}, {quantizer_name: '*'}]", "c");
  EXPECT_TRUE(c.resolve("model.layers.0.self_attn.k_bmm_quantizer").enabled);
  auto d = R("quant_cfg: [{quantizer_name: '*k_bmm_quantizer', cfg: {num_bits: e4m3}}, {quantizer_name: '*k_bmm_quantizer', enable: false}, {quantizer_name: '*k_bmm_quantizer', enable: true}]", "d");
  EXPECT_EQ(d.resolve("model.layers.0.self_attn.k_bmm_quantizer").cfg, R"({"num_bits":[4,3]})");
  EXPECT_FALSE(d.resolve("model.layers.0.self_attn.v_bmm_quantizer").enabled);
}

TEST(RefitRecipeGuard, AlgorithmMustMatchAndBadFilesNameThemselves) {
  std::string other = kFp8Const;
  other.replace(other.find("algorithm: max"), 14, "algorithm: mse");
  EXPECT_THROW(check_same_recipe(R(kFp8Const, "a"), R(other.c_str(), "b"), false), Error);
  try {
    NormalizedRecipe::parse("quantize: {algorithm: max}", "broken.yaml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.file(), "broken.yaml");
  }
  EXPECT_THROW(NormalizedRecipe::parse("quant_cfg: [{enable: true}]", "x.yaml"), Error);
  EXPECT_THROW(NormalizedRecipe::parse("quant_cfg: [{quantizer_name: '*', enable: maybe}]", "x.yaml"), Error);
  EXPECT_THROW(NormalizedRecipe::parse("quant_cfg: [", "x.yaml"), Error);
}

}  // namespace
}  // namespace qarl::refit

#include "qarl/quant/recipe.h"

namespace qarl::refit {
namespace {

// The same rules on recipes parsed by the quant component (resolved configurations).
TEST(RefitRecipeGuardQuant, ResolvedConfigsDecide) {
  using quant::QuantRecipe;
  auto fp8c = QuantRecipe::parse(kFp8Const, "fp8.yaml");
  auto fp8cal = QuantRecipe::parse(kFp8Calibrated, "fp8cal.yaml");
  auto nv = QuantRecipe::parse(kNvfp4, "nvfp4.yaml");
  auto nv2 = QuantRecipe::parse(kNvfp4Respelled, "nvfp4b.yaml");
  EXPECT_TRUE(check_same_recipe(nv, nv2, false).identical);
  EXPECT_TRUE(check_same_recipe(fp8c, fp8c, false).identical);
  EXPECT_TRUE(check_same_recipe(QuantRecipe::none(), fp8c, false).rollout_only_constant_fp8);
  EXPECT_THROW(check_same_recipe(QuantRecipe::none(), nv, false), Error);
  EXPECT_THROW(check_same_recipe(QuantRecipe::none(), fp8cal, false), Error);
  EXPECT_THROW(check_same_recipe(fp8cal, fp8c, false), Error);
  EXPECT_THROW(check_same_recipe(fp8c, QuantRecipe::none(), false), Error);
  auto r = check_same_recipe(QuantRecipe::none(), nv, true);
  EXPECT_TRUE(r.rollout_only_experiment);
  EXPECT_NE(r.note.find("k_bmm_quantizer"), std::string::npos) << r.note;
}

}  // namespace
}  // namespace qarl::refit

namespace qarl::refit {
namespace {

// Found by fuzz/quant_recipe_fuzz: numbers out of range for int64 / double made the
// normalizer throw std::out_of_range; they now stay text. Malformed keys are Input errors.
TEST(RefitRecipeGuard, HugeNumbersAndMalformedKeys) {
  const auto r = NormalizedRecipe::parse(
      "quant_cfg:\n  - {quantizer_name: '*', enable: false, x: 99999999999999999999999, y: 1e99999,"
      " z: e99999999999m1}\n",
      "huge.yaml");
  EXPECT_EQ(r.entries.size(), 1u);
  try {
    NormalizedRecipe::parse("quant_cfg:\n  - {{a}: 1, quantizer_name: '*'}\n", "key.yaml");
    FAIL() << "accepted a mapping as a key";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Input);
    EXPECT_EQ(e.file(), "key.yaml");
  }
  EXPECT_THROW(NormalizedRecipe::parse("quant_cfg:\n  - {quantizer_name: {a: 1}}\n", "n.yaml"), Error);
}

}  // namespace
}  // namespace qarl::refit
