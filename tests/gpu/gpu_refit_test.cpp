// Refit between GPU models (gpu/gpu_refit.h): after a refit the rollout model generates with
// the trainer's exact weights and K/V amax, so in exact mode its logprobs equal the trainer's
// bitwise, also after optimizer steps; a refit that violates the contract changes nothing.
#include <gtest/gtest.h>

#include <cstring>

#include "qarl/kernels/cuda/device.h"
#include "gpu_test_util.h"
#include "test_util.h"
#include "../model/model_test_util.h"

#if QARL_HAVE_CUDA
#include "qarl/gpu/generate.h"
#include "qarl/gpu/gpu_adamw.h"
#include "qarl/gpu/gpu_refit.h"
#include "qarl/gpu/train_state.h"
#endif

namespace qarl {
namespace {

#if QARL_HAVE_CUDA
using gpu::GemmMode;

io::HFConfig refit_config() {
  io::HFConfig c = test::tiny_config(io::ModelFamily::Qwen3);
  c.vocab_size = 211;
  c.hidden_size = 80;
  c.intermediate_size = 120;
  c.head_dim = 64;
  return c;
}

model::Model model_with_amax(const io::HFConfig& c, uint64_t seed, float amax) {
  model::Model m = model::Model::random_init(c, seed);
  test::perturb_all(m, seed + 1);
  std::map<std::string, Tensor> am;
  for (int l = 0; l < c.num_hidden_layers; ++l)
    for (char w : {'k', 'v'}) am[model::kv_quantizer_name(l, w) + "._amax"] = Tensor::scalar(amax);
  m.configure_kv_quantizers(test::kv_recipe("{num_bits: e4m3}"), am, true);
  return m;
}

// Rollout logprobs of a few prompts vs the policy's training forward over the same tokens.
int mismatches(gpu::GpuModel& rollout, gpu::GpuModel& policy, uint64_t seed) {
  std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {7, 9, 11, 13, 17, 19, 23, 29, 31}};
  rollout::SamplingParams p;
  p.temperature = 1.0f;
  p.max_new_tokens = 12;
  const auto outs = gpu::generate(rollout, prompts, p, seed);
  std::vector<std::vector<int32_t>> full;
  for (size_t i = 0; i < prompts.size(); ++i) {
    full.push_back(prompts[i]);
    full.back().insert(full.back().end(), outs[i].tokens.begin(), outs[i].tokens.end());
  }
  gpu::TrainState st;
  const auto lp = gpu::forward_train(policy, full, 1.0f, st);
  int bad = 0;
  for (size_t i = 0; i < prompts.size(); ++i)
    for (size_t j = 0; j < outs[i].tokens.size(); ++j)
      bad += std::memcmp(&lp[i][prompts[i].size() - 1 + j], &outs[i].logprobs[j], 4) != 0;
  return bad;
}

TEST(GpuRefit, CudaRolloutEqualsTrainerBitwiseAcrossRefitsAndSteps) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const io::HFConfig c = refit_config();
  model::Model a = model_with_amax(c, seed, 2.5f), b = model_with_amax(c, seed + 100, 9.0f);
  gpu::GpuModel policy(a, GemmMode::kExact), rollout(b, GemmMode::kExact);
  gpu::GpuRolloutTarget target(rollout);
  EXPECT_GT(mismatches(rollout, policy, seed), 0) << "different models must disagree before the refit";
  const double bytes = gpu::refit_gpu(policy, target);
  EXPECT_GT(bytes, 0);
  EXPECT_EQ(mismatches(rollout, policy, seed), 0);
  EXPECT_EQ(rollout.k_quantizers()[1].effective_amax(), 2.5f);
  // A few optimizer steps, each followed by a refit: still bitwise.
  gpu::GpuAdamW opt(policy);
  gpu::GpuGrads g(policy);
  for (int step = 0; step < 2; ++step) {
    gpu::TrainState st;
    const auto lp = gpu::forward_train(policy, {{3, 1, 4, 1, 5, 9, 2, 6}}, 1.0f, st);
    g.zero();
    gpu::backward(policy, st, {std::vector<float>(lp[0].size(), -0.1f)}, g);
    opt.step(g, 1e-2);
    gpu::refit_gpu(policy, target);
    EXPECT_EQ(mismatches(rollout, policy, seed + step), 0) << "after step " << step;
  }
}

TEST(GpuRefit, CudaContractViolationLeavesRolloutUnchanged) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const io::HFConfig c = refit_config();
  io::HFConfig wider = c;
  wider.intermediate_size = c.intermediate_size + 8;
  model::Model r = model_with_amax(c, seed, 3.0f), bad = model_with_amax(wider, seed + 1, 3.0f);
  gpu::GpuModel rollout(r, GemmMode::kExact), other(bad, GemmMode::kExact);
  gpu::GpuRolloutTarget target(rollout);
  // What the rollout serves: its bf16 working copies and fp32 norms (what an export reads).
  auto serving = [&] {
    std::vector<Tensor> out;
    for (const auto& nt : gpu::GpuModelExport(rollout).named_parameters())
      out.push_back(nt.tensor.to_device(Device::CPU));
    return out;
  };
  const std::vector<Tensor> before = serving();
  try {
    gpu::refit_gpu(other, target);
    FAIL() << "a refit with mismatched shapes must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mlp"), std::string::npos) << e.what();
  }
  const std::vector<Tensor> after = serving();
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(tensors_bitwise_equal(before[i], after[i])) << i;
  EXPECT_EQ(rollout.k_quantizers()[0].effective_amax(), 3.0f);
}
#else
TEST(GpuRefit, NotBuilt) { GTEST_SKIP() << "built without CUDA: the GPU model is not compiled"; }
#endif

}  // namespace
}  // namespace qarl
