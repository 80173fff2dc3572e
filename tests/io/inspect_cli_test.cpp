// `qarl inspect` end to end: tables, amax values, --json, and exit code 3 on bad files.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "qarl/core/fs.h"
#include "qarl/io/checkpoint.h"
#include "qarl/io/hf_config.h"
#include "test_util.h"

namespace qarl::io {
namespace {

const char* kConfig = R"({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
  "vocab_size": 64, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 1,
  "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8,
  "max_position_embeddings": 128, "rope_theta": 1000000.0, "torch_dtype": "bfloat16"})";

void make_checkpoint(const std::string& dir, uint64_t max_shard) {
  std::vector<std::pair<std::string, Tensor>> ts = {
      {"model.embed_tokens.weight", Tensor::zeros({64, 16}, DType::BF16)},
      {"model.layers.0.self_attn.k_bmm_quantizer._amax", Tensor::scalar(3.14159274f, DType::F32)},
      {"model.layers.0.self_attn.v_bmm_quantizer._amax", Tensor::scalar(0.5f, DType::BF16)},
      {"model.layers.0.mlp.up_proj.weight_quantizer._amax",
       Tensor::from_f32(std::vector<float>{1.25f, 2.5f, 0.1f}, {3, 1}, DType::F16)},
  };
  save_checkpoint_tensors(dir, ts, max_shard, {{"note", "test"}});
  write_file_atomic(dir + "/config.json", kConfig);
}

TEST(InspectCli, TableAmaxAndConfig) {
  test::TempDir d;
  make_checkpoint(d.path(), 1000);  // the embedding alone fills a shard: 2 shards
  auto r = test::run_qarl("inspect " + d.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("4 tensors in 2 files"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model.embed_tokens.weight"), std::string::npos);
  EXPECT_NE(r.out.find("[64, 16]"), std::string::npos);
  EXPECT_NE(r.out.find("2048"), std::string::npos);  // bytes of the embedding
  EXPECT_NE(r.out.find("k_bmm_quantizer._amax = 3.14159274"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("v_bmm_quantizer._amax = 0.5"), std::string::npos);
  // F16 rounding of 0.1 is 0.0999755859, printed with %.9g.
  EXPECT_NE(r.out.find("weight_quantizer._amax [3, 1] = [1.25, 2.5, 0.0999755859]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("note = test"), std::string::npos);
  EXPECT_NE(r.out.find("Qwen3ForCausalLM, 1 layers"), std::string::npos) << r.out;
}

TEST(InspectCli, Json) {
  test::TempDir d;
  make_checkpoint(d.path(), 1ull << 30);
  auto r = test::run_qarl("inspect --json " + d.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["total_tensors"], 4);
  EXPECT_EQ(j["total_bytes"], 2048 + 4 + 2 + 6);
  EXPECT_EQ(j["shards"].size(), 1u);
  EXPECT_EQ(j["shards"][0]["metadata"]["format"], "pt");
  EXPECT_EQ(j["config"]["model_type"], "qwen3");
  EXPECT_EQ(j["amax"]["model.layers.0.self_attn.k_bmm_quantizer._amax"].get<double>(), double(3.14159274f));
  EXPECT_EQ(j["amax"]["model.layers.0.mlp.up_proj.weight_quantizer._amax"].size(), 3u);
  EXPECT_EQ(j["tensors"][0]["name"], "model.embed_tokens.weight");
  EXPECT_EQ(j["tensors"][0]["shape"], nlohmann::json::array({64, 16}));
}

TEST(InspectCli, SingleFileWrittenByQarl) {
  test::TempDir d;
  make_checkpoint(d.path(), 1ull << 30);
  auto r = test::run_qarl("inspect " + d.file("model.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("4 tensors in 1 file"), std::string::npos) << r.out;
}

TEST(InspectCli, BadFilesExitWith3) {
  test::TempDir d;
  write_file_atomic(d.file("trunc.safetensors"), std::string("\x40\0\0\0\0\0\0\0{\"a\"", 12));
  auto r = test::run_qarl("inspect " + d.file("trunc.safetensors"));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("trunc.safetensors"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("past the end"), std::string::npos) << r.err;

  r = test::run_qarl("inspect " + d.file("missing"));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("missing"), std::string::npos);

  make_checkpoint(d.file("ck"), 1ull << 30);
  write_file_atomic(d.file("ck/config.json"), R"({"model_type": "gpt2"})");
  r = test::run_qarl("inspect " + d.file("ck"));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("model_type"), std::string::npos) << r.err;

  r = test::run_qarl("inspect");
  EXPECT_EQ(r.exit_code, 2);
}

}  // namespace
}  // namespace qarl::io
