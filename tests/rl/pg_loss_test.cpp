#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "qarl/core/error.h"
#include "qarl/rl/kl.h"
#include "qarl/rl/pg_loss.h"
#include "test_util.h"

using namespace qarl::rl;

TEST(Kl, EstimatorsHandComputed) {
  // logr = ref - logp = -0.5
  EXPECT_DOUBLE_EQ(kl_estimate(-1.0, -1.5, KlType::K1).value, 0.5);
  EXPECT_DOUBLE_EQ(kl_estimate(-1.0, -1.5, KlType::K2).value, 0.125);
  EXPECT_DOUBLE_EQ(kl_estimate(-1.0, -1.5, KlType::K3).value, std::exp(-0.5) - 1.0 + 0.5);
  EXPECT_DOUBLE_EQ(kl_estimate(-2.0, -2.0, KlType::K3).value, 0.0);
  // Clamps: logr clamped to +-1, output to +-0.2.
  EXPECT_DOUBLE_EQ(kl_estimate(0.0, -5.0, KlType::K1, {1.0, std::nullopt}).value, 1.0);
  EXPECT_DOUBLE_EQ(kl_estimate(0.0, -5.0, KlType::K1, {1.0, 0.2}).value, 0.2);
  EXPECT_EQ(kl_estimate(0.0, -5.0, KlType::K1, {1.0, std::nullopt}).d_logprobs, 0.0);
  EXPECT_EQ(parse_kl_type("k2"), KlType::K2);
  EXPECT_THROW(parse_kl_type("k4"), qarl::Error);
}

TEST(Kl, DerivativeFiniteDifference) {
  for (KlType t : {KlType::K1, KlType::K2, KlType::K3})
    for (double lp : {-3.0, -0.7, -0.01}) {
      const double ref = -1.3, h = 1e-6;
      const double fd = (kl_estimate(lp + h, ref, t).value - kl_estimate(lp - h, ref, t).value) / (2 * h);
      EXPECT_NEAR(kl_estimate(lp, ref, t).d_logprobs, fd, 1e-7) << kl_type_name(t) << " " << lp;
    }
}

TEST(PgLoss, ClippedSurrogateHandComputed) {
  // Three tokens of one sequence, clip_low 0.2, clip_high 0.28:
  //  A=+1, ratio 1.5 -> clipped: loss -1.28, grad 0
  //  A=-1, ratio 1.5 -> unclipped (pessimistic): loss 1.5, grad -A*ratio = 1.5
  //  A=+1, ratio 0.5 -> unclipped: loss -0.5, grad -0.5
  const std::vector<double> old = {-1.0, -2.0, -0.5};
  const std::vector<double> logp = {-1.0 + std::log(1.5), -2.0 + std::log(1.5), -0.5 + std::log(0.5)};
  const std::vector<double> adv = {1, -1, 1}, mask = {1, 1, 1};
  PgBatch<double> b{1, 3, logp, old, {}, {}, adv, mask};
  PgLossOptions o;
  o.clip_low = 0.2;
  o.clip_high = 0.28;
  auto r = clipped_pg_loss(b, o);
  EXPECT_NEAR(r.loss, (-1.28 + 1.5 - 0.5) / 3.0, 1e-12);
  EXPECT_EQ(r.d_logp[0], 0.0);
  EXPECT_NEAR(r.d_logp[1], 1.5 / 3.0, 1e-12);
  EXPECT_NEAR(r.d_logp[2], -0.5 / 3.0, 1e-12);
  EXPECT_NEAR(r.clip_fraction, 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(r.probs_ratio_mean, (1.5 + 1.5 + 0.5) / 3.0, 1e-12);
}

TEST(PgLoss, OnPolicyGradientIsMinusAdvantage) {
  // ratio 1: loss = -mean(A), d/dlogp = -A / tokens; masked tokens get nothing.
  const std::vector<float> lp = {-1, -2, -3, -4}, adv = {0.5f, -1, 2, 7}, mask = {1, 1, 1, 0};
  PgBatch<float> b{2, 2, lp, lp, {}, {}, adv, mask};
  auto r = clipped_pg_loss(b, PgLossOptions{});
  EXPECT_NEAR(r.loss, -(0.5 - 1 + 2) / 3.0, 1e-6);
  EXPECT_NEAR(r.d_logp[0], -0.5 / 3.0, 1e-7);
  EXPECT_NEAR(r.d_logp[2], -2.0 / 3.0, 1e-7);
  EXPECT_EQ(r.d_logp[3], 0.0f);
  // Sequence mean: seq 0 mean(-0.5, 1) = 0.25, seq 1 mean(-2) = -2 -> (0.25 - 2) / 2.
  PgLossOptions so;
  so.aggregation = LossAggregation::SequenceMean;
  r = clipped_pg_loss(b, so);
  EXPECT_NEAR(r.loss, (0.25 - 2.0) / 2.0, 1e-6);
  EXPECT_NEAR(r.d_logp[0], -0.5 / (2 * 2), 1e-7);
  EXPECT_NEAR(r.d_logp[2], -2.0 / (1 * 2), 1e-7);
}

TEST(PgLoss, TruncatedImportanceSamplingHandComputed) {
  // w = min(exp(old - gen), cap): token 0 exp(0.1), token 1 exp(2) capped at 2.
  const std::vector<double> lp = {-1, -1}, old = {-1, -1}, gen = {-1.1, -3}, adv = {1, 1}, mask = {1, 1};
  PgBatch<double> b{1, 2, lp, old, gen, {}, adv, mask};
  PgLossOptions o;
  o.tis_cap = 2.0;
  auto r = clipped_pg_loss(b, o);
  EXPECT_NEAR(r.loss, -(std::exp(0.1) + 2.0) / 2.0, 1e-12);
  EXPECT_NEAR(r.d_logp[0], -std::exp(0.1) / 2.0, 1e-12);
  EXPECT_NEAR(r.d_logp[1], -2.0 / 2.0, 1e-12);
  EXPECT_NEAR(r.is_oob_ratio, 0.5, 1e-12);
}

TEST(PgLoss, KlPenaltyHandComputed) {
  const std::vector<double> lp = {-1}, ref = {-1.5}, adv = {0}, mask = {1};
  PgBatch<double> b{1, 1, lp, lp, {}, ref, adv, mask};
  PgLossOptions o;
  o.kl_coef = 0.1;
  o.kl_type = KlType::K3;
  auto r = clipped_pg_loss(b, o);
  const double k3 = std::exp(-0.5) - 1 + 0.5;
  EXPECT_NEAR(r.kl_penalty, 0.1 * k3, 1e-15);
  EXPECT_NEAR(r.loss, 0.1 * k3, 1e-15);
  // d k3 / d logp = -(exp(logr) - 1)
  EXPECT_NEAR(r.d_logp[0], 0.1 * -(std::exp(-0.5) - 1), 1e-15);
}

namespace {
double total_loss(const std::vector<double>& lp, const PgBatch<double>& b, const PgLossOptions& o) {
  PgBatch<double> c = b;
  c.logp = lp;
  return clipped_pg_loss(c, o).loss;
}
}  // namespace

TEST(PgLoss, FiniteDifferenceAllOptions) {
  const uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0, 1);
  const int64_t B = 3, T = 7, n = B * T;
  std::vector<double> lp(n), old(n), gen(n), ref(n), adv(n), mask(n);
  for (int64_t i = 0; i < n; ++i) {
    lp[i] = -std::abs(nd(rng)) - 0.1;
    old[i] = lp[i] + 0.3 * nd(rng);
    gen[i] = old[i] + 0.3 * nd(rng);
    ref[i] = lp[i] + 0.5 * nd(rng);
    adv[i] = nd(rng);
    mask[i] = (i % 5 == 3) ? 0 : 1;
  }
  for (auto agg : {LossAggregation::TokenMean, LossAggregation::SequenceMean})
    for (KlType kt : {KlType::K1, KlType::K2, KlType::K3})
      for (bool tis : {false, true}) {
        PgLossOptions o;
        o.aggregation = agg;
        o.clip_low = 0.15;
        o.clip_high = 0.25;
        o.kl_coef = 0.05;
        o.kl_type = kt;
        o.kl_clamp = {};
        if (tis) o.tis_cap = 1.2;
        PgBatch<double> b{B, T, lp, old, gen, ref, adv, mask};
        auto r = clipped_pg_loss(b, o);
        for (int64_t i = 0; i < n; ++i) {
          const double h = 1e-6;
          auto p = lp, m = lp;
          p[i] += h;
          m[i] -= h;
          const double fd = (total_loss(p, b, o) - total_loss(m, b, o)) / (2 * h);
          EXPECT_NEAR(r.d_logp[i], fd, 1e-7) << "token " << i << " kl " << kl_type_name(kt) << " tis " << tis;
        }
      }
}

TEST(PgLoss, MicroBatchesSumToFullBatch) {
  const uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0, 1);
  const int64_t B = 4, T = 5, n = B * T;
  std::vector<double> lp(n), old(n), adv(n), mask(n);
  for (int64_t i = 0; i < n; ++i) {
    lp[i] = -std::abs(nd(rng));
    old[i] = lp[i] + 0.2 * nd(rng);
    adv[i] = nd(rng);
    mask[i] = (i % 7 == 2) ? 0 : 1;
  }
  for (auto agg : {LossAggregation::TokenMean, LossAggregation::SequenceMean}) {
    PgLossOptions o;
    o.aggregation = agg;
    auto full = clipped_pg_loss(PgBatch<double>{B, T, lp, old, {}, {}, adv, mask}, o);
    o.global_valid_tokens = full.valid_tokens;
    o.global_valid_sequences = full.valid_sequences;
    double sum = 0;
    for (int64_t half = 0; half < 2; ++half) {
      const size_t off = size_t(half * 2 * T), len = size_t(2 * T);
      auto span = [&](const std::vector<double>& v) { return std::span<const double>(v).subspan(off, len); };
      auto r = clipped_pg_loss(PgBatch<double>{2, T, span(lp), span(old), {}, {}, span(adv), span(mask)}, o);
      sum += r.loss;
      for (size_t i = 0; i < len; ++i) EXPECT_NEAR(r.d_logp[i], full.d_logp[off + i], 1e-15);
    }
    EXPECT_NEAR(sum, full.loss, 1e-12);
  }
}

TEST(PgLoss, BadInput) {
  const std::vector<double> a = {0, 0}, m = {1, 1}, one = {0};
  EXPECT_THROW(clipped_pg_loss(PgBatch<double>{1, 2, a, one, {}, {}, a, m}, PgLossOptions{}), qarl::Error);
  PgLossOptions o;
  o.kl_coef = 0.1;  // needs ref_logp
  EXPECT_THROW(clipped_pg_loss(PgBatch<double>{1, 2, a, a, {}, {}, a, m}, o), qarl::Error);
  PgLossOptions t;
  t.tis_cap = 2;  // needs gen_logp
  EXPECT_THROW(clipped_pg_loss(PgBatch<double>{1, 2, a, a, {}, {}, a, m}, t), qarl::Error);
}
