// Whole-model gradient checks: finite differences of sum_t c_t * logprob_t against the
// hand-written backward, for every family; gradients through the K/V quantizers.
#include <cmath>

#include <cmath>

#include <gtest/gtest.h>

#include "qarl/core/error.h"

#include "model/model_test_util.h"
#include "qarl/core/rng.h"
#include "qarl/model/train.h"
#include "test_util.h"

namespace qarl::model {
namespace {

double weighted(const std::vector<std::vector<float>>& lp, const std::vector<std::vector<float>>& c) {
  double s = 0;
  for (size_t i = 0; i < lp.size(); ++i)
    for (size_t j = 0; j < lp[i].size(); ++j) s += double(lp[i][j]) * c[i][j];
  return s;
}

class WholeModelGrad : public ::testing::TestWithParam<io::ModelFamily> {};

TEST_P(WholeModelGrad, FiniteDifferencesPerParameter) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  io::HFConfig cfg = test::tiny_config(GetParam());
  Model m = Model::random_init(cfg, seed);
  // Larger weights than the init so that the loss is not flat.
  for (const auto& n : m.param_names()) {
    if (n.ends_with("norm.weight")) continue;
    float* p = m.param(n).data_as<float>();
    for (int64_t i = 0; i < m.param(n).numel(); ++i) p[i] *= 3.0f;
  }
  test::perturb_all(m, seed + 1);
  SequentialRng rng(seed, 11);
  std::vector<std::vector<int32_t>> seqs = {{}, {}, {}};
  const int lens[3] = {9, 3, 20};
  for (int s = 0; s < 3; ++s)
    for (int i = 0; i < lens[s]; ++i) seqs[size_t(s)].push_back(int32_t(rng.below(uint64_t(cfg.vocab_size))));
  std::vector<std::vector<float>> c(3);
  for (int s = 0; s < 3; ++s)
    for (int i = 0; i + 1 < lens[s]; ++i) c[size_t(s)].push_back(rng.normal());
  const float T = 0.8f;
  auto fwd = forward_train(m, seqs, T);
  Grads g = zero_grads(m);
  backward(m, fwd, c, g);
  EXPECT_FALSE(fwd.acts);
  for (const auto& name : m.param_names()) {
    SCOPED_TRACE(name);
    Tensor& p = m.param(name);
    const int64_t n = p.numel();
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = rng.normal();
    double an = 0;
    const float* gp = g.at(name).data_as<float>();
    for (int64_t i = 0; i < n; ++i) an += double(gp[i]) * v[size_t(i)];
    std::vector<float> orig(p.data_as<float>(), p.data_as<float>() + n);
    auto eval = [&](double step) {
      for (int64_t i = 0; i < n; ++i) p.data_as<float>()[i] = orig[size_t(i)] + float(step) * v[size_t(i)];
      m.weights_changed();
      return weighted(forward_train(m, seqs, T).logprobs, c);
    };
    // Central differences at h and 2h, Richardson-extrapolated (cancels the h^2 term).
    // fp32 forward: the loss carries ~1e-5 of rounding noise, so h is not tiny.
    const double h = 2e-3;
    const double fd1 = (eval(h) - eval(-h)) / (2 * h), fd2 = (eval(2 * h) - eval(-2 * h)) / (4 * h);
    const double fd = (4 * fd1 - fd2) / 3;
    std::copy(orig.begin(), orig.end(), p.data_as<float>());
    m.weights_changed();
    const double scale = std::max(std::fabs(fd), std::fabs(an));
    EXPECT_NEAR(fd, an, 2e-2 * scale + 2e-3) << "fd " << fd << " (h: " << fd1 << ", 2h: " << fd2 << ") analytic " << an;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, WholeModelGrad,
                         ::testing::Values(io::ModelFamily::Llama, io::ModelFamily::Qwen2,
                                           io::ModelFamily::Qwen3));

TEST(KVQuantizerGrad, StraightThroughAndClipped) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Model m = Model::random_init(test::tiny_config(io::ModelFamily::Llama), seed);
  std::vector<std::vector<int32_t>> seqs = {{1, 5, 9, 2, 7, 3, 3, 8}};
  std::vector<std::vector<float>> c = {{1, -1, 0.5f, 2, 1, 1, -0.3f}};
  auto grads_with = [&](const std::string& recipe, float amax) {
    std::map<std::string, Tensor> am;
    for (int l = 0; l < 2; ++l)
      for (char w : {'k', 'v'}) am[kv_quantizer_name(l, w) + "._amax"] = Tensor::scalar(amax);
    m.configure_kv_quantizers(test::kv_recipe(recipe), am, true);
    auto f = forward_train(m, seqs);
    Grads g = zero_grads(m);
    backward(m, f, c, g);
    return g;
  };
  // Pass-through: gradients flow to k_proj/v_proj.
  Grads st = grads_with("{num_bits: e4m3}", 0.05f);
  double nk = 0;
  for (float v : st.at("model.layers.0.self_attn.k_proj.weight").to_f32_vector()) nk += std::fabs(v);
  EXPECT_GT(nk, 0.0);
  // Clipped with an amax below every |k|, |v|... use a tiny amax: nearly every element is
  // outside, so the k/v projection gradients vanish where clipped; with amax 0 all do.
  Grads cl = grads_with("{num_bits: e4m3, pass_through_bwd: false}", 0.0f);
  for (const char* n : {"model.layers.0.self_attn.k_proj.weight", "model.layers.1.self_attn.v_proj.weight"})
    for (float v : cl.at(n).to_f32_vector()) ASSERT_EQ(v, 0.0f) << n;
  double nq = 0;
  for (float v : cl.at("model.layers.0.self_attn.q_proj.weight").to_f32_vector()) nq += std::fabs(v);
  EXPECT_GT(nq, 0.0);
}

TEST(Backward, RejectsMismatchedGradients) {
  Model m = Model::random_init(test::tiny_config(io::ModelFamily::Qwen2), 5);
  auto f = forward_train(m, {{1, 2, 3}});
  Grads g = zero_grads(m);
  EXPECT_THROW(backward(m, f, {{1.0f}}, g), Error);
}

}  // namespace
}  // namespace qarl::model
