// Bad requests fail alone; a load test pushes thousands of requests through a tiny cache.
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

TEST(EngineRequests, BadRequestsFailAloneWithClearMessages) {
  const uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  qarl::test::TempDir dir;
  const auto cfg = test::tiny_config(io::ModelFamily::Qwen3, 2);  // context 96, vocab 61
  test::save_tiny_model(dir.path(), cfg, seed);
  auto rm = RuntimeModel::load(dir.path(), test::make_recipe(KvRecipe::None));
  EngineConfig ec;
  ec.block_size = 4;
  ec.kv_cache_bytes = kv_bytes_per_token(KVCacheMode::Auto, 2, 32) * 4 * 20;  // 80 tokens
  Engine e(rm->model(), ec);

  auto good = test::mixed_requests(6, 10, 5, cfg.vocab_size, seed);
  std::vector<std::pair<GenRequest, std::string>> bad;
  auto add_bad = [&](auto f, std::string msg) {
    GenRequest r = good[0];
    f(r);
    bad.emplace_back(r, msg);
  };
  add_bad([](GenRequest& r) { r.prompt.clear(); }, "empty prompt");
  add_bad([](GenRequest& r) { r.prompt[0] = 61; }, "prompt token 61 at position 0 is outside the vocabulary [0, 61)");
  add_bad([](GenRequest& r) { r.prompt.push_back(-3); }, "is outside the vocabulary");
  add_bad([](GenRequest& r) { r.prompt.assign(96, 1); }, "prompt has 96 tokens; the context is 96 tokens");
  add_bad([](GenRequest& r) { r.params.temperature = -0.5f; }, "temperature must be");
  add_bad([](GenRequest& r) { r.params.top_p = 0.0f; }, "top_p must be in (0, 1]");
  add_bad([](GenRequest& r) { r.params.top_k = -7; }, "top_k must be");
  add_bad([](GenRequest& r) { r.params.min_p = 2.0f; }, "min_p must be");
  add_bad([](GenRequest& r) { r.params.n = 0; }, "n must be");
  add_bad([](GenRequest& r) { r.params.max_new_tokens = 0; }, "max_new_tokens must be");
  add_bad([](GenRequest& r) { r.params.stop_token_ids = {99}; }, "stop token id 99");
  add_bad([](GenRequest& r) { r.prompt.assign(70, 2); r.params.max_new_tokens = 20; },
          "needs 23 KV blocks of 4 tokens (70 prompt + 20 new tokens) but the whole cache has 20");

  // Interleave good and bad requests.
  std::vector<GenRequest> all;
  std::vector<int> kind;  // -1 good, else index into bad
  for (size_t i = 0; i < std::max(good.size(), bad.size()); ++i) {
    if (i < bad.size()) { all.push_back(bad[i].first); kind.push_back(int(i)); }
    if (i < good.size()) { all.push_back(good[i]); kind.push_back(-1); }
  }
  auto outs = e.generate(all);
  std::vector<SampleOutput> good_outs;
  std::vector<float> temps;
  for (const auto& o : outs) {
    int k = kind[size_t(o.request)];
    if (k >= 0) {
      EXPECT_NE(o.error.find(bad[size_t(k)].second), std::string::npos)
          << "got '" << o.error << "', want '" << bad[size_t(k)].second << "'";
      EXPECT_TRUE(o.tokens.empty());
      EXPECT_EQ(o.prompt_tokens, all[size_t(o.request)].prompt);
    } else {
      EXPECT_EQ(o.error, "");
      EXPECT_FALSE(o.tokens.empty());
      good_outs.push_back(o);
      temps.push_back(all[size_t(o.request)].params.logprob_temperature());
    }
  }
  size_t want = 0;
  for (const auto& g : good) want += size_t(g.params.n);
  EXPECT_EQ(good_outs.size(), want);
  auto ref = test::trainer_logprobs(dir.path(), test::make_recipe(KvRecipe::None), {}, good_outs, temps);
  for (size_t i = 0; i < good_outs.size(); ++i)
    EXPECT_EQ(std::memcmp(good_outs[i].logprobs.data(), ref[i].data(), ref[i].size() * 4), 0) << i;
}

TEST(EngineRequests, GenerationStopsAtTheContext) {
  qarl::test::TempDir dir;
  const auto cfg = test::tiny_config(io::ModelFamily::Llama, 1);
  test::save_tiny_model(dir.path(), cfg, 77);
  auto rm = RuntimeModel::load(dir.path(), test::make_recipe(KvRecipe::None));
  EngineConfig ec;
  ec.kv_cache_bytes = 1 << 20;
  Engine e(rm->model(), ec);
  GenRequest r;
  r.prompt.assign(90, 5);
  r.params.max_new_tokens = 50;
  auto outs = e.generate({r});
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_EQ(outs[0].tokens.size(), 6u);  // 90 + 6 = the context of 96
  EXPECT_EQ(outs[0].finish_reason, "length");
}

// Thousands of short requests through a cache far smaller than their total: all finish, and
// every sample's logprobs equal the trainer's.
TEST(EngineRequests, LoadTestThousandsOfRequestsThroughATinyCache) {
  const uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  qarl::test::TempDir dir;
  auto cfg = test::tiny_config(io::ModelFamily::Qwen3, 1);
  cfg.hidden_size = 16;
  cfg.intermediate_size = 24;
  cfg.num_attention_heads = 2;
  cfg.num_key_value_heads = 1;
  test::save_tiny_model(dir.path(), cfg, seed);
  const auto recipe = test::make_recipe(KvRecipe::Fp8Constant);
  auto rm = RuntimeModel::load(dir.path(), recipe);
  EngineConfig ec;
  ec.block_size = 2;
  ec.kv_mode = KVCacheMode::FP8;
  ec.kv_cache_bytes = kv_bytes_per_token(KVCacheMode::FP8, 1, 16) * 2 * 24;  // 48 tokens
  ec.seed = seed;
  Engine e(rm->model(), ec);
  auto reqs = test::mixed_requests(2500, 6, 4, cfg.vocab_size, seed);
  size_t want = 0, total_tokens = 0;
  for (const auto& r : reqs) {
    want += size_t(r.params.n);
    total_tokens += size_t(r.params.n) * (r.prompt.size() + size_t(r.params.max_new_tokens));
  }
  EXPECT_GT(total_tokens, 100u * 48u);
  auto outs = e.generate(reqs);
  ASSERT_EQ(outs.size(), want);
  std::vector<float> temps;
  for (const auto& o : outs) {
    ASSERT_EQ(o.error, "");
    ASSERT_FALSE(o.tokens.empty());
    temps.push_back(reqs[size_t(o.request)].params.logprob_temperature());
  }
  EXPECT_GT(e.stats().preemptions, 0);
  EXPECT_TRUE(e.idle());
  EXPECT_EQ(e.cache().blocks().num_free(), e.cache().blocks().num_blocks());  // nothing leaked
  auto ref = test::trainer_logprobs(dir.path(), recipe, {}, outs, temps);
  size_t mismatches = 0;
  for (size_t i = 0; i < outs.size(); ++i)
    mismatches += outs[i].logprobs.size() != ref[i].size() ||
                  std::memcmp(outs[i].logprobs.data(), ref[i].data(), ref[i].size() * 4) != 0;
  EXPECT_EQ(mismatches, 0u);
}

}  // namespace
}  // namespace qarl::rollout
