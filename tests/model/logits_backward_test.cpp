// backward() with logit gradients (full-vocabulary losses such as distillation KL) must agree
// with the logprob path: for loss = sum_t c_t * logprob_t, dL/dlogits_t = c_t (onehot - p_t) / T.
#include <cmath>

#include <gtest/gtest.h>

#include "qarl/core/error.h"
#include "qarl/core/rng.h"
#include "qarl/model/train.h"
#include "qarl/rl/tiny_model.h"
#include "test_util.h"

namespace qarl::model {
namespace {

TEST(ModelBackward, LogitGradientsMatchTheLogprobPath) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(seed);
  Model m = Model::random_init(rl::tiny_model_config(264), seed, DType::F32);
  SequentialRng rng(seed, 1);
  std::vector<std::vector<int32_t>> seqs = {{1, 5, 9, 200, 33}, {7, 7, 100}};
  for (auto& s : seqs) for (auto& t : s) t = int32_t(rng.below(264));
  const float T = 0.8f;
  std::vector<std::vector<float>> c(seqs.size());
  for (size_t s = 0; s < seqs.size(); ++s)
    for (size_t t = 0; t + 1 < seqs[s].size(); ++t) c[s].push_back(rng.normal());

  auto f1 = forward_train(m, seqs, T);
  Grads g1 = zero_grads(m);
  backward(m, f1, c, g1);

  auto f2 = forward_train(m, seqs, T);
  const int V = 264;
  std::vector<std::vector<float>> zero(seqs.size()), dl(seqs.size());
  for (size_t s = 0; s < seqs.size(); ++s) {
    zero[s].assign(c[s].size(), 0.f);
    dl[s].assign(c[s].size() * V, 0.f);
    for (size_t t = 0; t < c[s].size(); ++t) {
      const float* lg = train_logits_row(f2, int(s), int(t));
      double mx = -1e30, sum = 0;
      for (int v = 0; v < V; ++v) mx = std::max(mx, double(lg[v]) / T);
      for (int v = 0; v < V; ++v) sum += std::exp(double(lg[v]) / T - mx);
      for (int v = 0; v < V; ++v) {
        double p = std::exp(double(lg[v]) / T - mx) / sum;
        double onehot = v == seqs[s][t + 1] ? 1.0 : 0.0;
        dl[s][t * V + size_t(v)] = float(c[s][t] * (onehot - p) / T);
      }
    }
  }
  Grads g2 = zero_grads(m);
  backward(m, f2, zero, g2, &dl);
  for (const auto& [name, t1] : g1) {
    auto a = t1.to_f64_vector(), b = g2.at(name).to_f64_vector();
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) { num += (a[i] - b[i]) * (a[i] - b[i]); den += a[i] * a[i]; }
    EXPECT_LT(std::sqrt(num / std::max(den, 1e-30)), 1e-4) << name;
  }
  EXPECT_THROW(train_logits_row(f2, 0, 0), Error);  // consumed by backward
}

}  // namespace
}  // namespace qarl::model
