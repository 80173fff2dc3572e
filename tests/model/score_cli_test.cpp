// `qarl score` and `qarl calibrate` on the transformers-saved checkpoints of all three families.
#include <cmath>
#include <filesystem>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "qarl/core/fs.h"
#include "qarl/io/checkpoint.h"
#include "test_util.h"

namespace qarl {
namespace {

namespace fs = std::filesystem;

nlohmann::json ref_family(const std::string& fam) {
  return nlohmann::json::parse(read_file(test::data_path("model/reference.json")))["families"][fam];
}

std::string write_tokens(const test::TempDir& d, const nlohmann::json& seqs) {
  std::string s;
  for (const auto& q : seqs) s += q.dump() + "\n";
  write_file_atomic(d.file("tokens.jsonl"), s);
  return d.file("tokens.jsonl");
}

std::vector<std::vector<double>> read_out(const std::string& path) {
  std::vector<std::vector<double>> out;
  std::string all = read_file(path);
  size_t p = 0;
  while (p < all.size()) {
    size_t e = all.find('\n', p);
    out.push_back(nlohmann::json::parse(all.substr(p, e - p))["logprobs"].get<std::vector<double>>());
    p = e + 1;
  }
  return out;
}

double max_diff(const std::vector<std::vector<double>>& a, const nlohmann::json& b) {
  double m = 0;
  EXPECT_EQ(a.size(), b.size());
  for (size_t s = 0; s < a.size() && s < b.size(); ++s) {
    EXPECT_EQ(a[s].size(), b[s].size());
    for (size_t i = 0; i < a[s].size() && i < b[s].size(); ++i) m = std::max(m, std::fabs(a[s][i] - b[s][i].get<double>()));
  }
  return m;
}

class ScoreCli : public ::testing::TestWithParam<std::string> {};

TEST_P(ScoreCli, ScoreAndCalibrateOnHFCheckpoints) {
  const std::string fam = GetParam();
  const auto ref = ref_family(fam);
  test::TempDir d;
  const std::string tokens = write_tokens(d, ref["sequences"]);
  const std::string model = test::data_path("model/" + fam);
  auto r = test::run_qarl("score --model " + model + " --tokens " + tokens + " --out " + d.file("out.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LT(max_diff(read_out(d.file("out.jsonl")), ref["logprobs"]["none"]), 1e-4);
  // Numbers are printed with %.9g.
  EXPECT_NE(read_file(d.file("out.jsonl")).find("{\"logprobs\": ["), std::string::npos);

  // Calibrated FP8 without amax: an error naming the quantizer.
  const std::string fp8 = test::data_path("model/kv_fp8_calibrated.yaml");
  r = test::run_qarl("score --model " + model + " --tokens " + tokens + " --out " + d.file("q.jsonl") + " --recipe " + fp8);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("model.layers.0.self_attn.k_bmm_quantizer"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(d.file("q.jsonl")));
  // With --kv-amax.
  r = test::run_qarl("score --model " + model + " --tokens " + tokens + " --out " + d.file("q.jsonl") + " --recipe " +
                     fp8 + " --kv-amax " + test::data_path("model/" + fam + "_kv_amax.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LT(max_diff(read_out(d.file("q.jsonl")), ref["logprobs"]["fp8_calibrated"]), 2e-3);

  // Calibrate NVFP4 on the reference sequences: the amax table equals transformers' max |K|/|V|
  // (rounded to the checkpoint dtype), and scoring the calibrated checkpoint matches.
  const std::string nv = test::data_path("model/kv_nvfp4.yaml");
  r = test::run_qarl("calibrate --model " + model + " --recipe " + nv + " --tokens " + tokens + " --out " + d.file("cal"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("model.layers.1.self_attn.v_bmm_quantizer"), std::string::npos) << r.out;
  for (const char* f : {"config.json", "generation_config.json"}) EXPECT_TRUE(fs::exists(d.file("cal/") + f)) << f;
  io::Checkpoint ck = io::Checkpoint::open(d.file("cal"));
  for (const auto& [name, v] : ref["amax"].items()) {
    ASSERT_TRUE(ck.contains(name)) << name;
    Tensor t = ck.get(name);
    EXPECT_EQ(t.ndim(), 0) << name;
    EXPECT_EQ(t.dtype(), ck.get("model.norm.weight").dtype()) << name;
    EXPECT_NEAR(t.item(), v.get<double>(), 1e-5 * v.get<double>() + (t.dtype() == DType::BF16 ? 2e-2 : 0)) << name;
  }
  r = test::run_qarl("score --model " + d.file("cal") + " --tokens " + tokens + " --out " + d.file("c.jsonl") + " --recipe " + nv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  if (fam != "qwen2") {  // qwen2 is bf16: its stored amax is rounded, a different quantizer
    EXPECT_LT(max_diff(read_out(d.file("c.jsonl")), ref["logprobs"]["nvfp4"]), 2e-2);
  }
  // Calibrating into a non-empty directory is refused.
  r = test::run_qarl("calibrate --model " + model + " --recipe " + nv + " --tokens " + tokens + " --out " + d.file("cal"));
  EXPECT_NE(r.exit_code, 0);
}

INSTANTIATE_TEST_SUITE_P(Families, ScoreCli, ::testing::Values("llama", "qwen2", "qwen3"));

TEST(ScoreCliBad, BadInputs) {
  test::TempDir d;
  const std::string model = test::data_path("model/qwen3");
  write_file_atomic(d.file("bad.jsonl"), "[1, 2, 3]\n{\"x\": 1}\n");
  auto r = test::run_qarl("score --model " + model + " --tokens " + d.file("bad.jsonl") + " --out " + d.file("o.jsonl"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("line 2"), std::string::npos) << r.err;
  write_file_atomic(d.file("oov.jsonl"), "[1, 2, 999]\n");
  r = test::run_qarl("score --model " + model + " --tokens " + d.file("oov.jsonl") + " --out " + d.file("o.jsonl"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("999"), std::string::npos) << r.err;
  write_file_atomic(d.file("ok.jsonl"), "[1, 2, 3]\n");
  r = test::run_qarl("score --model " + model + " --tokens " + d.file("ok.jsonl") + " --out " + d.file("o.jsonl") +
                     " --temperature 0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(fs::exists(d.file("o.jsonl")));
}

}  // namespace
}  // namespace qarl
