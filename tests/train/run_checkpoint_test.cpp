#include <gtest/gtest.h>

#include <filesystem>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/train/adamw.h"
#include "qarl/train/run_checkpoint.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace qarl;
using namespace qarl::train;

namespace {
TrainState state_at(int64_t step) {
  TrainState s;
  s.step = step;
  s.data_position = uint64_t(step) * 8;
  s.seed = 99;
  s.rng_positions = {{"sampling", uint64_t(step) * 1000}, {"init", 7}};
  s.extra["note"] = "hello";
  return s;
}
std::map<std::string, Tensor> grad(uint64_t seed) {
  return {{"w", Tensor::from_f32(test::random_normal(6, 1.0f, seed), {2, 3})}};
}
}  // namespace

TEST(RunCheckpoint, SaveFindResumeBitwise) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  test::TempDir dir;
  AdamW opt;
  opt.add_param("w", Tensor::from_f32(test::random_normal(6, 1.0f, seed), {2, 3}));
  EXPECT_FALSE(find_latest_checkpoint(dir.path()));
  opt.step(grad(seed + 1), 1e-2);
  int hook_calls = 0;
  CheckpointOptions co;
  co.write_model = [&](const std::string& tmp) {
    ++hook_calls;
    EXPECT_EQ(tmp.substr(tmp.size() - 4), ".tmp");
    write_file_atomic(tmp + "/model.safetensors.stub", "weights");
  };
  save_run_checkpoint(dir.path(), state_at(1), &opt, co);
  opt.step(grad(seed + 2), 1e-2);
  const std::string d2 = save_run_checkpoint(dir.path(), state_at(2), &opt, co);
  EXPECT_EQ(hook_calls, 2);
  EXPECT_TRUE(fs::exists(d2 + "/model.safetensors.stub"));
  EXPECT_EQ(read_file(checkpoints_dir(dir.path()) + "/latest"), "step_2\n");

  auto found = find_latest_checkpoint(dir.path());
  ASSERT_TRUE(found);
  EXPECT_EQ(found->dir, d2);
  EXPECT_EQ(found->state.step, 2);
  EXPECT_EQ(found->state.data_position, 16u);
  EXPECT_EQ(found->state.rng_positions.at("sampling"), 2000u);
  EXPECT_EQ(found->state.extra["note"], "hello");

  AdamW resumed;
  resumed.add_param("w", Tensor::zeros({2, 3}, DType::F32));
  load_optimizer_state(found->dir, resumed);
  EXPECT_EQ(resumed.step_count(), 2);
  opt.step(grad(seed + 3), 1e-2);
  resumed.step(grad(seed + 3), 1e-2);
  EXPECT_TRUE(tensors_bitwise_equal(opt.master("w"), resumed.master("w")));
}

TEST(RunCheckpoint, SimulatedCrashLeavesTmpThatIsIgnored) {
  test::TempDir dir;
  AdamW opt;
  opt.add_param("w", Tensor::zeros({3}, DType::F32));
  save_run_checkpoint(dir.path(), state_at(4), &opt);
  const std::string root = checkpoints_dir(dir.path());
  // Crash while writing step 5: a half-filled step_5.tmp, latest still step_4.
  fs::create_directory(root + "/step_5.tmp");
  write_file_atomic(root + "/step_5.tmp/optimizer.safetensors", "garbage");
  auto found = find_latest_checkpoint(dir.path());
  ASSERT_TRUE(found);
  EXPECT_EQ(found->state.step, 4);

  // Crash in the model hook: the save throws, latest unchanged, tmp left behind.
  CheckpointOptions bad;
  bad.write_model = [](const std::string&) { throw runtime_err("disk full"); };
  EXPECT_THROW(save_run_checkpoint(dir.path(), state_at(6), &opt, bad), Error);
  EXPECT_TRUE(fs::exists(root + "/step_6.tmp"));
  EXPECT_FALSE(fs::exists(root + "/step_6"));
  EXPECT_EQ(find_latest_checkpoint(dir.path())->state.step, 4);

  // The next save of step 5 replaces the stale tmp and publishes.
  save_run_checkpoint(dir.path(), state_at(5), &opt);
  EXPECT_FALSE(fs::exists(root + "/step_5.tmp"));
  EXPECT_EQ(find_latest_checkpoint(dir.path())->state.step, 5);
}

TEST(RunCheckpoint, LatestPointerBrokenOrMissingFallsBackToScan) {
  test::TempDir dir;
  save_run_checkpoint(dir.path(), state_at(3), nullptr);
  save_run_checkpoint(dir.path(), state_at(8), nullptr);
  const std::string root = checkpoints_dir(dir.path());
  write_file_atomic(root + "/latest", "step_9\n");  // names a directory that never got published
  EXPECT_EQ(find_latest_checkpoint(dir.path())->state.step, 8);
  fs::remove(root + "/latest");
  EXPECT_EQ(find_latest_checkpoint(dir.path())->state.step, 8);
  // A published directory whose state file is corrupt is skipped too.
  write_file_atomic(root + "/step_8/train_state.json", "{not json");
  EXPECT_EQ(find_latest_checkpoint(dir.path())->state.step, 3);
  EXPECT_THROW(read_train_state(root + "/step_8"), Error);
}

TEST(RunCheckpoint, KeepLast) {
  test::TempDir dir;
  CheckpointOptions o;
  o.keep_last = 2;
  for (int s = 1; s <= 4; ++s) save_run_checkpoint(dir.path(), state_at(s), nullptr, o);
  const std::string root = checkpoints_dir(dir.path());
  EXPECT_FALSE(fs::exists(root + "/step_1"));
  EXPECT_FALSE(fs::exists(root + "/step_2"));
  EXPECT_TRUE(fs::exists(root + "/step_3"));
  EXPECT_TRUE(fs::exists(root + "/step_4"));
}
