// `qarl train` with model.device: cuda on the tiny built-in task: the rollouts, trainer passes,
// AdamW and refit run on the GPU, and in exact GEMM mode the rollout's logprobs equal the
// trainer's bitwise (gen_kl_error exactly 0, token_mult_prob_error exactly 1), as on the CPU.
#include <gtest/gtest.h>

#include <filesystem>

#include "qarl/core/error.h"
#include "qarl/kernels/cuda/device.h"
#include "qarl/rl/embedded_recipes.h"
#include "qarl/rl/trainer.h"
#include "qarl/train/metrics.h"
#include "qarl/train/run_recipe.h"
#include "gpu_test_util.h"
#include "test_util.h"

namespace qarl::rl {
namespace {
namespace fs = std::filesystem;

train::RunRecipe gpu_recipe(const std::string& tmp, const std::string& name, std::vector<std::string> ov) {
  std::string path = materialize_embedded_recipe(tmp + "/recipes", name);
  ov.insert(ov.end(), {"logging.run_dir=" + tmp + "/run", "logging.progress=false", "model.device=cuda",
                       "rollout.kv_cache=auto",  // bf16 GPU cache unless a test says otherwise
                       "model.warmstart_steps=40", "algorithm.warmup_steps=1", "algorithm.prompts_per_step=4",
                       "algorithm.samples_per_prompt=4", "calibration.quant_calib_size=4"});
  return train::load_run_recipe(path, ov);
}

TEST(GpuTrainer, CudaTinyGrpoHasExactParityOnTheGpu) {
  SKIP_WITHOUT_GPU();
  test::TempDir d;
  Trainer t(gpu_recipe(d.path(), "grpo-tiny-nvfp4-kv.yaml", {"algorithm.steps=3", "checkpoint.every=1"}), false);
  auto s = t.run();
  EXPECT_EQ(s.steps, 3);
  auto lines = train::read_metrics_lines(d.path() + "/run/metrics.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  for (const auto& j : lines) {
    EXPECT_EQ(j["gemm_mode"].get<std::string>(), "cuda-exact");
    EXPECT_EQ(j["gen_kl_error"].get<double>(), 0.0);
    EXPECT_EQ(j["token_mult_prob_error"].get<double>(), 1.0);
    EXPECT_GT(j["refit_bytes"].get<double>(), 0.0);
    EXPECT_TRUE(std::isfinite(j["loss"].get<double>()));
  }
  EXPECT_GT(s.unaware_gen_kl_error, 0.0);
  // Resume from the step-2 checkpoint (written from the GPU state) and finish again.
  fs::remove_all(d.path() + "/run/checkpoints/step_3");
  Trainer r(gpu_recipe(d.path(), "grpo-tiny-nvfp4-kv.yaml", {"algorithm.steps=3", "checkpoint.every=1"}), true);
  EXPECT_EQ(r.run().steps, 3);
}

TEST(GpuTrainer, CudaFastModeRunsAndSaysSo) {
  SKIP_WITHOUT_GPU();
  test::TempDir d;
  Trainer t(gpu_recipe(d.path(), "grpo-tiny-fp8-kv.yaml", {"algorithm.steps=2", "model.gemm_mode=fast"}), false);
  t.run();
  auto lines = train::read_metrics_lines(d.path() + "/run/metrics.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& j : lines) {
    EXPECT_EQ(j["gemm_mode"].get<std::string>(), "cuda-fast");
    std::printf("fast mode step %d: gen_kl_error %.3g\n", j["step"].get<int>(), j["gen_kl_error"].get<double>());
  }
}

// rollout.kv_cache: nvfp4 stores the rollout's K/V as NVFP4 codes on the device; the rollout
// is unchanged, so exact mode keeps its bitwise parity, and the metrics report the smaller
// cache (2 * L * (D/2 + D/16) bytes per token).
TEST(GpuTrainer, CudaNativeNvfp4RolloutCacheKeepsExactParity) {
  SKIP_WITHOUT_GPU();
  test::TempDir d;
  Trainer t(gpu_recipe(d.path(), "grpo-tiny-nvfp4-kv.yaml", {"algorithm.steps=2", "rollout.kv_cache=nvfp4"}), false);
  t.run();
  auto lines = train::read_metrics_lines(d.path() + "/run/metrics.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& j : lines) {
    EXPECT_EQ(j["gen_kl_error"].get<double>(), 0.0);
    EXPECT_EQ(j["token_mult_prob_error"].get<double>(), 1.0);
    std::printf("nvfp4 rollout cache: %.0f bytes/token\n", j["kv_cache_bytes_per_token"].get<double>());
  }
}

TEST(GpuTrainer, NativeKvCacheRecipeIsAcceptedForCuda) {
  test::TempDir d;
  // Everywhere, GPU or not: native storage with model.device cuda loads (it used to be refused).
  std::string path = materialize_embedded_recipe(d.path() + "/recipes", "grpo-tiny-nvfp4-kv.yaml");
  auto r = train::load_run_recipe(path, {"model.device=cuda", "rollout.kv_cache=nvfp4"});
  EXPECT_EQ(r.rollout.kv_cache, "nvfp4");
}

}  // namespace
}  // namespace qarl::rl
