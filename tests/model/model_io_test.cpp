// Loading, saving and bad inputs.
#include <cstring>
#include <filesystem>

#include <cmath>

#include <gtest/gtest.h>

#include "qarl/core/error.h"

#include "model/model_test_util.h"
#include "qarl/core/fs.h"
#include "qarl/io/checkpoint.h"
#include "qarl/model/cli_support.h"
#include "qarl/model/forward.h"
#include "test_util.h"

namespace qarl::model {
namespace {

namespace fs = std::filesystem;

TEST(ModelIO, SaveLoadRoundTripIsExactForEachDtype) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
    for (auto fam : {io::ModelFamily::Llama, io::ModelFamily::Qwen2, io::ModelFamily::Qwen3}) {
      test::TempDir dir;
      Model m = Model::random_init(test::tiny_config(fam), seed, dt);
      m.save(dir.path());
      Model back = Model::load(dir.path());
      EXPECT_EQ(back.dtype(), dt);
      EXPECT_EQ(back.param_names(), m.param_names());
      for (const auto& n : m.param_names()) EXPECT_TRUE(tensors_bitwise_equal(m.param(n), back.param(n))) << n;
      std::vector<std::vector<int32_t>> s = {{3, 1, 4, 1, 5, 9, 2, 6}};
      auto a = score_sequences(m, s)[0], b = score_sequences(back, s)[0];
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4));
      io::Checkpoint ck = io::Checkpoint::open(dir.path());
      EXPECT_EQ(ck.contains("lm_head.weight"), fam != io::ModelFamily::Qwen3);  // Qwen3 tied
    }
  }
}

TEST(ModelIO, RandomInitIsSeeded) {
  Model a = Model::random_init(test::tiny_config(io::ModelFamily::Llama), 42);
  Model b = Model::random_init(test::tiny_config(io::ModelFamily::Llama), 42);
  Model c = Model::random_init(test::tiny_config(io::ModelFamily::Llama), 43);
  const std::string n = "model.layers.1.mlp.up_proj.weight";
  EXPECT_TRUE(tensors_bitwise_equal(a.param(n), b.param(n)));
  EXPECT_FALSE(tensors_bitwise_equal(a.param(n), c.param(n)));
  auto v = a.param(n).to_f32_vector();
  double ss = 0;
  for (float x : v) ss += double(x) * x;
  EXPECT_NEAR(std::sqrt(ss / double(v.size())), 0.02, 0.004);  // HF initializer_range
}

TEST(ModelIO, MismatchedShapeNamesTheTensor) {
  test::TempDir dir;
  Model m = Model::random_init(test::tiny_config(io::ModelFamily::Qwen2), 1);
  m.save(dir.path());
  // Rewrite the weights with one tensor of the wrong shape.
  io::Checkpoint ck = io::Checkpoint::open(dir.path());
  std::vector<std::pair<std::string, Tensor>> t;
  for (const auto& n : ck.names()) {
    Tensor x = ck.get(n).clone();
    if (n == "model.layers.1.self_attn.k_proj.weight") x = Tensor::zeros({x.dim(0) + 1, x.dim(1)}, x.dtype());
    t.emplace_back(n, x);
  }
  test::TempDir dir2;
  io::save_checkpoint_tensors(dir2.path(), t);
  fs::copy_file(dir.file("config.json"), dir2.file("config.json"));
  try {
    Model::load(dir2.path());
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.tensor(), "model.layers.1.self_attn.k_proj.weight");
    EXPECT_NE(std::string(e.what()).find("shape"), std::string::npos) << e.what();
  }
}

TEST(ModelIO, MissingTensorAndUnknownArchitecture) {
  test::TempDir dir;
  Model m = Model::random_init(test::tiny_config(io::ModelFamily::Llama), 1);
  m.save(dir.path());
  io::Checkpoint ck = io::Checkpoint::open(dir.path());
  std::vector<std::pair<std::string, Tensor>> t;
  for (const auto& n : ck.names())
    if (n != "model.norm.weight") t.emplace_back(n, ck.get(n).clone());
  test::TempDir dir2;
  io::save_checkpoint_tensors(dir2.path(), t);
  fs::copy_file(dir.file("config.json"), dir2.file("config.json"));
  EXPECT_THROW(Model::load(dir2.path()), Error);
  // Unknown architecture.
  std::string cfg = read_file(dir.file("config.json"));
  const auto at = cfg.find("LlamaForCausalLM");
  ASSERT_NE(at, std::string::npos);
  cfg.replace(at, std::strlen("LlamaForCausalLM"), "MambaForCausalLM");
  write_file_atomic(dir.file("config.json"), cfg);
  try {
    Model::load(dir.path());
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("MambaForCausalLM"), std::string::npos) << e.what();
  }
}

TEST(ModelIO, BadTokensAreErrors) {
  Model m = Model::random_init(test::tiny_config(io::ModelFamily::Qwen3), 1);
  EXPECT_THROW(score_sequences(m, {{1, 2, 97}}), Error);
  EXPECT_THROW(score_sequences(m, {{1, -2}}), Error);
  EXPECT_THROW(score_sequences(m, {{1, 2}}, 0.0f), Error);
  // Empty and single-token sequences have no logprobs.
  auto r = score_sequences(m, {{}, {5}});
  EXPECT_TRUE(r[0].empty());
  EXPECT_TRUE(r[1].empty());
}

TEST(ModelIO, CalibratedQuantizerWithoutAmaxNamesIt) {
  Model m = Model::random_init(test::tiny_config(io::ModelFamily::Llama), 1);
  try {
    m.configure_kv_quantizers(test::kv_recipe("{num_bits: e4m3}"), {}, true);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.self_attn.k_bmm_quantizer"), std::string::npos) << e.what();
  }
  // Nothing was half-applied: the model still scores unquantized.
  EXPECT_FALSE(m.k_quantizer(0).enabled());
  // Constant amax needs none.
  m.configure_kv_quantizers(test::kv_recipe("{num_bits: e4m3, use_constant_amax: true}"), {}, true);
  EXPECT_TRUE(m.k_quantizer(1).enabled());
}

TEST(ModelIO, NvFp4NeedsHeadDimMultipleOf16) {
  io::HFConfig c = test::tiny_config(io::ModelFamily::Llama);
  c.head_dim = 12;
  c.num_attention_heads = 4;
  Model m = Model::random_init(c, 1);
  EXPECT_THROW(m.configure_kv_quantizers(
                   test::kv_recipe("{num_bits: e2m1, block_sizes: {-1: 16, type: dynamic, scale_bits: e4m3}}"),
                   {}, false),
               Error);
}

}  // namespace
}  // namespace qarl::model
