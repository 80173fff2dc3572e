#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "qarl/core/error.h"
#include "qarl/train/adamw.h"
#include "qarl/train/schedule.h"
#include "test_util.h"

using namespace qarl;
using namespace qarl::train;

TEST(AdamW, FirstStepHandComputed) {
  // p=1, g=0.5, lr=0.1, wd=0.01: decay p -> 0.999; m=0.05, v=0.00025;
  // m_hat=0.5, v_hat=0.25 -> update 0.1 * 0.5 / (0.5 + 1e-8).
  AdamW opt({0.9, 0.999, 1e-8, 0.01});
  std::vector<float> one = {1.0f, -2.0f};
  opt.add_param("w", Tensor::from_f32(one, {2}));
  std::vector<float> g = {0.5f, 0.0f};
  opt.step({{"w", Tensor::from_f32(g, {2})}}, 0.1);
  auto p = opt.master("w").to_f32_vector();
  EXPECT_FLOAT_EQ(p[0], float(0.999 - 0.1 * 0.5 / (0.5 + 1e-8)));
  EXPECT_FLOAT_EQ(p[1], float(-2.0 * (1 - 0.1 * 0.01)));  // zero grad: only decay
  EXPECT_EQ(opt.step_count(), 1);
}

// PyTorch's torch.optim.AdamW single-tensor algorithm, written as in its docs
// (m_hat / (sqrt(v_hat) + eps)), independent of the implementation's arrangement.
TEST(AdamW, MatchesPyTorchFormulaOverSteps) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const size_t n = 37;
  auto p0 = test::random_normal(n, 1.0f, seed);
  AdamWOptions o{0.8, 0.95, 1e-6, 0.1};
  AdamW opt(o);
  opt.add_param("a", Tensor::from_f32(p0, {int64_t(n)}));
  opt.add_param("norm", Tensor::from_f32(p0, {int64_t(n)}), /*decay=*/false);
  std::vector<double> p(p0.begin(), p0.end()), pn = p, m(n, 0), v(n, 0), mn(n, 0), vn(n, 0);
  for (int t = 1; t <= 6; ++t) {
    const double lr = 0.01 * t;
    auto g = test::random_normal(n, 0.5f, seed + t);
    opt.step({{"a", Tensor::from_f32(g, {int64_t(n)})}, {"norm", Tensor::from_f32(g, {int64_t(n)})}}, lr);
    for (size_t i = 0; i < n; ++i) {
      for (int which = 0; which < 2; ++which) {
        double& pp = which ? pn[i] : p[i];
        double& mm = which ? mn[i] : m[i];
        double& vv = which ? vn[i] : v[i];
        if (!which) pp *= 1 - lr * o.weight_decay;
        mm = o.beta1 * mm + (1 - o.beta1) * g[i];
        vv = o.beta2 * vv + (1 - o.beta2) * double(g[i]) * g[i];
        const double mh = mm / (1 - std::pow(o.beta1, t)), vh = vv / (1 - std::pow(o.beta2, t));
        pp -= lr * mh / (std::sqrt(vh) + o.eps);
      }
    }
  }
  auto a = opt.master("a").to_f32_vector(), b = opt.master("norm").to_f32_vector();
  for (size_t i = 0; i < n; ++i) {
    EXPECT_NEAR(a[i], p[i], 2e-6) << i;
    EXPECT_NEAR(b[i], pn[i], 2e-6) << i;
  }
}

TEST(AdamW, StateRoundTripContinuesBitwise) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto p0 = test::random_normal(10, 1.0f, seed);
  AdamW a, b;
  a.add_param("w", Tensor::from_f32(p0, {2, 5}));
  b.add_param("w", Tensor::from_f32(std::vector<float>(10, 0.0f), {2, 5}));
  auto grad = [&](int t) { return std::map<std::string, Tensor>{{"w", Tensor::from_f32(test::random_normal(10, 1.0f, seed + 100 + t), {2, 5})}}; };
  a.step(grad(1), 1e-2);
  a.step(grad(2), 1e-2);
  std::map<std::string, Tensor> state;
  for (auto& [k, t] : a.state_tensors()) state.emplace(k, t.clone());
  b.load_state(state, a.step_count(), "mem");
  a.step(grad(3), 1e-2);
  b.step(grad(3), 1e-2);
  EXPECT_TRUE(tensors_bitwise_equal(a.master("w"), b.master("w")));
  EXPECT_EQ(b.step_count(), 3);
  // Bad state: missing, wrong shape, unknown tensor -> Error naming the tensor; b unchanged.
  auto before = b.master("w").clone();
  auto missing = state;
  missing.erase("w.exp_avg");
  try {
    b.load_state(missing, 2, "ckpt/optimizer.safetensors");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.tensor(), "w.exp_avg");
    EXPECT_EQ(e.file(), "ckpt/optimizer.safetensors");
  }
  auto wrong = state;
  wrong["w.exp_avg"] = Tensor::zeros({10}, DType::F32);
  EXPECT_THROW(b.load_state(wrong, 2, "x"), Error);
  auto extra = state;
  extra["v.master"] = Tensor::zeros({1}, DType::F32);
  EXPECT_THROW(b.load_state(extra, 2, "x"), Error);
  EXPECT_TRUE(tensors_bitwise_equal(before, b.master("w")));
}

TEST(AdamW, BadGradients) {
  AdamW opt;
  opt.add_param("w", Tensor::zeros({3}, DType::F32));
  EXPECT_THROW(opt.add_param("w", Tensor::zeros({3}, DType::F32)), Error);
  EXPECT_THROW(opt.step({}, 0.1), Error);
  EXPECT_THROW(opt.step({{"w", Tensor::zeros({4}, DType::F32)}}, 0.1), Error);
  EXPECT_THROW(opt.step({{"w", Tensor::zeros({3}, DType::F32)}, {"x", Tensor::zeros({3}, DType::F32)}}, 0.1), Error);
  EXPECT_EQ(opt.step_count(), 0);
}

TEST(Schedule, WarmupConstantCosine) {
  LrSchedule s{1.0, 10, LrDecay::Constant, 110, 0.0};
  EXPECT_DOUBLE_EQ(s.at(1), 0.1);
  EXPECT_DOUBLE_EQ(s.at(5), 0.5);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_DOUBLE_EQ(s.at(50), 1.0);
  s.decay = LrDecay::Cosine;
  s.min_lr = 0.2;
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_NEAR(s.at(60), 0.2 + 0.8 * 0.5, 1e-15);  // half way
  EXPECT_NEAR(s.at(110), 0.2, 1e-15);
  EXPECT_NEAR(s.at(500), 0.2, 1e-15);
  LrSchedule none{3.0, 0, LrDecay::Constant, 0, 0};
  EXPECT_DOUBLE_EQ(none.at(1), 3.0);
  EXPECT_THROW(parse_lr_decay("linear"), Error);
}

TEST(Schedule, ClipGradNorm) {
  std::vector<float> a = {3.0f}, b = {0.0f, 4.0f};
  std::map<std::string, Tensor> g{{"a", Tensor::from_f32(a, {1})}, {"b", Tensor::from_f32(b, {2})}};
  EXPECT_DOUBLE_EQ(global_grad_norm(g), 5.0);
  EXPECT_DOUBLE_EQ(clip_grad_norm(g, 10.0), 5.0);  // below: untouched
  EXPECT_EQ(g["a"].to_f32_vector()[0], 3.0f);
  EXPECT_DOUBLE_EQ(clip_grad_norm(g, 1.0), 5.0);
  const float coef = float(1.0 / (5.0 + 1e-6));
  EXPECT_EQ(g["a"].to_f32_vector()[0], 3.0f * coef);
  EXPECT_EQ(g["b"].to_f32_vector()[1], 4.0f * coef);
  EXPECT_NEAR(global_grad_norm(g), 1.0, 1e-6);
}

TEST(Schedule, GradAccumulatorSums) {
  GradAccumulator acc;
  std::vector<float> x = {1, 2}, y = {0.5f, -1};
  acc.add({{"w", Tensor::from_f32(x, {2})}});
  acc.add({{"w", Tensor::from_f32(y, {2})}});
  EXPECT_EQ(acc.micro_batches(), 2);
  EXPECT_EQ(acc.grads().at("w").to_f32_vector(), (std::vector<float>{1.5f, 1.0f}));
  EXPECT_THROW(acc.add({{"w", Tensor::zeros({3}, DType::F32)}}), Error);
  EXPECT_THROW(acc.add({{"v", Tensor::zeros({2}, DType::F32)}}), Error);
  acc.reset();
  EXPECT_EQ(acc.micro_batches(), 0);
}
