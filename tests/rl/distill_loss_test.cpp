#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "qarl/core/error.h"
#include "qarl/rl/distill_loss.h"
#include "test_util.h"

using namespace qarl::rl;

TEST(DistillLoss, HandComputedTwoTokenVocab) {
  // q = softmax([0,0]) = [.5,.5]; p = softmax([ln 3, 0]) = [.75,.25].
  const std::vector<double> s = {0, 0}, t = {std::log(3.0), 0}, mask = {1};
  DistillOptions o;
  auto r = distill_loss<double>(s, t, mask, 2, o);
  EXPECT_NEAR(r.loss, 0.5 * std::log(0.5 / 0.75) + 0.5 * std::log(0.5 / 0.25), 1e-14);
  o.kl = DistillKl::Forward;
  r = distill_loss<double>(s, t, mask, 2, o);
  EXPECT_NEAR(r.loss, 0.75 * std::log(0.75 / 0.5) + 0.25 * std::log(0.25 / 0.5), 1e-14);
  // Forward-KL gradient is q - p.
  EXPECT_NEAR(r.d_student_logits[0], 0.5 - 0.75, 1e-14);
  EXPECT_NEAR(r.d_student_logits[1], 0.5 - 0.25, 1e-14);
}

TEST(DistillLoss, IdenticalModelsGiveZero) {
  const std::vector<float> s = {0.3f, -1.2f, 2.0f, 0.0f, 5.0f, -3.0f}, mask = {1, 1};
  for (auto kl : {DistillKl::Reverse, DistillKl::Forward}) {
    DistillOptions o;
    o.kl = kl;
    auto r = distill_loss<float>(s, s, mask, 3, o);
    EXPECT_NEAR(r.loss, 0.0, 1e-12);
    for (float d : r.d_student_logits) EXPECT_NEAR(d, 0.0f, 1e-7f);
  }
}

TEST(DistillLoss, FiniteDifference) {
  const uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0, 2);
  const int64_t N = 4, V = 11;
  std::vector<double> s(N * V), t(N * V), mask = {1, 0, 1, 1};
  for (auto& v : s) v = nd(rng);
  for (auto& v : t) v = nd(rng);
  for (auto kl : {DistillKl::Reverse, DistillKl::Forward})
    for (int k : {0, 3, int(V)})
      for (double temp : {1.0, 0.7}) {
        DistillOptions o;
        o.kl = kl;
        o.top_k = k;
        o.temperature = temp;
        auto r = distill_loss<double>(s, t, mask, V, o);
        for (size_t i = 0; i < s.size(); ++i) {
          const double h = 1e-6;
          auto p = s, m = s;
          p[i] += h;
          m[i] -= h;
          const double fd = (distill_loss<double>(p, t, mask, V, o).loss - distill_loss<double>(m, t, mask, V, o).loss) / (2 * h);
          EXPECT_NEAR(r.d_student_logits[i], fd, 1e-8) << "i " << i << " k " << k;
        }
      }
}

TEST(DistillLoss, TopKRestrictsToTeacherSupport) {
  // top_k = V equals the full vocabulary; top_k = 1 is a single renormalized token: KL 0.
  const std::vector<double> s = {1, 2, 3, 0.5}, t = {0.1, 3, -1, 2}, mask = {1};
  DistillOptions full, kv, k1;
  kv.top_k = 4;
  k1.top_k = 1;
  EXPECT_NEAR(distill_loss<double>(s, t, mask, 4, full).loss, distill_loss<double>(s, t, mask, 4, kv).loss, 1e-15);
  auto r = distill_loss<double>(s, t, mask, 4, k1);
  EXPECT_NEAR(r.loss, 0.0, 1e-15);
  // Top-2 of the teacher is {1, 3}: tokens 0 and 2 get no gradient.
  DistillOptions k2;
  k2.top_k = 2;
  r = distill_loss<double>(s, t, mask, 4, k2);
  EXPECT_EQ(r.d_student_logits[0], 0.0);
  EXPECT_EQ(r.d_student_logits[2], 0.0);
  EXPECT_NE(r.d_student_logits[1], 0.0);
  k2.top_k = 5;
  EXPECT_THROW(distill_loss<double>(s, t, mask, 4, k2), qarl::Error);
  EXPECT_THROW(parse_distill_kl("sideways"), qarl::Error);
}
