// End-to-end tests of the QARL training loop on the tiny built-in model: parity (gen_kl_error
// exactly 0 when trainer and rollout quantize alike, > 0 for the rollout-only baseline), a
// short GRPO run whose reward rises, resume determinism, and bad recipes refused up front.
#include <cmath>
#include <filesystem>
#include <set>

#include <gtest/gtest.h>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/rl/embedded_recipes.h"
#include "qarl/rl/trainer.h"
#include "qarl/train/metrics.h"
#include "qarl/train/run_recipe.h"
#include "test_util.h"

namespace qarl::rl {
namespace {
namespace fs = std::filesystem;

train::RunRecipe tiny_recipe(const std::string& tmp, const std::string& name,
                             std::vector<std::string> overrides) {
  std::string path = materialize_embedded_recipe(tmp + "/recipes", name);
  overrides.push_back("logging.run_dir=" + tmp + "/run");
  overrides.push_back("logging.progress=false");
  return train::load_run_recipe(path, overrides);
}

std::vector<nlohmann::ordered_json> metrics_of(const std::string& run_dir) {
  return train::read_metrics_lines(run_dir + "/metrics.jsonl");
}

// Small and fast: a short warm start, few prompts.
const std::vector<std::string> kSmall = {"model.warmstart_steps=40", "algorithm.steps=3",
                                         "algorithm.warmup_steps=1",
                                         "algorithm.prompts_per_step=4",
                                         "algorithm.samples_per_prompt=4",
                                         "calibration.quant_calib_size=4"};

TEST(Trainer, QarlNvfp4HasExactParityAndRolloutOnlyDoesNot) {
  test::TempDir a, b;
  {
    Trainer t(tiny_recipe(a.path(), "grpo-tiny-nvfp4-kv.yaml", kSmall), false);
    auto s = t.run();
    EXPECT_EQ(s.steps, 3);
    auto lines = metrics_of(a.path() + "/run");
    ASSERT_EQ(lines.size(), 3u);
    for (const auto& j : lines) {
      for (const auto& k : train::required_metric_keys()) EXPECT_TRUE(j.contains(k)) << k;
      EXPECT_EQ(j["gen_kl_error"].get<double>(), 0.0);  // bitwise parity, not "small"
      EXPECT_EQ(j["token_mult_prob_error"].get<double>(), 1.0);
      EXPECT_GT(j["refit_bytes"].get<double>(), 0.0);
      EXPECT_EQ(j["kv_quant"].get<std::string>(), "nvfp4");
    }
    // The unaware comparison on the same rollouts sees a real mismatch.
    EXPECT_GT(s.unaware_gen_kl_error, 0.0);
    EXPECT_TRUE(fs::exists(a.path() + "/run/report.html"));
    EXPECT_TRUE(fs::exists(a.path() + "/run/kv_amax.safetensors"));
  }
  {
    Trainer t(tiny_recipe(b.path(), "grpo-tiny-nvfp4-kv-rollout-only.yaml", kSmall), false);
    t.run();
    auto lines = metrics_of(b.path() + "/run");
    ASSERT_EQ(lines.size(), 3u);
    for (const auto& j : lines) {
      EXPECT_GT(j["gen_kl_error"].get<double>(), 0.0);
      EXPECT_TRUE(j["rollout_only_experiment"].get<bool>());
    }
  }
}

TEST(Trainer, ResumeIsBitwiseIdenticalToAnUninterruptedRun) {
  test::TempDir full, split;
  auto ov = kSmall;
  ov.push_back("algorithm.steps=4");
  ov.push_back("checkpoint.every=2");
  {
    Trainer t(tiny_recipe(full.path(), "grpo-tiny-fp8-kv.yaml", ov), false);
    t.run();
  }
  {
    Trainer t(tiny_recipe(split.path(), "grpo-tiny-fp8-kv.yaml", ov), false);
    t.run(/*stop_after=*/2);  // "killed" after the step-2 checkpoint
  }
  {
    auto r = train::load_run_recipe(split.path() + "/run/recipe.yaml",
                                    {"logging.run_dir=" + split.path() + "/run"});
    Trainer t(r, /*resume=*/true);
    EXPECT_EQ(t.run().steps, 4);
  }
  auto a = metrics_of(full.path() + "/run"), b = metrics_of(split.path() + "/run");
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), 4u);
  const std::set<std::string> timing = {"refit_seconds", "generation_tokens_per_s",
                                        "train_tokens_per_s", "step_seconds"};
  for (size_t i = 0; i < 4; ++i)
    for (auto it = a[i].begin(); it != a[i].end(); ++it)
      if (!timing.count(it.key())) {
        EXPECT_EQ(it.value(), b[i][it.key()]) << "step " << i + 1 << " " << it.key();
      }
  // The final weights are byte-identical.
  EXPECT_EQ(read_file(full.path() + "/run/checkpoints/step_4/model.safetensors"),
            read_file(split.path() + "/run/checkpoints/step_4/model.safetensors"));
}

TEST(Trainer, ShortGrpoRunRaisesTheReward) {
  // The embedded default's recipe, shortened: the reward of the last steps must clearly
  // exceed that of the first ones (seeded, so the run is reproducible on one machine).
  test::TempDir d;
  Trainer t(tiny_recipe(d.path(), "grpo-tiny-nvfp4-kv.yaml", {"algorithm.steps=40"}), false);
  t.run();
  auto lines = metrics_of(d.path() + "/run");
  ASSERT_EQ(lines.size(), 40u);
  double first = 0, last = 0;
  for (size_t i = 0; i < 10; ++i) {
    first += lines[i]["reward_mean"].get<double>() / 10;
    last += lines[30 + i]["reward_mean"].get<double>() / 10;
  }
  EXPECT_GT(last, first + 0.1) << "first 10 steps " << first << ", last 10 steps " << last;
  for (const auto& j : lines) EXPECT_EQ(j["gen_kl_error"].get<double>(), 0.0);
}

TEST(Trainer, DistillationLowersTheStudentTeacherKl) {
  // QAD: the NVFP4-K/V student learns to match its BF16 self over the full vocabulary.
  test::TempDir d;
  Trainer t(tiny_recipe(d.path(), "distill-tiny-nvfp4-kv.yaml", {}), false);
  t.run();
  auto lines = metrics_of(d.path() + "/run");
  ASSERT_EQ(lines.size(), 40u);
  double first = 0, last = 0;
  for (size_t i = 0; i < 10; ++i) {
    first += lines[i]["distill_kl"].get<double>() / 10;
    last += lines[30 + i]["distill_kl"].get<double>() / 10;
  }
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
  for (const auto& j : lines) EXPECT_EQ(j["gen_kl_error"].get<double>(), 0.0);
}

TEST(Trainer, BadRecipesFailBeforeAnyWork) {
  test::TempDir d;
  try {
    tiny_recipe(d.path(), "grpo-tiny-nvfp4-kv.yaml", {"algorithm.stpes=3"});
    FAIL() << "misspelt key accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("stpes"), std::string::npos) << e.what();
  }
  // Different quant recipes for policy and rollout without the explicit opt-in.
  std::string q = d.path() + "/recipes/quant/kv_cache_fp8_calibrated.yaml";
  EXPECT_THROW(tiny_recipe(d.path(), "grpo-tiny-nvfp4-kv.yaml", {"quant.rollout_recipe=" + q}), Error);
  EXPECT_FALSE(fs::exists(d.path() + "/run"));
}

}  // namespace
}  // namespace qarl::rl

namespace qarl::rl {
namespace {

TEST(Trainer, KillDashNineAnywhereThenResumeLosesNothing) {
  // A real `qarl train` process is killed with SIGKILL once its first checkpoint exists
  // (possibly in the middle of writing a later one); `--resume` must finish the run with
  // exactly the weights of an uninterrupted run.
  test::TempDir d;
  std::string common =
      "train grpo-tiny-fp8-kv.yaml model.warmstart_steps=20 algorithm.steps=24 "
      "algorithm.warmup_steps=1 algorithm.prompts_per_step=8 algorithm.samples_per_prompt=8 "
      "checkpoint.every=1 checkpoint.keep_last=2 logging.progress=false ";
  auto full = test::run_qarl(common + "logging.run_dir=" + d.file("full"));
  ASSERT_EQ(full.exit_code, 0) << full.err;
  std::string run = d.file("killed");
  std::string cmd = "cd " + d.path() + " && (" + test::qarl_binary() + " " + common +
                    "logging.run_dir=" + run + " >/dev/null 2>&1 & pid=$!; "
                    "for i in $(seq 1 600); do [ -f " + run + "/checkpoints/latest ] && break; sleep 0.05; done; "
                    "sleep 0.03; kill -9 $pid; wait $pid; exit 0)";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  ASSERT_TRUE(fs::exists(run + "/checkpoints/latest"));
  auto lines_before = metrics_of(run).size();
  // Otherwise the process finished before the kill and the test would prove nothing.
  ASSERT_LT(lines_before, 24u) << "the run ended before it was killed";
  auto res = test::run_qarl("train --resume " + run);
  ASSERT_EQ(res.exit_code, 0) << res.err;
  EXPECT_EQ(read_file(d.file("full") + "/checkpoints/step_24/model.safetensors"),
            read_file(run + "/checkpoints/step_24/model.safetensors"))
      << "killed after " << lines_before << " metric lines";
  EXPECT_EQ(metrics_of(run).size(), 24u);
}

}  // namespace
}  // namespace qarl::rl
