// Strict loading: the full refit from a fake trainer into a fake engine, pipeline stages,
// and every failure mode leaving the serving state bit-identical.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "qarl/core/error.h"
#include "qarl/refit/loader.h"
#include "refit/refit_fakes.h"
#include "test_util.h"

namespace qarl::refit {
namespace {

using test::FakeEngine;
using test::FakeTrainer;
using test::KvMode;
using test::TinyConfig;

using Stream = std::vector<NamedTensor>;

Stream export_stream(const FakeTrainer& t) {
  Stream s;
  for_each_export(plan_export(t), [&](const std::string& n, const Tensor& x) { s.push_back({n, x}); });
  return s;
}

LoadReport refit(FakeEngine& e, const NameMapper& m, const Stream& s) {
  StrictLoader loader(e, m);
  loader.begin();
  for (const auto& [n, t] : s) loader.load(n, t);
  return loader.finish();
}

TinyConfig fresh_config() {
  TinyConfig c;
  c.seed = qarl::test::fresh_seed();
  c.input_quant = true;
  return c;
}

TEST(RefitLoader, FullRefitFillsFusedLayoutAndKvAmax) {
  TinyConfig c = fresh_config();
  SCOPED_TRACE(c.seed);
  FakeTrainer trainer(c);
  FakeEngine engine(c);
  Stream s = export_stream(trainer);
  StrictLoader(engine, NameMapper::dense()).check_metadata(export_metadata(plan_export(trainer)));
  LoadReport r = refit(engine, NameMapper::dense(), s);
  EXPECT_EQ(engine.commits, 1);
  EXPECT_EQ(r.kv_amax_validated, size_t(2 * c.layers));
  const int64_t q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  for (int i = 0; i < c.layers; ++i) {
    std::string a = fmt::format("model.layers.{}.self_attn.", i);
    Tensor qkv = engine.serving.at(a + "qkv_proj.weight");
    EXPECT_TRUE(tensors_bitwise_equal(qkv.narrow0(0, q).clone(), trainer.param(a + "q_proj.weight")));
    EXPECT_TRUE(tensors_bitwise_equal(qkv.narrow0(q, kv).clone(), trainer.param(a + "k_proj.weight")));
    EXPECT_TRUE(tensors_bitwise_equal(qkv.narrow0(q + kv, kv).clone(), trainer.param(a + "v_proj.weight")));
    Tensor bias = engine.serving.at(a + "qkv_proj.bias");
    EXPECT_TRUE(tensors_bitwise_equal(bias.narrow0(q, kv).clone(), trainer.param(a + "k_proj.bias")));
    std::string l = fmt::format("model.layers.{}.", i);
    Tensor gu = engine.serving.at(l + "mlp.gate_up_proj.weight");
    EXPECT_TRUE(tensors_bitwise_equal(gu.narrow0(c.inter, c.inter).clone(), trainer.param(l + "mlp.up_proj.weight")));
    // K/V amax values: the trainer's.
    for (const auto& qs : trainer.quantizers_) {
      if (qs.name == a + "k_bmm_quantizer") {
        EXPECT_EQ(engine.serving.at(a + "attn.k_bmm_quantizer._amax").item(), qs.amax.item());
      }
      if (qs.name == a + "v_bmm_quantizer") {
        EXPECT_EQ(engine.serving.at(a + "attn.v_bmm_quantizer._amax").item(), qs.amax.item());
      }
    }
    // Fan-in input amax = max over q/k/v.
    double mx = 0;
    for (const char* p : {"q_proj", "k_proj", "v_proj"})
      for (const auto& qs : trainer.quantizers_)
        if (qs.name == a + p + ".input_quantizer") mx = std::max(mx, qs.amax.item());
    EXPECT_EQ(engine.serving.at(a + "qkv_proj.input_quantizer._amax").item(), mx);
  }
  EXPECT_TRUE(tensors_bitwise_equal(engine.serving.at("lm_head.weight"), trainer.param("lm_head.weight")));
}

TEST(RefitLoader, ConstantAmaxEnginesHaveNoKvStateAndLoadWeightsOnly) {
  TinyConfig c = fresh_config();
  c.kv = KvMode::Constant;
  FakeTrainer trainer(c);
  FakeEngine engine(c);
  LoadReport r = refit(engine, NameMapper::dense(), export_stream(trainer));
  EXPECT_EQ(r.kv_amax_validated, 0u);
  EXPECT_EQ(engine.commits, 1);
}

TEST(RefitLoader, PipelineStageSkipsOtherLayersButNeedsItsOwn) {
  TinyConfig c = fresh_config();
  c.layers = 4;
  FakeTrainer trainer(c);
  FakeEngine stage(c, 1, 3);  // owns layers 1 and 2, no embedding, no head
  Stream s = export_stream(trainer);
  LoadReport r = refit(stage, NameMapper::dense(), s);
  EXPECT_GT(r.skipped_non_local, 0u);
  EXPECT_EQ(stage.serving.count("model.layers.0.self_attn.qkv_proj.weight"), 0u);
  EXPECT_GT(stage.serving.at("model.layers.2.self_attn.attn.v_bmm_quantizer._amax").item(), 0);
  // A locally owned K/V amax missing from the stream fails, naming it.
  FakeEngine stage2(c, 1, 3);
  auto snap = stage2.snapshot();
  Stream missing;
  for (const auto& x : s)
    if (x.name != "model.layers.2.self_attn.k_bmm_quantizer._amax") missing.push_back(x);
  try {
    refit(stage2, NameMapper::dense(), missing);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.tensor(), "model.layers.2.self_attn.attn.k_bmm_quantizer._amax");
  }
  EXPECT_TRUE(stage2.same_as(snap));
  // A non-local layer's missing name is fine.
  Stream other;
  for (const auto& x : s)
    if (x.name != "model.layers.3.self_attn.k_bmm_quantizer._amax") other.push_back(x);
  FakeEngine stage3(c, 1, 3);
  EXPECT_NO_THROW(refit(stage3, NameMapper::dense(), other));
}

TEST(RefitLoader, HybridBackboneRefitBindsModelNotVisionDistractor) {
  TinyConfig c = fresh_config();
  c.root = "backbone";
  c.attn = "mixer";
  c.input_quant = false;
  FakeTrainer trainer(c);
  TinyConfig ec = c;
  ec.root = "model";
  FakeEngine engine(ec);
  NameMapperConfig mc = NameMapper::nemotron_h().config();
  mc.stacked.push_back({"gate_proj", "gate_up_proj", "gate"});
  mc.stacked.push_back({"up_proj", "gate_up_proj", "up"});
  NameMapper mapper(mc);
  // The engine also serves a vision tower owned elsewhere (listed as non-local); a vision
  // name in the stream is still rejected as an unknown root, never bound.
  refit(engine, mapper, export_stream(trainer));
  EXPECT_GT(engine.serving.at("model.layers.1.mixer.attn.k_bmm_quantizer._amax").item(), 0);
  Stream s = export_stream(trainer);
  s.push_back({"vision_model.layers.1.mixer.k_bmm_quantizer._amax", Tensor::scalar(9, DType::BF16)});
  auto snap = engine.snapshot();
  EXPECT_THROW(refit(engine, mapper, s), Error);
  EXPECT_TRUE(engine.same_as(snap));
}

// Every failure mode: Error naming the tensor, abort called, serving state bit-identical.
struct FailureCase {
  const char* what;
  std::string expect_tensor;
  std::function<void(Stream&)> corrupt;
};

TEST(RefitLoader, EveryFailureModeLeavesServingStateUnchanged) {
  TinyConfig c = fresh_config();
  SCOPED_TRACE(c.seed);
  FakeTrainer trainer(c);
  const std::string k1 = "model.layers.1.self_attn.k_bmm_quantizer._amax";
  const std::string k1rt = "model.layers.1.self_attn.attn.k_bmm_quantizer._amax";
  const std::string qw = "model.layers.0.self_attn.q_proj.weight";
  auto set = [&](const std::string& name, Tensor t) {
    return [name, t](Stream& s) {
      for (auto& x : s)
        if (x.name == name) x.tensor = t;
    };
  };
  auto drop = [](const std::string& name) {
    return [name](Stream& s) {
      std::erase_if(s, [&](const NamedTensor& x) { return x.name == name; });
    };
  };
  std::vector<FailureCase> cases = {
      {"missing K/V amax", k1rt, drop(k1)},
      {"missing weight", "model.norm.weight", drop("model.norm.weight")},
      {"missing shard", "model.layers.0.self_attn.qkv_proj.weight (shard q)", drop(qw)},
      {"duplicate", k1, [&](Stream& s) { for (auto x : Stream(s)) if (x.name == k1) s.push_back(x); }},
      {"duplicate shard", qw, [&](Stream& s) { for (auto x : Stream(s)) if (x.name == qw) s.push_back(x); }},
      {"unexpected name", "model.layers.0.self_attn.q_bmm_quantizer._amax",
       [](Stream& s) { s.push_back({"model.layers.0.self_attn.q_bmm_quantizer._amax", Tensor::scalar(1, DType::BF16)}); }},
      {"unknown root", "language_model.model.layers.0.self_attn.k_bmm_quantizer._amax",
       [](Stream& s) { s.insert(s.begin() + 3, {"language_model.model.layers.0.self_attn.k_bmm_quantizer._amax", Tensor::scalar(1, DType::BF16)}); }},
      {"shape mismatch", k1, set(k1, Tensor::from_f32(std::vector<float>{2.f}, {1}, DType::BF16))},
      {"shard shape mismatch", qw, set(qw, Tensor::zeros({5, c.hidden}, DType::BF16))},
      {"dtype mismatch", k1, set(k1, Tensor::scalar(2.f, DType::F32))},
      {"weight dtype mismatch", "lm_head.weight", set("lm_head.weight", Tensor::zeros({c.vocab, c.hidden}, DType::F32))},
      {"inf amax", k1, set(k1, Tensor::scalar(INFINITY, DType::BF16))},
      {"nan amax", k1, set(k1, Tensor::scalar(NAN, DType::BF16))},
      {"zero amax", k1, set(k1, Tensor::scalar(0.f, DType::BF16))},
      {"sentinel amax", k1, set(k1, Tensor::scalar(-1.f, DType::BF16))},
      {"bad input amax", "model.layers.2.mlp.up_proj.input_quantizer._amax",
       set("model.layers.2.mlp.up_proj.input_quantizer._amax", Tensor::scalar(-3.f, DType::BF16))},
  };
  for (const auto& fc : cases) {
    SCOPED_TRACE(fc.what);
    FakeEngine engine(c);
    // A previous good refit, so the serving state holds real values (not just zeros).
    refit(engine, NameMapper::dense(), export_stream(trainer));
    auto snap = engine.snapshot();
    Stream s = export_stream(FakeTrainer([&] { TinyConfig d = c; d.seed += 1000; return d; }()));
    fc.corrupt(s);
    try {
      refit(engine, NameMapper::dense(), s);
      ADD_FAILURE() << "refit accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.tensor(), fc.expect_tensor) << e.what();
    }
    EXPECT_TRUE(engine.same_as(snap));
    EXPECT_EQ(engine.commits, 1);
    EXPECT_EQ(engine.aborts, 1);
    // The metadata dry run catches the structural ones before any byte moves.
    RefitMetadata meta;
    for (const auto& x : s) meta.push_back({x.name, x.tensor.shape(), x.tensor.dtype()});
    bool value_only = std::string(fc.what).find("amax") != std::string::npos &&
                      std::string(fc.what).find("missing") == std::string::npos;
    if (!value_only) {
      EXPECT_THROW(StrictLoader(engine, NameMapper::dense()).check_metadata(meta), Error);
    }
  }
}

TEST(RefitLoader, SentinelIsResetEveryRefitSoStaleAmaxCannotSurvive) {
  TinyConfig c = fresh_config();
  FakeTrainer trainer(c);
  FakeEngine engine(c);
  refit(engine, NameMapper::dense(), export_stream(trainer));
  // Second refit without K/V amax (e.g. a trainer that lost them): the old values must not
  // be kept silently.
  Stream s = export_stream(trainer);
  std::erase_if(s, [](const NamedTensor& x) { return is_kv_amax_name(x.name); });
  auto snap = engine.snapshot();
  EXPECT_THROW(refit(engine, NameMapper::dense(), s), Error);
  EXPECT_TRUE(engine.same_as(snap));
  // Validation accepts the FP8 (448) and NVFP4 (6) style values.
  for (float v : {448.0f, 6.0f}) {
    Stream ok = export_stream(trainer);
    for (auto& x : ok)
      if (is_kv_amax_name(x.name)) x.tensor = Tensor::scalar(v, DType::BF16);
    refit(engine, NameMapper::dense(), ok);
    EXPECT_EQ(engine.serving.at("model.layers.0.self_attn.attn.v_bmm_quantizer._amax").item(), v);
  }
}

TEST(RefitLoader, LoadAfterFailureOrWithoutBeginIsRefused) {
  TinyConfig c = fresh_config();
  FakeEngine engine(c);
  StrictLoader loader(engine, NameMapper::dense());
  EXPECT_THROW(loader.load("model.norm.weight", Tensor::zeros({c.hidden}, c.dtype)), Error);
  loader.begin();
  EXPECT_THROW(loader.load("model.norm.weight", Tensor::zeros({c.hidden + 1}, c.dtype)), Error);
  EXPECT_THROW(loader.load("model.norm.weight", Tensor::zeros({c.hidden}, c.dtype)), Error);
  EXPECT_EQ(engine.aborts, 1);
  EXPECT_EQ(engine.commits, 0);
}

}  // namespace
}  // namespace qarl::refit

namespace qarl::refit {
namespace {

// The superseded loader refused two candidate buffers for one K/V amax. Here the mapping is
// deterministic (the attn. form), so a second declared buffer is never filled and the refit
// fails naming it instead of binding either one by guess.
TEST(RefitLoader, AmbiguousKvBufferIsNeverFilledByGuess) {
  TinyConfig c;
  FakeTrainer trainer(c);
  FakeEngine engine(c);
  const std::string twin = "model.layers.0.self_attn.k_bmm_quantizer._amax";
  engine.params_.push_back({twin, {}, c.amax_dtype, {}, ParamKind::KvAmax});
  engine.serving[twin] = Tensor::scalar(-1.0f, c.amax_dtype);
  auto snap = engine.snapshot();
  Stream s;
  for_each_export(plan_export(trainer), [&](const std::string& n, const Tensor& x) { s.push_back({n, x}); });
  try {
    StrictLoader loader(engine, NameMapper::dense());
    loader.begin();
    for (const auto& [n, t] : s) loader.load(n, t);
    loader.finish();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.tensor(), twin);
  }
  EXPECT_TRUE(engine.same_as(snap));
}

}  // namespace
}  // namespace qarl::refit
