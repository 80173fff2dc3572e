// Trainer-side export: names, order, K/V amax only for calibrated quantizers, folded weights.
#include <gtest/gtest.h>

#include <set>

#include "qarl/core/error.h"
#include "qarl/refit/export.h"
#include "refit/refit_fakes.h"
#include "test_util.h"

namespace qarl::refit {
namespace {

using test::FakeTrainer;
using test::KvMode;
using test::TinyConfig;

std::vector<std::string> kv_names(const RefitMetadata& meta) {
  std::vector<std::string> out;
  for (const auto& m : meta)
    if (m.name.find("_bmm_quantizer") != std::string::npos) out.push_back(m.name);
  return out;
}

TEST(RefitExport, CalibratedKvExportsExactlyTheScalarAmaxNames) {
  TinyConfig c;
  c.seed = qarl::test::fresh_seed();
  SCOPED_TRACE(c.seed);
  FakeTrainer trainer(c);
  RefitMetadata meta = export_metadata(plan_export(trainer));
  std::vector<std::string> want;
  for (int i = 0; i < c.layers; ++i) {
    want.push_back(fmt::format("model.layers.{}.self_attn.k_bmm_quantizer._amax", i));
    want.push_back(fmt::format("model.layers.{}.self_attn.v_bmm_quantizer._amax", i));
  }
  EXPECT_EQ(kv_names(meta), want);  // no q_bmm, nothing else, in layer order
  for (const auto& m : meta)
    if (is_kv_amax_name(m.name)) {
      EXPECT_EQ(m.shape, Shape{}) << m.name;
      EXPECT_EQ(m.dtype, DType::BF16) << m.name;
    }
  // Every parameter is there, first, in order; nothing else.
  ASSERT_EQ(meta.size(), trainer.params_.size() + want.size());
  for (size_t i = 0; i < trainer.params_.size(); ++i) {
    EXPECT_EQ(meta[i].name, trainer.params_[i].name);
    EXPECT_EQ(meta[i].shape, trainer.params_[i].tensor.shape());
  }
}

TEST(RefitExport, ConstantAndDisabledKvQuantizersExportNothing) {
  for (KvMode mode : {KvMode::Constant, KvMode::Off}) {
    TinyConfig c;
    c.kv = mode;
    FakeTrainer trainer(c);
    RefitMetadata meta = export_metadata(plan_export(trainer));
    EXPECT_TRUE(kv_names(meta).empty());
    EXPECT_EQ(meta.size(), trainer.params_.size());
  }
}

TEST(RefitExport, AmaxWithOneElementIsSentAsZeroD) {
  TinyConfig c;
  FakeTrainer trainer(c);
  trainer.quantizers_[1].amax = Tensor::from_f32(std::vector<float>{2.5f}, {1}, DType::BF16);
  auto plan = plan_export(trainer);
  std::map<std::string, Tensor> got;
  for_each_export(plan, [&](const std::string& n, const Tensor& t) { got[n] = t; });
  Tensor k = got.at("model.layers.0.self_attn.k_bmm_quantizer._amax");
  EXPECT_EQ(k.shape(), Shape{});
  EXPECT_EQ(k.item(), 2.5);
  trainer.quantizers_[1].amax = Tensor::from_f32(std::vector<float>{2.5f, 3.f}, {2}, DType::BF16);
  EXPECT_THROW(plan_export(trainer), Error);
}

TEST(RefitExport, UncalibratedOrBadTrainerAmaxIsRefused) {
  for (float bad : {-1.0f, 0.0f, INFINITY, NAN}) {
    FakeTrainer trainer(TinyConfig{});
    trainer.quantizers_[2].amax = Tensor::scalar(bad, DType::BF16);  // layer 0 v_bmm
    try {
      plan_export(trainer);
      FAIL() << "accepted amax " << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.tensor(), "model.layers.0.self_attn.v_bmm_quantizer._amax");
    }
  }
  FakeTrainer trainer(TinyConfig{});
  trainer.quantizers_[1].amax = Tensor();
  EXPECT_THROW(plan_export(trainer), Error);
}

TEST(RefitExport, WeightQuantizedWeightsArePreFoldedAndQuantizerNotSent) {
  TinyConfig c;
  c.weight_quant = true;
  c.input_quant = true;
  c.seed = qarl::test::fresh_seed();
  SCOPED_TRACE(c.seed);
  FakeTrainer trainer(c);
  // A trainer that (wrongly) lists quantizer state among its parameters: still not sent.
  trainer.params_.push_back({"model.layers.0.mlp.up_proj.weight_quantizer._amax",
                             Tensor::scalar(3.0f, DType::BF16)});
  auto plan = plan_export(trainer);
  EXPECT_EQ(trainer.folds, 0);  // planning (metadata) folds nothing
  std::map<std::string, Tensor> got;
  for_each_export(plan, [&](const std::string& n, const Tensor& t) { got[n] = t; });
  for (const auto& [n, t] : got) EXPECT_EQ(n.find("weight_quantizer"), std::string::npos) << n;
  EXPECT_EQ(trainer.folds, 7 * c.layers);  // q k v o gate up down per layer
  const std::string up = "model.layers.1.mlp.up_proj.weight";
  Tensor folded = trainer.fold_weight({}, trainer.param(up));
  EXPECT_TRUE(tensors_bitwise_equal(got.at(up), folded));
  EXPECT_FALSE(tensors_bitwise_equal(got.at(up), trainer.param(up)));
  // Norms and embeddings are not quantized: sent as is.
  EXPECT_TRUE(tensors_bitwise_equal(got.at("model.norm.weight"), trainer.param("model.norm.weight")));
  EXPECT_TRUE(got.count("model.layers.2.mlp.down_proj.input_quantizer._amax"));
  EXPECT_EQ(got.at("model.layers.2.mlp.down_proj.input_quantizer._amax").shape(), Shape{});
}

TEST(RefitExport, FoldThatChangesShapeIsAnError) {
  struct BadFold : FakeTrainer {
    using FakeTrainer::FakeTrainer;
    Tensor fold_weight(const QuantizerState&, const Tensor& w) const override {
      return w.to(DType::F32);
    }
  };
  TinyConfig c;
  c.weight_quant = true;
  BadFold trainer(c);
  auto plan = plan_export(trainer);
  EXPECT_THROW(for_each_export(plan, [](const std::string&, const Tensor&) {}), Error);
}

}  // namespace
}  // namespace qarl::refit

namespace qarl::refit {
namespace {

TEST(RefitExport, PrefixesArePreservedAndDraftOrMtpStacksSkipped) {
  FakeTrainer trainer(TinyConfig{});
  auto amax = Tensor::scalar(2.0f, DType::BF16);
  trainer.quantizers_.push_back({"language_model.model.layers.9.self_attn.k_bmm_quantizer", true, false, amax});
  trainer.quantizers_.push_back({"model.mtp.layers.0.self_attn.k_bmm_quantizer", true, false, amax});
  trainer.quantizers_.push_back({"model.draft.layers.0.self_attn.v_bmm_quantizer", true, false, amax});
  trainer.quantizers_.push_back({"model.mtpx.layers.0.self_attn.v_bmm_quantizer", true, false, amax});
  std::set<std::string> names;
  for (const auto& m : export_metadata(plan_export(trainer))) names.insert(m.name);
  EXPECT_TRUE(names.count("language_model.model.layers.9.self_attn.k_bmm_quantizer._amax"));
  EXPECT_FALSE(names.count("model.mtp.layers.0.self_attn.k_bmm_quantizer._amax"));
  EXPECT_FALSE(names.count("model.draft.layers.0.self_attn.v_bmm_quantizer._amax"));
  // Dot-delimited: "mtpx" is no mtp segment.
  EXPECT_TRUE(names.count("model.mtpx.layers.0.self_attn.v_bmm_quantizer._amax"));
}

}  // namespace
}  // namespace qarl::refit
