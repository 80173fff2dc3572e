// The point of the rollout engine: for every sample, the trainer's scoring of prompt + tokens
// (same recipe, amax and temperature) gives bitwise the engine's logprobs. Unquantized, FP8
// constant and calibrated, NVFP4; each storage mode; many concurrent requests of different
// lengths with n samples; preemption forced by a small cache.
#include <gtest/gtest.h>

#include <cstring>

#include "qarl/core/error.h"
#include "qarl/rollout/engine.h"
#include "qarl/rollout/runtime_model.h"
#include "rollout_fixtures.h"
#include "test_util.h"

namespace qarl::rollout {
namespace {

using test::KvRecipe;

struct ParityCase {
  KvRecipe recipe;
  KVCacheMode mode;
  io::ModelFamily family;
};

std::string case_name(const testing::TestParamInfo<ParityCase>& i) {
  std::string s = std::string(test::recipe_name(i.param.recipe)) + "_" + kv_cache_mode_name(i.param.mode) +
                  "_" + (i.param.family == io::ModelFamily::Qwen3 ? "qwen3" : i.param.family == io::ModelFamily::Qwen2 ? "qwen2" : "llama");
  for (char& c : s)
    if (c == '-') c = '_';
  return s;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class EngineParity : public testing::TestWithParam<ParityCase> {};

TEST_P(EngineParity, GeneratedLogprobsEqualTrainerScoresBitwise) {
  const ParityCase c = GetParam();
  const uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  qarl::test::TempDir dir;
  const auto cfg = test::tiny_config(c.family, 2);
  const quant::QuantRecipe recipe = test::make_recipe(c.recipe);
  // Calibrated FP8 takes its amax from a separate map (--kv-amax); NVFP4 from the checkpoint.
  std::map<std::string, Tensor> amax_arg;
  if (c.recipe == KvRecipe::Fp8Calibrated) amax_arg = test::tiny_amax(2, DType::F32);
  {
    model::Model m = model::Model::random_init(cfg, seed, DType::F32);
    if (c.recipe == KvRecipe::Nvfp4) m.configure_kv_quantizers(recipe, test::tiny_amax(2), true);
    m.save(dir.path());
  }
  auto rm = RuntimeModel::load(dir.path(), recipe, amax_arg);

  auto requests = test::mixed_requests(24, 20, 10, cfg.vocab_size, seed);
  // The oldest request (never a preemption victim) forks 3 samples from a 6-token prompt, so
  // their first decode writes into the shared, partially filled block: copy-on-write.
  GenRequest fork;
  fork.prompt = {3, 1, 4, 1, 5, 9};
  fork.params.n = 3;
  fork.params.max_new_tokens = 5;
  fork.params.temperature = 1.0f;
  requests.insert(requests.begin(), fork);
  std::vector<float> temps;
  auto run = [&](KVCacheMode mode, int blocks, int batch_tokens, EngineStats* stats) {
    EngineConfig ec;
    ec.block_size = 4;
    ec.kv_mode = mode;
    ec.kv_cache_bytes = kv_bytes_per_token(mode, 2, rm->model().kv_dim()) * 4 * uint64_t(blocks);
    ec.max_batch_tokens = batch_tokens;
    ec.seed = seed;
    Engine e(rm->model(), ec);
    auto outs = e.generate(requests);
    if (stats) *stats = e.stats();
    return outs;
  };
  EngineStats st;
  auto outs = run(c.mode, 12, 64, &st);
  // Every request produced its n samples, none failed.
  size_t want = 0;
  for (const auto& r : requests) want += size_t(r.params.n);
  ASSERT_EQ(outs.size(), want);
  for (const auto& o : outs) {
    ASSERT_EQ(o.error, "");
    temps.push_back(requests[size_t(o.request)].params.logprob_temperature());
  }
  EXPECT_GT(st.preemptions, 0) << "the small cache should force preemption";
  EXPECT_GT(st.forks, 0);
  EXPECT_GT(st.cow_copies, 0);

  auto ref = test::trainer_logprobs(dir.path(), recipe, amax_arg, outs, temps);
  size_t tokens = 0;
  for (size_t i = 0; i < outs.size(); ++i) {
    const auto& o = outs[i];
    const auto& p = requests[size_t(o.request)].params;
    SCOPED_TRACE(fmt::format("request {} sample {}", o.request, o.sample));
    ASSERT_EQ(o.tokens.size(), o.logprobs.size());
    EXPECT_TRUE(bitwise_equal(o.logprobs, ref[i]));
    // Finish reasons agree with the tokens.
    bool stopped = std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), o.tokens.back()) !=
                   p.stop_token_ids.end();
    EXPECT_EQ(o.finish_reason, stopped ? "stop" : "length");
    if (!stopped) {
      EXPECT_EQ(int(o.tokens.size()), p.max_new_tokens);
    }
    tokens += o.tokens.size();
  }
  EXPECT_GT(tokens, want);

  // Native storage reads back exactly what auto stores, and no batching choice changes
  // anything: a roomy cache with one big batch gives the very same samples.
  auto same = [&](const std::vector<SampleOutput>& other) {
    ASSERT_EQ(other.size(), outs.size());
    for (size_t i = 0; i < outs.size(); ++i) {
      EXPECT_EQ(other[i].tokens, outs[i].tokens) << i;
      EXPECT_TRUE(bitwise_equal(other[i].logprobs, outs[i].logprobs)) << i;
    }
  };
  if (c.mode != KVCacheMode::Auto) same(run(KVCacheMode::Auto, 12, 64, nullptr));
  EngineStats roomy;
  same(run(c.mode, 400, 512, &roomy));
  EXPECT_EQ(roomy.preemptions, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Recipes, EngineParity,
    testing::Values(ParityCase{KvRecipe::None, KVCacheMode::Auto, io::ModelFamily::Qwen3},
                    ParityCase{KvRecipe::None, KVCacheMode::Auto, io::ModelFamily::Qwen2},
                    ParityCase{KvRecipe::Fp8Constant, KVCacheMode::Auto, io::ModelFamily::Qwen3},
                    ParityCase{KvRecipe::Fp8Constant, KVCacheMode::FP8, io::ModelFamily::Qwen3},
                    ParityCase{KvRecipe::Fp8Calibrated, KVCacheMode::Auto, io::ModelFamily::Llama},
                    ParityCase{KvRecipe::Fp8Calibrated, KVCacheMode::FP8, io::ModelFamily::Qwen3},
                    ParityCase{KvRecipe::Nvfp4, KVCacheMode::Auto, io::ModelFamily::Qwen3},
                    ParityCase{KvRecipe::Nvfp4, KVCacheMode::NVFP4, io::ModelFamily::Qwen3},
                    ParityCase{KvRecipe::Nvfp4, KVCacheMode::NVFP4, io::ModelFamily::Qwen2}),
    case_name);

// Quantization really changes the logprobs (the parity above is not trivially unquantized).
TEST(EngineParity, QuantizedKVChangesLogprobs) {
  const uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  qarl::test::TempDir dir;
  const auto cfg = test::tiny_config(io::ModelFamily::Qwen3, 2);
  test::save_tiny_model(dir.path(), cfg, seed);
  GenRequest r;
  for (int i = 0; i < 12; ++i) r.prompt.push_back(int32_t((i * 7 + 3) % cfg.vocab_size));
  r.params.temperature = 0;
  r.params.max_new_tokens = 6;
  std::vector<std::vector<float>> lps;
  for (KvRecipe k : {KvRecipe::None, KvRecipe::Fp8Calibrated, KvRecipe::Nvfp4}) {
    auto rm = RuntimeModel::load(dir.path(), test::make_recipe(k), test::tiny_amax(2));
    EngineConfig ec;
    ec.kv_cache_bytes = 1 << 20;
    Engine e(rm->model(), ec);
    lps.push_back(e.generate({r})[0].logprobs);
  }
  EXPECT_FALSE(bitwise_equal(lps[0], lps[1]));
  EXPECT_FALSE(bitwise_equal(lps[0], lps[2]));
  EXPECT_FALSE(bitwise_equal(lps[1], lps[2]));
}

TEST(EngineParity, NativeCacheNeedsMatchingQuantizers) {
  qarl::test::TempDir dir;
  const auto cfg = test::tiny_config(io::ModelFamily::Qwen3, 2);
  test::save_tiny_model(dir.path(), cfg, 5);
  EngineConfig ec;
  ec.kv_cache_bytes = 1 << 20;
  {
    auto rm = RuntimeModel::load(dir.path(), test::make_recipe(KvRecipe::None));
    ec.kv_mode = KVCacheMode::FP8;
    try {
      Engine e(rm->model(), ec);
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("model.layers.0.self_attn.k_bmm_quantizer is disabled"),
                std::string::npos) << e.what();
    }
  }
  {
    auto rm = RuntimeModel::load(dir.path(), test::make_recipe(KvRecipe::Fp8Constant));
    ec.kv_mode = KVCacheMode::NVFP4;
    EXPECT_THROW(Engine(rm->model(), ec), Error);
    ec.kv_mode = KVCacheMode::FP8;
    EXPECT_NO_THROW(Engine(rm->model(), ec));
  }
}

}  // namespace
}  // namespace qarl::rollout
