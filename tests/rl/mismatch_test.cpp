#include <gtest/gtest.h>

#include <cmath>

#include "qarl/rl/mismatch.h"
#include "test_util.h"

using namespace qarl::rl;

TEST(Mismatch, HandComputed) {
  // Token 2 is masked and must not count.
  const std::vector<double> g = {-1.0, -2.0, -9.0}, p = {-1.1, -2.0, -0.1}, mask = {1, 1, 0};
  auto m = mismatch_metrics<double>(g, p, mask);
  EXPECT_DOUBLE_EQ(m.valid_tokens, 2);
  EXPECT_NEAR(m.token_mult_prob_error, (std::exp(0.1) + 1.0) / 2.0, 1e-15);
  EXPECT_NEAR(m.max_token_mult_prob_error, std::exp(0.1), 1e-12);
  // gen: logr = p - g = -0.1 ; policy: logr = g - p = +0.1 (k3)
  EXPECT_NEAR(m.gen_kl_error, (std::exp(-0.1) - 1 + 0.1) / 2.0, 1e-15);
  EXPECT_NEAR(m.policy_kl_error, (std::exp(0.1) - 1 - 0.1) / 2.0, 1e-15);
  // JS with mixture M = (e^p + e^g)/2, written out for token 0.
  const double lm = std::log(0.5 * std::exp(-1.1) + 0.5 * std::exp(-1.0));
  const double js0 = 0.5 * (std::exp(-1.1 - lm) - (-1.1 - lm) - 1) + 0.5 * (std::exp(-1.0 - lm) - (-1.0 - lm) - 1);
  EXPECT_NEAR(m.js_divergence_error, js0 / 2.0, 1e-15);
  EXPECT_GT(m.js_divergence_error, 0);

  auto k1 = mismatch_metrics<double>(g, p, mask, KlType::K1);
  EXPECT_NEAR(k1.gen_kl_error, 0.1 / 2.0, 1e-15);
  EXPECT_NEAR(k1.policy_kl_error, -0.1 / 2.0, 1e-15);
  auto k2 = mismatch_metrics<double>(g, p, mask, KlType::K2);
  EXPECT_NEAR(k2.gen_kl_error, 0.005 / 2.0, 1e-15);
}

TEST(Mismatch, IdenticalLogprobsGiveExactZeros) {
  const std::vector<float> g = {-0.3f, -7.5f, -1e-4f}, mask = {1, 1, 1};
  auto m = mismatch_metrics<float>(g, g, mask);
  EXPECT_EQ(m.token_mult_prob_error, 1.0);
  EXPECT_EQ(m.gen_kl_error, 0.0);
  EXPECT_EQ(m.policy_kl_error, 0.0);
  EXPECT_EQ(m.js_divergence_error, 0.0);
}

TEST(Mismatch, AccumulatorMergesMicroBatches) {
  const std::vector<double> g = {-1, -2, -0.5, -3}, p = {-1.2, -1.9, -0.4, -3.3}, m = {1, 0, 1, 1};
  auto whole = mismatch_metrics<double>(g, p, m);
  MismatchAccumulator acc;
  acc.add<double>(std::span(g).first(2), std::span(p).first(2), std::span(m).first(2));
  acc.add<double>(std::span(g).last(2), std::span(p).last(2), std::span(m).last(2));
  auto merged = acc.mean();
  EXPECT_NEAR(merged.gen_kl_error, whole.gen_kl_error, 1e-15);
  EXPECT_NEAR(merged.js_divergence_error, whole.js_divergence_error, 1e-15);
  EXPECT_NEAR(merged.token_mult_prob_error, whole.token_mult_prob_error, 1e-15);
  EXPECT_EQ(MismatchAccumulator().mean().valid_tokens, 0);
}

namespace qarl::rl {
namespace {
TEST(MismatchExact, IdenticalLogprobsGiveExactlyZeroAndNoUnderflow) {
  auto v = test::random_normal(997, 3.0f);
  std::vector<float> lp(v.size()), mask(v.size(), 1.0f);
  for (size_t i = 0; i < v.size(); ++i) lp[i] = -std::abs(v[i]) - (i % 7 == 0 ? 800.0f : 0.0f);
  auto m = mismatch_metrics<float>(lp, lp, mask);
  EXPECT_EQ(m.js_divergence_error, 0.0);
  EXPECT_EQ(m.gen_kl_error, 0.0);
  EXPECT_EQ(m.token_mult_prob_error, 1.0);
  std::vector<float> g = lp;
  g[0] -= 0.5f;
  auto d = mismatch_metrics<float>(g, lp, mask);
  EXPECT_GT(d.js_divergence_error, 0.0);
  EXPECT_TRUE(std::isfinite(d.js_divergence_error));
}
}  // namespace
}  // namespace qarl::rl
