// The GPU entry points of the command line: `qarl generate --device cuda` and `qarl score
// --device cuda` agree bitwise in exact mode (the GPU engine's parity, seen from the CLI);
// without a usable device, or with native K/V storage the recipe's quantizers cannot give, they
// refuse with a usage error (exit 2); native storage on the device writes the same output.
#include <gtest/gtest.h>

#include <cstring>
#include <sstream>

#include <nlohmann/json.hpp>

#include "qarl/core/fs.h"
#include "qarl/kernels/cuda/device.h"
#include "qarl/rl/tiny_model.h"
#include "gpu_test_util.h"
#include "test_util.h"

namespace qarl {
namespace {

TEST(GpuCli, CudaGenerateAndScoreAgreeBitwise) {
  SKIP_WITHOUT_GPU();
  test::TempDir d;
  const std::string m = d.path() + "/tiny";
  rl::write_tiny_checkpoint(m, test::fresh_seed());
  write_file_atomic(d.path() + "/p.jsonl", "{\"tokens\": [5, 17, 42, 9]}\n{\"tokens\": [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]}\n");
  auto g = test::run_qarl("generate --device cuda --model " + m + " --prompts " + d.path() +
                          "/p.jsonl --out " + d.path() + "/g.jsonl --temperature 0.8 --max-new-tokens 12 --ignore-eos --seed 7");
  ASSERT_EQ(g.exit_code, 0) << g.err;
  std::istringstream gl(read_file(d.path() + "/g.jsonl"));
  std::string seqs, line;
  std::vector<std::vector<float>> gen_lp;
  std::vector<size_t> plen;
  while (std::getline(gl, line)) {
    auto j = nlohmann::json::parse(line);
    std::vector<int32_t> t = j["prompt_tokens"].get<std::vector<int32_t>>();
    plen.push_back(t.size());
    for (int32_t x : j["tokens"].get<std::vector<int32_t>>()) t.push_back(x);
    seqs += nlohmann::json(t).dump() + "\n";
    gen_lp.push_back(j["logprobs"].get<std::vector<float>>());
  }
  ASSERT_EQ(gen_lp.size(), 2u);
  write_file_atomic(d.path() + "/s.jsonl", seqs);
  auto s = test::run_qarl("score --device cuda --temperature 0.8 --model " + m + " --tokens " + d.path() +
                          "/s.jsonl --out " + d.path() + "/lp.jsonl");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  std::istringstream sl(read_file(d.path() + "/lp.jsonl"));
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(std::getline(sl, line));
    const auto lp = nlohmann::json::parse(line)["logprobs"].get<std::vector<float>>();
    for (size_t k = 0; k < gen_lp[i].size(); ++k) {
      const float a = lp[plen[i] - 1 + k], b = gen_lp[i][k];
      EXPECT_EQ(0, std::memcmp(&a, &b, 4)) << "sequence " << i << " token " << k << ": " << a << " vs " << b;
    }
  }
}

// --kv-cache fp8 on the device (native codes) writes the same file as --kv-cache auto (bf16
// fake-quantized rows) with the same FP8 K/V recipe.
TEST(GpuCli, CudaGenerateNativeKvCacheWritesTheSameOutput) {
  SKIP_WITHOUT_GPU();
  test::TempDir d;
  const std::string m = d.path() + "/tiny";
  rl::write_tiny_checkpoint(m, test::fresh_seed());
  write_file_atomic(d.path() + "/fp8.yaml",
                    "quantize:\n  algorithm: max\n  quant_cfg:\n"
                    "    - {quantizer_name: '*', enable: false}\n"
                    "    - quantizer_name: '*[kv]_bmm_quantizer'\n"
                    "      enable: true\n"
                    "      cfg: {num_bits: e4m3, use_constant_amax: true}\n");
  write_file_atomic(d.path() + "/p.jsonl", "{\"tokens\": [5, 17, 42, 9]}\n{\"tokens\": [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8]}\n");
  std::string out[2];
  for (int i = 0; i < 2; ++i) {
    auto g = test::run_qarl("generate --device cuda --model " + m + " --recipe " + d.path() + "/fp8.yaml --prompts " +
                            d.path() + "/p.jsonl --out " + d.path() + "/g.jsonl --temperature 0.8 --n 2 " +
                            "--max-new-tokens 20 --ignore-eos --seed 3 --kv-cache " + (i ? "fp8" : "auto"));
    ASSERT_EQ(g.exit_code, 0) << g.err;
    out[i] = read_file(d.path() + "/g.jsonl");
  }
  EXPECT_EQ(out[0], out[1]);
  EXPECT_NE(out[0].find("logprobs"), std::string::npos);
}

TEST(GpuCli, DeviceCudaRefusals) {
  test::TempDir d;
  const std::string m = d.path() + "/tiny";
  rl::write_tiny_checkpoint(m, 1);
  write_file_atomic(d.path() + "/p.jsonl", "{\"tokens\": [5, 17]}\n");
  auto g = test::run_qarl("generate --device cuda --kv-cache nvfp4 --model " + m + " --prompts " + d.path() +
                          "/p.jsonl --out " + d.path() + "/g.jsonl");
  EXPECT_EQ(g.exit_code, 2) << g.err;
  if (kernels::gpu::available()) {  // native storage without NVFP4 K/V quantizers
    EXPECT_NE(g.err.find("--kv-cache nvfp4"), std::string::npos) << g.err;
  } else {  // CI: no device, a usage error that says why
    auto s = test::run_qarl("generate --device cuda --model " + m + " --prompts " + d.path() +
                            "/p.jsonl --out " + d.path() + "/g.jsonl");
    EXPECT_EQ(s.exit_code, 2) << s.err;
    EXPECT_NE(s.err.find("--device cuda"), std::string::npos) << s.err;
  }
}

}  // namespace
}  // namespace qarl
