// The runtime weight layout (fused qkv_proj / gate_up_proj, K/V amax under self_attn.attn.)
// loaded through the HF -> runtime mapper, forward on it bitwise equal to the trainer's
// model, and live refits into a running engine.
#include <gtest/gtest.h>

#include <cstring>

#include "qarl/core/error.h"
#include "qarl/core/rng.h"
#include "qarl/model/forward.h"
#include "qarl/refit/export.h"
#include "qarl/refit/loader.h"
#include "qarl/rollout/engine.h"
#include "qarl/rl/policy_export.h"
#include "qarl/rollout/runtime_model.h"
#include "rollout_fixtures.h"
#include "test_util.h"

namespace qarl::rollout {
namespace {

using test::KvRecipe;

std::vector<std::vector<int32_t>> some_sequences(int vocab, uint64_t seed) {
  SequentialRng r(seed, 5);
  std::vector<std::vector<int32_t>> s;
  for (int i = 0; i < 5; ++i) {
    std::vector<int32_t> t;
    for (int j = 0, n = 2 + int(r.below(30)); j < n; ++j) t.push_back(int32_t(r.below(uint64_t(vocab))));
    s.push_back(t);
  }
  return s;
}

TEST(RuntimeModel, FusedLayoutAndForwardEqualTheTrainerModel) {
  for (auto family : {io::ModelFamily::Qwen3, io::ModelFamily::Qwen2, io::ModelFamily::Llama}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      const uint64_t seed = qarl::test::fresh_seed();
      SCOPED_TRACE(fmt::format("family {} dtype {} seed {}", int(family), dtype_name(dt), seed));
      qarl::test::TempDir dir;
      auto cfg = test::tiny_config(family, 2);
      test::save_tiny_model(dir.path(), cfg, seed, dt);
      const auto recipe = test::make_recipe(KvRecipe::Nvfp4);
      const auto amax = test::tiny_amax(2, dt);
      auto rm = RuntimeModel::load(dir.path(), recipe, amax);
      model::Model ref = model::Model::load(dir.path());
      ref.configure_kv_quantizers(recipe, amax, true);

      // Layout: fused tensors whose row ranges are the HF tensors, in the checkpoint dtype.
      const auto& t = rm->tensors();
      const int64_t qd = ref.q_dim(), kd = ref.kv_dim(), H = cfg.hidden_size, I = cfg.intermediate_size;
      const Tensor& qkv = t.at("model.layers.1.self_attn.qkv_proj.weight");
      EXPECT_EQ(qkv.shape(), (Shape{qd + 2 * kd, H}));
      EXPECT_EQ(qkv.dtype(), dt);
      EXPECT_EQ(t.at("model.layers.0.mlp.gate_up_proj.weight").shape(), (Shape{2 * I, H}));
      EXPECT_EQ(t.count("model.layers.0.self_attn.q_proj.weight"), 0u);
      EXPECT_EQ(t.count("lm_head.weight"), cfg.tie_word_embeddings ? 0u : 1u);
      EXPECT_EQ(t.count("model.layers.0.self_attn.qkv_proj.bias"), cfg.attention_bias ? 1u : 0u);
      EXPECT_EQ(t.at("model.layers.1.self_attn.attn.v_bmm_quantizer._amax").item(),
                amax.at("model.layers.1.self_attn.v_bmm_quantizer._amax").item());
      EXPECT_TRUE(tensors_bitwise_equal(qkv.narrow0(qd, kd).to(DType::F32),
                                        ref.param("model.layers.1.self_attn.k_proj.weight")));
      EXPECT_TRUE(tensors_bitwise_equal(t.at("model.layers.0.mlp.gate_up_proj.weight").narrow0(I, I).to(DType::F32),
                                        ref.param("model.layers.0.mlp.up_proj.weight")));

      // Forward: bitwise the trainer model's logprobs.
      auto seqs = some_sequences(cfg.vocab_size, seed);
      auto a = model::score_sequences(rm->model(), seqs, 0.9f);
      auto b = model::score_sequences(ref, seqs, 0.9f);
      ASSERT_EQ(a.size(), b.size());
      for (size_t i = 0; i < a.size(); ++i)
        EXPECT_EQ(std::memcmp(a[i].data(), b[i].data(), a[i].size() * 4), 0) << i;
    }
  }
}

TEST(RuntimeModel, MissingCalibratedAmaxIsAnError) {
  qarl::test::TempDir dir;
  test::save_tiny_model(dir.path(), test::tiny_config(io::ModelFamily::Qwen3, 2), 3);
  try {
    RuntimeModel::load(dir.path(), test::make_recipe(KvRecipe::Fp8Calibrated));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.self_attn.k_bmm_quantizer._amax"), std::string::npos)
        << e.what();
  }
  // Constant amax needs none.
  EXPECT_NO_THROW(RuntimeModel::load(dir.path(), test::make_recipe(KvRecipe::Fp8Constant)));
}

TEST(RuntimeModel, LiveRefitIntoARunningEngine) {
  const uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  qarl::test::TempDir dir, dir2;
  const auto cfg = test::tiny_config(io::ModelFamily::Qwen3, 2);
  const auto recipe = test::make_recipe(KvRecipe::Nvfp4);
  const auto amax = test::tiny_amax(2, DType::BF16);
  test::save_tiny_model(dir.path(), cfg, seed, DType::BF16);
  auto rm = RuntimeModel::load(dir.path(), recipe, amax);
  EngineConfig ec;
  ec.kv_mode = KVCacheMode::NVFP4;
  ec.block_size = 4;
  ec.kv_cache_bytes = 1 << 20;
  ec.seed = seed;
  Engine engine(rm->model(), ec);
  rm->set_hooks([&] {
    if (!engine.idle()) throw runtime_err("refit while sequences are in flight");
  }, [&] { engine.weights_changed(); });
  auto reqs = test::mixed_requests(8, 12, 6, cfg.vocab_size, seed);
  auto before = engine.generate(reqs);

  // The "trainer": new weights and new amax.
  model::Model trainer = model::Model::random_init(cfg, seed + 1, DType::BF16);
  auto amax2 = test::tiny_amax(2, DType::BF16);
  amax2["model.layers.1.self_attn.k_bmm_quantizer._amax"] = Tensor::scalar(1.5f, DType::BF16);
  trainer.configure_kv_quantizers(recipe, amax2, true);
  rl::ModelExport src(trainer);  // the trainer's own export (qarl train uses it)
  auto plan = refit::plan_export(src);

  // A refit missing one K/V amax fails and leaves the serving state unchanged.
  {
    refit::StrictLoader loader(*rm, refit::NameMapper::dense());
    loader.begin();
    for_each_export(plan, [&](const std::string& n, const Tensor& t) {
      if (n != "model.layers.0.self_attn.v_bmm_quantizer._amax") loader.load(n, t);
    });
    try {
      loader.finish();
      FAIL() << "expected the refit to fail";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("model.layers.0.self_attn.attn.v_bmm_quantizer._amax"),
                std::string::npos) << e.what();
    }
    auto again = engine.generate(reqs);
    ASSERT_EQ(again.size(), before.size());
    for (size_t i = 0; i < again.size(); ++i) {
      EXPECT_EQ(again[i].tokens, before[i].tokens);
      EXPECT_EQ(std::memcmp(again[i].logprobs.data(), before[i].logprobs.data(), 4 * before[i].logprobs.size()), 0);
    }
  }
  // A complete refit: generation now matches the trainer bitwise.
  refit::StrictLoader loader(*rm, refit::NameMapper::dense());
  loader.check_metadata(refit::export_metadata(plan));
  loader.begin();
  for_each_export(plan, [&](const std::string& n, const Tensor& t) { loader.load(n, t); });
  auto report = loader.finish();
  EXPECT_EQ(report.kv_amax_validated, 4u);
  auto after = engine.generate(reqs);
  trainer.save(dir2.path());
  std::vector<float> temps;
  for (const auto& o : after) temps.push_back(reqs[size_t(o.request)].params.logprob_temperature());
  auto ref = test::trainer_logprobs(dir2.path(), recipe, amax2, after, temps);
  bool changed = false;
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(std::memcmp(after[i].logprobs.data(), ref[i].data(), 4 * ref[i].size()), 0) << i;
    changed |= after[i].logprobs != before[i].logprobs;
  }
  EXPECT_TRUE(changed);
}

}  // namespace
}  // namespace qarl::rollout
