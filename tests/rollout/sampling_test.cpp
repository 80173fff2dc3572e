// Samplers against simple references: greedy vs a scan, the kept set of top-k / top-p /
// min-p vs brute-force definitions, sampled frequencies vs the renormalized distribution,
// and stream independence (seed, request, sample, step).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include <fmt/format.h>

#include "qarl/core/error.h"
#include "qarl/core/rng.h"
#include "qarl/rollout/sampling.h"
#include "test_util.h"

namespace qarl::rollout {
namespace {

std::vector<float> random_logits(int vocab, uint64_t seed, bool ties) {
  std::vector<float> l = test::random_normal(size_t(vocab), 2.0f, seed);
  if (ties)
    for (int i = 3; i < vocab; i += 5) l[size_t(i)] = l[size_t(i - 3)];  // exact ties
  return l;
}

// Brute force: softmax in double, then each rule written from its definition.
std::vector<uint8_t> reference_kept(const std::vector<float>& logits, const SamplingParams& p) {
  const int V = int(logits.size());
  std::vector<double> w(static_cast<size_t>(V));
  double m = -INFINITY;
  for (float l : logits) m = std::max(m, double(l) / p.temperature);
  for (int i = 0; i < V; ++i) w[size_t(i)] = std::exp(double(logits[size_t(i)]) / p.temperature - m);
  // rank of i: number of tokens strictly before it in (w desc, id asc) order
  auto rank = [&](int i) {
    int r = 0;
    for (int j = 0; j < V; ++j)
      if (w[size_t(j)] > w[size_t(i)] || (w[size_t(j)] == w[size_t(i)] && j < i)) ++r;
    return r;
  };
  std::vector<uint8_t> keep(size_t(V), 1);
  for (int i = 0; i < V; ++i)
    if (!(w[size_t(i)] > 0)) keep[size_t(i)] = 0;
  if (p.top_k > 0)
    for (int i = 0; i < V; ++i)
      if (rank(i) >= p.top_k) keep[size_t(i)] = 0;
  if (p.top_p < 1.0f) {
    std::vector<int> ids;
    for (int i = 0; i < V; ++i)
      if (keep[size_t(i)]) ids.push_back(i);
    std::sort(ids.begin(), ids.end(), [&](int a, int b) { return rank(a) < rank(b); });
    double total = 0;
    for (int i : ids) total += w[size_t(i)];
    double before = 0;
    for (size_t j = 0; j < ids.size(); ++j) {
      if (j > 0 && before >= double(p.top_p) * total) keep[size_t(ids[j])] = 0;
      before += w[size_t(ids[j])];
    }
  }
  if (p.min_p > 0)
    for (int i = 0; i < V; ++i)
      if (w[size_t(i)] < double(p.min_p)) keep[size_t(i)] = 0;
  return keep;
}

TEST(Sampling, ValidateRejectsBadParameters) {
  SamplingParams ok;
  EXPECT_EQ(validate_sampling(ok, 10), "");
  auto bad = [](auto f) {
    SamplingParams p;
    f(p);
    return validate_sampling(p, 10);
  };
  EXPECT_NE(bad([](auto& p) { p.temperature = -1; }).find("temperature"), std::string::npos);
  EXPECT_NE(bad([](auto& p) { p.temperature = NAN; }).find("temperature"), std::string::npos);
  EXPECT_NE(bad([](auto& p) { p.top_p = 0; }).find("top_p"), std::string::npos);
  EXPECT_NE(bad([](auto& p) { p.top_p = 1.5f; }).find("top_p"), std::string::npos);
  EXPECT_NE(bad([](auto& p) { p.top_k = -2; }).find("top_k"), std::string::npos);
  EXPECT_NE(bad([](auto& p) { p.min_p = -0.1f; }).find("min_p"), std::string::npos);
  EXPECT_NE(bad([](auto& p) { p.max_new_tokens = 0; }).find("max_new_tokens"), std::string::npos);
  EXPECT_NE(bad([](auto& p) { p.n = 0; }).find("n must"), std::string::npos);
  EXPECT_NE(bad([](auto& p) { p.stop_token_ids = {10}; }).find("stop token id 10"), std::string::npos);
}

TEST(Sampling, GreedyIsArgmaxLowestIdOnTies) {
  for (int trial = 0; trial < 20; ++trial) {
    uint64_t seed = test::fresh_seed();
    SCOPED_TRACE(seed);
    auto l = random_logits(97, seed, true);
    int ref = 0;
    for (int i = 1; i < 97; ++i)
      if (l[size_t(i)] > l[size_t(ref)]) ref = i;
    EXPECT_EQ(argmax_token(l.data(), 97), ref);
    SamplingParams p;
    p.temperature = 0;
    SamplerScratch s;
    EXPECT_EQ(sample_token(l.data(), 97, p, sample_rng(seed, 1, 2), 5, s), ref);
  }
  std::vector<float> tie = {1, 3, 2, 3};
  EXPECT_EQ(argmax_token(tie.data(), 4), 1);
  std::vector<float> nan = {NAN, 1, NAN, 2};
  EXPECT_EQ(argmax_token(nan.data(), 4), 3);
}

TEST(Sampling, KeptSetMatchesBruteForce) {
  SamplerScratch s;
  for (int trial = 0; trial < 200; ++trial) {
    uint64_t seed = test::fresh_seed();
    SCOPED_TRACE(seed);
    SequentialRng r(seed, 7);
    const int V = 5 + int(r.below(60));
    auto l = random_logits(V, seed, r.below(2) == 0);
    SamplingParams p;
    p.temperature = 0.3f + 2.0f * r.uniform();
    if (r.below(2)) p.top_k = 1 + int(r.below(uint64_t(V)));
    if (r.below(2)) p.top_p = 0.05f + 0.9f * r.uniform();
    if (r.below(2)) p.min_p = 0.3f * r.uniform();
    SCOPED_TRACE(fmt::format("V {} T {} k {} p {} min_p {}", V, p.temperature, p.top_k, p.top_p, p.min_p));
    kept_tokens(l.data(), V, p, s);
    auto ref = reference_kept(l, p);
    EXPECT_EQ(s.keep, ref);
    EXPECT_GE(std::accumulate(ref.begin(), ref.end(), 0), 1);
  }
}

TEST(Sampling, FrequenciesFollowTheRenormalizedDistribution) {
  SamplerScratch s;
  struct Case { float t; int k; float p; float m; };
  for (Case c : {Case{1.0f, 0, 1.0f, 0.0f}, Case{0.7f, 4, 1.0f, 0.0f}, Case{1.3f, 0, 0.8f, 0.0f},
                 Case{1.0f, 0, 1.0f, 0.1f}, Case{0.9f, 6, 0.9f, 0.02f}}) {
    uint64_t seed = test::fresh_seed();
    SCOPED_TRACE(fmt::format("seed {} T {} k {} p {} min_p {}", seed, c.t, c.k, c.p, c.m));
    const int V = 11;
    auto l = random_logits(V, seed, false);
    SamplingParams p;
    p.temperature = c.t;
    p.top_k = c.k;
    p.top_p = c.p;
    p.min_p = c.m;
    auto keep = reference_kept(l, p);
    std::vector<double> prob(V, 0.0);
    double total = 0;
    double mx = *std::max_element(l.begin(), l.end());
    for (int i = 0; i < V; ++i)
      if (keep[size_t(i)]) total += prob[size_t(i)] = std::exp((l[size_t(i)] - mx) / double(c.t));
    const int N = 20000;
    std::vector<int> count(V, 0);
    for (int step = 0; step < N; ++step)
      ++count[size_t(sample_token(l.data(), V, p, sample_rng(seed, 3, 1), uint64_t(step), s))];
    for (int i = 0; i < V; ++i) {
      double e = prob[size_t(i)] / total;
      if (!keep[size_t(i)]) {
        EXPECT_EQ(count[size_t(i)], 0) << "token " << i << " is outside the kept set";
        continue;
      }
      double sigma = std::sqrt(N * e * (1 - e)) + 1;
      EXPECT_NEAR(count[size_t(i)], N * e, 5 * sigma) << "token " << i;
    }
  }
}

TEST(Sampling, TopK1AndTinyTopPAndMinP1AreGreedy) {
  SamplerScratch s;
  for (int trial = 0; trial < 30; ++trial) {
    uint64_t seed = test::fresh_seed();
    SCOPED_TRACE(seed);
    auto l = random_logits(53, seed, false);
    int g = argmax_token(l.data(), 53);
    for (int which = 0; which < 3; ++which) {
      SamplingParams p;
      p.temperature = 1.5f;
      if (which == 0) p.top_k = 1;
      if (which == 1) p.top_p = 1e-6f;
      if (which == 2) p.min_p = 1.0f;
      EXPECT_EQ(sample_token(l.data(), 53, p, sample_rng(seed, 0, 0), uint64_t(trial), s), g);
    }
  }
}

TEST(Sampling, StreamsDependOnlyOnSeedRequestSampleStep) {
  SamplerScratch s1, s2;
  uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(seed);
  auto l = std::vector<float>(1000, 0.0f);  // uniform: the token is the random draw itself
  SamplingParams p;
  auto tok = [&](uint64_t sd, uint64_t req, uint32_t smp, uint64_t step, SamplerScratch& s) {
    return sample_token(l.data(), 1000, p, sample_rng(sd, req, smp), step, s);
  };
  int same_req = 0, same_smp = 0, same_step = 0, same_seed = 0;
  for (uint64_t step = 0; step < 200; ++step) {
    EXPECT_EQ(tok(seed, 5, 2, step, s1), tok(seed, 5, 2, step, s2));  // reproducible
    same_req += tok(seed, 5, 2, step, s1) == tok(seed, 6, 2, step, s1);
    same_smp += tok(seed, 5, 2, step, s1) == tok(seed, 5, 3, step, s1);
    same_step += tok(seed, 5, 2, step, s1) == tok(seed, 5, 2, step + 1, s1);
    same_seed += tok(seed, 5, 2, step, s1) == tok(seed + 1, 5, 2, step, s1);
  }
  // Independent streams collide with probability 1/1000 per draw.
  EXPECT_LT(same_req, 5);
  EXPECT_LT(same_smp, 5);
  EXPECT_LT(same_step, 5);
  EXPECT_LT(same_seed, 5);
}

}  // namespace
}  // namespace qarl::rollout
