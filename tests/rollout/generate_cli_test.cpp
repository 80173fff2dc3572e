// `qarl generate` end to end: output format, per-line errors, and `qarl score` on its output
// giving the same logprobs.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/io/safetensors.h"
#include "rollout_fixtures.h"
#include "test_util.h"

namespace qarl::rollout {
namespace {

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(GenerateCli, SamplesErrorsAndScoreAgreement) {
  qarl::test::TempDir dir;
  const std::string model = dir.file("model");
  const auto cfg = test::tiny_config(io::ModelFamily::Qwen3, 2);
  test::save_tiny_model(model, cfg, 4242);
  io::save_safetensors(dir.file("amax.safetensors"),
                       [] {
                         std::vector<std::pair<std::string, Tensor>> v;
                         for (auto& [n, t] : test::tiny_amax(2)) v.emplace_back(n, t);
                         return v;
                       }());
  write_file_atomic(dir.file("nvfp4.yaml"),
                    "quantize:\n  algorithm: max\n  quant_cfg:\n"
                    "    - {quantizer_name: '*', enable: false}\n"
                    "    - quantizer_name: '*[kv]_bmm_quantizer'\n"
                    "      enable: true\n"
                    "      cfg:\n"
                    "        block_sizes: {-1: 16, type: dynamic, scale_bits: e4m3}\n"
                    "        num_bits: e2m1\n");
  write_file_atomic(dir.file("prompts.jsonl"),
                    "{\"tokens\": [1, 2, 3, 4, 5, 6, 7]}\n"
                    "{\"tokens\": []}\n"
                    "{\"tokens\": [3, 99]}\n"
                    "{\"tokens\": [\"a\"]}\n"
                    "{\"tokens\": [9, 8], \"top_p\": 0}\n"
                    "{\"tokens\": [11, 12, 13], \"n\": 1, \"max_new_tokens\": 9, \"seed\": 77}\n"
                    "[1, 2]\n");
  auto r = qarl::test::run_qarl(
      "generate --model " + model + " --prompts " + dir.file("prompts.jsonl") + " --out " +
      dir.file("out.jsonl") + " --recipe " + dir.file("nvfp4.yaml") + " --kv-amax " +
      dir.file("amax.safetensors") +
      " --kv-cache nvfp4 --max-new-tokens 5 --temperature 0.8 --top-k 10 --n 2 --seed 5"
      " --kv-cache-bytes 20000 --block-size 4 --ignore-eos");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto out = read_jsonl(dir.file("out.jsonl"));
  ASSERT_EQ(out.size(), 2u + 4u + 1u + 1u);  // 2 samples, 4 bad lines, 1 sample, 1 bad line
  EXPECT_EQ(out[0]["prompt_tokens"], nlohmann::json({1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(out[0]["tokens"].size(), 5u);
  EXPECT_EQ(out[0]["finish_reason"], "length");
  EXPECT_EQ(out[1]["prompt_tokens"], out[0]["prompt_tokens"]);
  EXPECT_NE(out[2]["error"].get<std::string>().find("line 2: empty prompt"), std::string::npos);
  EXPECT_NE(out[3]["error"].get<std::string>().find("line 3: prompt token 99"), std::string::npos);
  EXPECT_NE(out[4]["error"].get<std::string>().find("line 4:"), std::string::npos);
  EXPECT_NE(out[5]["error"].get<std::string>().find("line 5: top_p must be in (0, 1]"), std::string::npos);
  EXPECT_EQ(out[6]["tokens"].size(), 9u);
  EXPECT_NE(out[7]["error"].get<std::string>().find("line 7:"), std::string::npos);

  // qarl score on prompt + tokens with the same recipe, amax and temperature.
  std::string seqs;
  std::vector<size_t> idx = {0, 1, 6};
  for (size_t i : idx) {
    auto s = out[i]["prompt_tokens"].get<std::vector<int>>();
    for (int t : out[i]["tokens"].get<std::vector<int>>()) s.push_back(t);
    seqs += nlohmann::json(s).dump() + "\n";
  }
  write_file_atomic(dir.file("seqs.jsonl"), seqs);
  auto s = qarl::test::run_qarl("score --model " + model + " --tokens " + dir.file("seqs.jsonl") +
                                " --out " + dir.file("scores.jsonl") + " --recipe " +
                                dir.file("nvfp4.yaml") + " --kv-amax " + dir.file("amax.safetensors") +
                                " --temperature 0.8");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  auto scores = read_jsonl(dir.file("scores.jsonl"));
  ASSERT_EQ(scores.size(), idx.size());
  for (size_t j = 0; j < idx.size(); ++j) {
    const auto& o = out[idx[j]];
    auto lp = scores[j]["logprobs"].get<std::vector<double>>();
    size_t P = o["prompt_tokens"].size();
    std::vector<double> tail(lp.begin() + long(P - 1), lp.end());
    EXPECT_EQ(tail, o["logprobs"].get<std::vector<double>>()) << j;
  }
}

TEST(GenerateCli, UsageErrors) {
  qarl::test::TempDir dir;
  const auto cfg = test::tiny_config(io::ModelFamily::Qwen3, 1);
  test::save_tiny_model(dir.path(), cfg, 1);
  write_file_atomic(dir.file("p.jsonl"), "{\"tokens\": [1]}\n");
  auto base = "generate --model " + dir.path() + " --prompts " + dir.file("p.jsonl") + " --out " +
              dir.file("o.jsonl");
  auto r = qarl::test::run_qarl(base + " --kv-cache int8");
  EXPECT_NE(r.exit_code, 0);
  r = qarl::test::run_qarl(base + " --kv-cache fp8");  // no FP8 quantizers in the recipe
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--kv-cache fp8"), std::string::npos) << r.err;
  r = qarl::test::run_qarl(base + " --kv-cache-bytes 100 --kv-cache-fraction 0.1");
  EXPECT_NE(r.exit_code, 0);
  r = qarl::test::run_qarl(base + " --kv-cache-bytes 100");
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

}  // namespace
}  // namespace qarl::rollout
