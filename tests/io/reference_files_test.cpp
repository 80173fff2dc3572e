// Files written by PyTorch + safetensors 0.8 + transformers 5.17 (tests/data/io/
// make_reference.py, run on the H200 machine): qarl reads every tensor with the bytes
// hashlib saw, and re-writing a file reproduces it byte for byte.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "qarl/core/fs.h"
#include "qarl/io/checkpoint.h"
#include "qarl/io/hf_config.h"
#include "qarl/io/safetensors.h"
#include "sha256.h"
#include "test_util.h"

namespace qarl::io {
namespace {

using json = nlohmann::json;

json expected() { return json::parse(read_file(test::data_path("io/expected.json"))); }

TEST(ReferenceFiles, Sha256HelperKnownAnswers) {
  EXPECT_EQ(test::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(test::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(test::sha256_hex(std::string(1000, 'a')),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

TEST(ReferenceFiles, EveryTensorMatchesAndRewriteIsByteExact) {
  json ex = expected();
  ASSERT_GE(ex["files"].size(), 5u);
  test::TempDir d;
  for (const auto& [rel, fe] : ex["files"].items()) {
    SCOPED_TRACE(rel);
    std::string path = test::data_path("io/" + rel);
    std::string bytes = read_file(path);
    ASSERT_EQ(test::sha256_hex(bytes), fe["sha256"].get<std::string>());  // the committed file
    auto f = SafetensorsFile::open(path);
    ASSERT_EQ(f.tensors().size(), fe["tensors"].size());
    for (const auto& [name, te] : fe["tensors"].items()) {
      SCOPED_TRACE(name);
      const TensorInfo& info = f.info(name);
      EXPECT_EQ(dtype_name(info.dtype), te["dtype"].get<std::string>());
      EXPECT_EQ(info.shape, te["shape"].get<Shape>());
      Tensor t = f.get(name);
      EXPECT_EQ(test::sha256_hex(std::string_view(static_cast<const char*>(t.data()), t.nbytes())),
                te["sha256"].get<std::string>());
      if (te.contains("values")) {
        EXPECT_EQ(t.to_f64_vector(), te["values"].get<std::vector<double>>());
      }
    }
    if (fe.contains("metadata")) {
      EXPECT_EQ(f.metadata(), (fe["metadata"].get<std::map<std::string, std::string>>()));
    }
    resave_safetensors(f, d.file("again.safetensors"));
    EXPECT_TRUE(read_file(d.file("again.safetensors")) == bytes) << "rewrite differs";
  }
}

TEST(ReferenceFiles, AmaxValues) {
  auto f = SafetensorsFile::open(test::data_path("io/dtypes.safetensors"));
  EXPECT_EQ(f.get("model.layers.0.self_attn.k_bmm_quantizer._amax").item(), 3.140625);
  EXPECT_EQ(f.get("model.layers.0.self_attn.k_bmm_quantizer._amax").ndim(), 0);
  EXPECT_EQ(f.get("model.layers.0.self_attn.v_bmm_quantizer._amax").item(), double(0.123456789f));
  auto r = test::run_qarl("inspect " + test::data_path("io/dtypes.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("k_bmm_quantizer._amax = 3.140625"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("v_bmm_quantizer._amax = 0.123456791"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("F8_E4M3"), std::string::npos);
}

TEST(ReferenceFiles, TransformersShardedCheckpoint) {
  json ex = expected()["qwen3_sharded"];
  std::string dir = test::data_path("io/qwen3_sharded");
  auto c = Checkpoint::open(dir);
  EXPECT_EQ(c.names().size(), ex["num_tensors"].get<size_t>());
  EXPECT_EQ(c.shards().size(), ex["shards"].get<size_t>());
  uint64_t total = 0;
  for (const auto& n : c.names()) total += c.info(n).end - c.info(n).begin;
  EXPECT_EQ(total, ex["total_size"].get<uint64_t>());
  auto cfg = load_hf_config(dir);
  EXPECT_EQ(cfg.family, ModelFamily::Qwen3);
  EXPECT_EQ(cfg.hidden_size, ex["config"]["hidden_size"].get<int>());
  EXPECT_EQ(cfg.head_dim, ex["config"]["head_dim"].get<int>());
  EXPECT_EQ(cfg.num_key_value_heads, ex["config"]["num_key_value_heads"].get<int>());
  EXPECT_EQ(cfg.tie_word_embeddings, ex["config"]["tie_word_embeddings"].get<bool>());
  EXPECT_TRUE(cfg.qk_norm);
  EXPECT_EQ(cfg.torch_dtype, "bfloat16");
  EXPECT_TRUE(c.contains("model.layers.1.self_attn.k_norm.weight"));
  auto r = test::run_qarl("inspect " + dir);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("in 3 files"), std::string::npos) << r.out;
}

TEST(ReferenceFiles, TransformersV5Configs) {
  json ex = expected()["configs"];
  for (const auto& [dir, e] : ex.items()) {
    SCOPED_TRACE(dir);
    auto c = load_hf_config(test::data_path("io/" + dir));
    EXPECT_EQ(c.model_type, e["model_type"].get<std::string>());
    EXPECT_EQ(c.head_dim, e["head_dim"].get<int>());
    EXPECT_EQ(c.rope_theta, e["rope_theta"].get<double>());
    EXPECT_EQ(c.rope_scaling.type, e["rope_type"].get<std::string>());
    if (e.contains("factor")) {
      EXPECT_EQ(c.rope_scaling.factor, e["factor"].get<double>());
      EXPECT_EQ(c.rope_scaling.original_max_position_embeddings,
                e["original_max_position_embeddings"].get<double>());
    }
  }
}

}  // namespace
}  // namespace qarl::io
