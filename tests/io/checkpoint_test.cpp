// Checkpoint directories: single file, sharded with an index, and every inconsistency
// between the index and the shards.
#include "qarl/io/checkpoint.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "test_util.h"

namespace qarl::io {
namespace {

namespace fs = std::filesystem;

std::vector<std::pair<std::string, Tensor>> some_tensors(uint64_t seed) {
  std::vector<std::pair<std::string, Tensor>> ts;
  for (int i = 0; i < 5; ++i) {
    auto v = test::random_normal(size_t(10 + i), 1.0f, seed + i);
    ts.emplace_back("model.layers." + std::to_string(i) + ".w",
                    Tensor::from_f32(v, {int64_t(10 + i)}, DType::F32));
  }
  return ts;
}

void expect_open_fails(const std::string& dir, const std::string& fragment) {
  try {
    Checkpoint::open(dir);
    ADD_FAILURE() << "opened an inconsistent checkpoint";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Input);
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, SingleFileAndPlainFile) {
  uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(seed);
  test::TempDir d;
  auto ts = some_tensors(seed);
  save_checkpoint_tensors(d.path(), ts);
  EXPECT_TRUE(fs::exists(d.file("model.safetensors")));
  EXPECT_FALSE(fs::exists(d.file("model.safetensors.index.json")));
  for (const std::string& p : {d.path(), d.file("model.safetensors")}) {
    auto c = Checkpoint::open(p);
    EXPECT_EQ(c.names().size(), ts.size());
    for (const auto& [n, t] : ts) EXPECT_TRUE(tensors_bitwise_equal(c.get(n), t)) << n;
    EXPECT_EQ(c.shards()[0]->metadata().at("format"), "pt");
  }
}

TEST(Checkpoint, ShardedRoundTrip) {
  uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(seed);
  test::TempDir d;
  auto ts = some_tensors(seed);
  save_checkpoint_tensors(d.path(), ts, /*max_shard_bytes=*/100);  // 40..56 bytes each
  ASSERT_TRUE(fs::exists(d.file("model.safetensors.index.json")));
  EXPECT_FALSE(fs::exists(d.file("model.safetensors")));
  EXPECT_TRUE(fs::exists(d.file("model-00001-of-00003.safetensors")));
  EXPECT_TRUE(fs::exists(d.file("model-00003-of-00003.safetensors")));
  auto idx = nlohmann::json::parse(read_file(d.file("model.safetensors.index.json")));
  uint64_t total = 0;
  for (const auto& [n, t] : ts) total += t.nbytes();
  EXPECT_EQ(idx["metadata"]["total_size"].get<uint64_t>(), total);
  auto c = Checkpoint::open(d.path());
  EXPECT_EQ(c.shards().size(), 3u);
  for (const auto& [n, t] : ts) EXPECT_TRUE(tensors_bitwise_equal(c.get(n), t)) << n;
  EXPECT_NE(c.file_of("model.layers.4.w").find("model-00003-of-00003"), std::string::npos);
  EXPECT_THROW(c.get("missing"), Error);
  // Re-saving as one file replaces the index so the directory stays unambiguous.
  save_checkpoint_tensors(d.path(), ts);
  EXPECT_FALSE(fs::exists(d.file("model.safetensors.index.json")));
  EXPECT_EQ(Checkpoint::open(d.path()).shards().size(), 1u);
}

class BadIndex : public ::testing::Test {
 protected:
  void SetUp() override {
    ts_ = some_tensors(test::fresh_seed());
    save_checkpoint_tensors(d_.path(), ts_, 100);
    index_ = nlohmann::json::parse(read_file(d_.file("model.safetensors.index.json")));
  }
  void write_index(const nlohmann::json& j) {
    write_file_atomic(d_.file("model.safetensors.index.json"), j.dump());
  }
  test::TempDir d_;
  std::vector<std::pair<std::string, Tensor>> ts_;
  nlohmann::json index_;
};

TEST_F(BadIndex, MissingShard) {
  fs::remove(d_.file("model-00002-of-00003.safetensors"));
  expect_open_fails(d_.path(), "does not exist");
}
TEST_F(BadIndex, ListedTensorMissingFromShard) {
  index_["weight_map"]["ghost"] = "model-00001-of-00003.safetensors";
  write_index(index_);
  expect_open_fails(d_.path(), "tensor 'ghost'");
}
TEST_F(BadIndex, TensorNotListed) {
  index_["weight_map"].erase("model.layers.0.w");
  write_index(index_);
  expect_open_fails(d_.path(), "not listed in weight_map");
}
TEST_F(BadIndex, WrongShard) {
  index_["weight_map"]["model.layers.0.w"] = "model-00002-of-00003.safetensors";
  write_index(index_);
  expect_open_fails(d_.path(), "weight_map says shard");
}
TEST_F(BadIndex, TensorInTwoShards) {
  // Shard 2 gets a copy of shard 1's first tensor.
  auto c = Checkpoint::open(d_.path());
  std::vector<std::pair<std::string, Tensor>> s2;
  for (const auto& t : c.shards()[1]->tensors()) s2.emplace_back(t.name, c.get(t.name).clone());
  s2.emplace_back("model.layers.0.w", c.get("model.layers.0.w").clone());
  save_safetensors(d_.file("model-00002-of-00003.safetensors"), s2);
  expect_open_fails(d_.path(), "in two shards");
}
TEST_F(BadIndex, PathEscape) {
  index_["weight_map"]["model.layers.0.w"] = "../x.safetensors";
  write_index(index_);
  expect_open_fails(d_.path(), "not a relative path inside");
}
TEST_F(BadIndex, NotJsonOrNoWeightMap) {
  write_file_atomic(d_.file("model.safetensors.index.json"), "{");
  expect_open_fails(d_.path(), "invalid JSON");
  write_index(nlohmann::json::object({{"metadata", {}}}));
  expect_open_fails(d_.path(), "weight_map");
  write_file_atomic(d_.file("model.safetensors.index.json"),
                    R"({"weight_map":{"a":"x","a":"y"}})");
  expect_open_fails(d_.path(), "duplicate key");
}
TEST_F(BadIndex, Ambiguous) {
  save_safetensors(d_.file("model.safetensors"), {});
  expect_open_fails(d_.path(), "ambiguous");
}

TEST(Checkpoint, EmptyOrMissing) {
  test::TempDir d;
  expect_open_fails(d.path(), "neither");
  expect_open_fails(d.file("nope"), "no such file");
}

}  // namespace
}  // namespace qarl::io
