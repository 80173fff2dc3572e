#include <gtest/gtest.h>

#include <filesystem>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/train/run_recipe.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace qarl;
using namespace qarl::train;

namespace {
const char* kNone = "quantize:\n  algorithm: max\n  quant_cfg:\n    - {quantizer_name: '*', enable: false}\n";
const char* kFp8Const =
    "quantize:\n  algorithm: max\n  quant_cfg:\n    - {quantizer_name: '*', enable: false}\n"
    "    - quantizer_name: '*[kv]_bmm_quantizer'\n      enable: true\n      cfg: {num_bits: e4m3, use_constant_amax: true}\n";
const char* kNvfp4 =
    "quantize:\n  algorithm: max\n  quant_cfg:\n    - {quantizer_name: '*', enable: false}\n"
    "    - quantizer_name: '*[kv]_bmm_quantizer'\n      enable: true\n      cfg:\n"
    "        block_sizes: {-1: 16, type: dynamic, scale_bits: e4m3}\n        num_bits: e2m1\n";

struct Fixture {
  test::TempDir dir;
  Fixture() {
    fs::create_directories(dir.file("quant"));
    write_file_atomic(dir.file("quant/none.yaml"), kNone);
    write_file_atomic(dir.file("quant/fp8.yaml"), kFp8Const);
    write_file_atomic(dir.file("quant/nvfp4.yaml"), kNvfp4);
  }
  std::string write(const std::string& name, const std::string& text) {
    write_file_atomic(dir.file(name), text);
    return dir.file(name);
  }
};

Error error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no error";
  return Error("none");
}
}  // namespace

TEST(RunRecipe, DefaultsFileAndOverrides) {
  Fixture fx;
  const auto path = fx.write("r.yaml",
                             "quant:\n  recipe: quant/nvfp4.yaml\nalgorithm:\n  lr: 2.0e-4\n  clip_high: 0.3\n"
                             "logging:\n  run_dir: out\n");
  auto r = load_run_recipe(path, {"algorithm.steps=7", "algorithm.kl_type=k1", "task.difficulty=2", "seed=5"});
  EXPECT_EQ(r.quant.recipe, fx.dir.file("quant/nvfp4.yaml"));
  EXPECT_EQ(r.quant.rollout_recipe, r.quant.recipe);  // defaults to the same recipe
  EXPECT_DOUBLE_EQ(r.algorithm.lr, 2e-4);
  EXPECT_DOUBLE_EQ(r.algorithm.clip_high, 0.3);
  EXPECT_DOUBLE_EQ(r.algorithm.clip_low, 0.2);  // schema default
  EXPECT_EQ(r.algorithm.steps, 7);
  EXPECT_EQ(r.algorithm.kl_type, "k1");
  EXPECT_EQ(r.task.difficulty, 2);
  EXPECT_EQ(r.seed, 5u);
  EXPECT_EQ(r.logging.run_dir, "out");
  EXPECT_FALSE(r.rollout_only_experiment);
  // The effective recipe round-trips through YAML.
  const auto again = fx.write("again.yaml", run_recipe_to_yaml(r));
  auto r2 = load_run_recipe(again);
  EXPECT_EQ(r2.algorithm.steps, 7);
  EXPECT_EQ(r2.quant.recipe, r.quant.recipe);
}

TEST(RunRecipe, UnknownKeysNameKeyAndFile) {
  Fixture fx;
  const auto path = fx.write("typo.yaml", "quant:\n  recipe: quant/none.yaml\nalgorithm:\n  clip_hgh: 0.3\n");
  Error e = error_of([&] { load_run_recipe(path); });
  EXPECT_EQ(e.file(), path);
  EXPECT_EQ(e.key(), "algorithm.clip_hgh");
  EXPECT_NE(std::string(e.what()).find("did you mean 'clip_high'"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("line 4"), std::string::npos) << e.what();

  e = error_of([&] { load_run_recipe(fx.write("top.yaml", "algorthm: {}\n")); });
  EXPECT_EQ(e.key(), "algorthm");
  e = error_of([&] { load_run_recipe(fx.write("sec.yaml", "quant:\n  recipe: quant/none.yaml\nalgorithm: 3\n")); });
  EXPECT_EQ(e.key(), "algorithm");
  e = error_of([&] { load_run_recipe(fx.write("ok.yaml", "quant:\n  recipe: quant/none.yaml\n"), {"algorithm.stepz=3"}); });
  EXPECT_EQ(e.kind(), ErrorKind::Usage);
  EXPECT_EQ(e.key(), "algorithm.stepz");
  e = error_of([&] { load_run_recipe(fx.dir.file("ok.yaml"), {"algorithm=3"}); });
  EXPECT_EQ(e.key(), "algorithm");
  e = error_of([&] { load_run_recipe(fx.dir.file("ok.yaml"), {"no_equals_sign"}); });
  EXPECT_EQ(e.kind(), ErrorKind::Usage);
  e = error_of([&] { load_run_recipe(fx.write("syntax.yaml", "a: [1,\n")); });
  EXPECT_EQ(e.file(), fx.dir.file("syntax.yaml"));
  // A repeated key is refused, naming it (the later value used to win silently).
  e = error_of([&] {
    load_run_recipe(fx.write("dup.yaml", "quant:\n  recipe: quant/none.yaml\nalgorithm:\n  steps: 3\n  steps: 5\n"));
  });
  EXPECT_EQ(e.key(), "algorithm.steps");
  EXPECT_NE(std::string(e.what()).find("duplicate key"), std::string::npos) << e.what();
  // A path with a name longer than the file system allows (fuzz/run_recipe_fuzz): std::filesystem's
  // checks threw filesystem_error; now it is a recipe that does not exist, naming the key.
  e = error_of([&] { load_run_recipe(fx.write("long.yaml", "quant:\n  recipe: " + std::string(300, 'q') + ".yaml\n")); });
  EXPECT_EQ(e.key(), "quant.recipe");
  EXPECT_EQ(e.kind(), ErrorKind::Input);
}

TEST(RunRecipe, BadValuesNameTheKey) {
  Fixture fx;
  const auto ok = fx.write("ok.yaml", "quant:\n  recipe: quant/none.yaml\n");
  struct Case { const char* override; const char* key; };
  for (Case c : {Case{"algorithm.lr=fast", "algorithm.lr"}, Case{"algorithm.steps=0", "algorithm.steps"},
                 Case{"algorithm.name=ppo", "algorithm.name"}, Case{"algorithm.kl_type=k9", "algorithm.kl_type"},
                 Case{"task.kind=jsonl", "task.dataset"}, Case{"algorithm.samples_per_prompt=1", "algorithm.samples_per_prompt"},
                 Case{"model.path=/no/such/dir", "model.path"}, Case{"task.shuffle=maybe", "task.shuffle"},
                 Case{"calibration.quant_calib_size=0", "calibration.quant_calib_size"},
                 Case{"quant.recipe=quant/missing.yaml", "quant.recipe"}}) {
    Error e = error_of([&] { load_run_recipe(ok, {c.override}); });
    EXPECT_EQ(e.key(), c.key) << c.override << ": " << e.what();
    EXPECT_EQ(e.file(), ok) << c.override;
  }
}

TEST(RunRecipe, SameRecipeGuard) {
  Fixture fx;
  // Different recipes without the opt-in: an error naming both sides.
  const auto mismatch = fx.write("m.yaml", "quant:\n  recipe: quant/none.yaml\n  rollout_recipe: quant/nvfp4.yaml\n");
  Error e = error_of([&] { load_run_recipe(mismatch); });
  EXPECT_NE(std::string(e.what()).find("nvfp4.yaml"), std::string::npos) << e.what();
  // The rollout-only experiment opt-in: allowed and flagged.
  auto r = load_run_recipe(mismatch, {"quant.rollout_only_experiment=true"});
  EXPECT_TRUE(r.rollout_only_experiment);
  // The documented exception: rollout-only constant-amax FP8.
  auto f = load_run_recipe(fx.write("f.yaml", "quant:\n  recipe: quant/none.yaml\n  rollout_recipe: quant/fp8.yaml\n"));
  EXPECT_TRUE(f.rollout_only_constant_fp8);
  EXPECT_FALSE(f.rollout_only_experiment);
}

// The recipes shipped in recipes/ load and validate (with model.path for the HF ones).
TEST(RunRecipe, ShippedRecipesValidate) {
  const std::string root = test::source_path("recipes");
  for (const char* q : {"none.yaml", "kv_cache_fp8.yaml", "kv_cache_nvfp4.yaml"})
    if (!fs::exists(root + "/quant/" + q))
      GTEST_SKIP() << "recipes/quant/" << q << " not in this tree yet (shipped by the quant component)";
  test::TempDir model, data;
  write_file_atomic(data.file("d.jsonl"), "{\"prompt\": \"1+1=\", \"answer\": 2}\n");
  int seen = 0;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() != ".yaml") continue;
    SCOPED_TRACE(name);
    std::vector<std::string> ov;
    if (name.find("-hf-") != std::string::npos) {
      // Without a model path the HF recipes must refuse to start.
      EXPECT_THROW(load_run_recipe(e.path().string()), Error);
      ov = {"model.path=" + model.path(), "task.dataset=" + data.file("d.jsonl")};
    }
    auto r = load_run_recipe(e.path().string(), ov);
    ++seen;
    const bool rollout_only = name.find("rollout-only") != std::string::npos;
    EXPECT_EQ(r.rollout_only_experiment, rollout_only);
    if (!rollout_only) { EXPECT_EQ(r.quant.recipe, r.quant.rollout_recipe); }
    EXPECT_EQ(r.algorithm.name, name.rfind("distill", 0) == 0 ? "distill" : "grpo");
    if (name.find("nvfp4") != std::string::npos) {
      EXPECT_NE(r.quant.rollout_recipe.find("kv_cache_nvfp4.yaml"), std::string::npos);
    }
  }
  EXPECT_EQ(seen, 10);
}
