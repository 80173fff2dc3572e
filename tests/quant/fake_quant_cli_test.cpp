// `qarl fake-quant` end to end: the golden inputs through the binary reproduce the
// PyTorch / Triton outputs bit for bit; other dtypes are copied; errors and exit codes.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <fmt/format.h>

#include "qarl/io/safetensors.h"
#include "qarl/quant/fake_quant.h"
#include "test_util.h"

namespace qarl::quant {
namespace {

const io::SafetensorsFile& golden_file() {
  static const io::SafetensorsFile f =
      io::SafetensorsFile::open(test::data_path("quant/golden.safetensors"));
  return f;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

// Input file: both golden inputs, an integer tensor and a U8 tensor (copied unchanged).
std::string write_input(const test::TempDir& dir) {
  const auto& g = golden_file();
  std::vector<int32_t> iv = {1, -2, 3, 7};
  Tensor ints = Tensor::empty({4}, DType::I32);
  std::memcpy(ints.data(), iv.data(), 16);
  Tensor bytes = Tensor::zeros({3}, DType::U8);
  bytes.data_as<uint8_t>()[1] = 0xab;
  std::string path = dir.file("in.safetensors");
  io::save_safetensors(path, {{"input.f32", g.get("input.f32")}, {"ids", ints},
                              {"input.bf16", g.get("input.bf16")}, {"raw", bytes}},
                       {{"note", "golden inputs"}});
  return path;
}

TEST(FakeQuantCli, ReproducesGoldenOutputsBitForBit) {
  test::TempDir dir;
  std::string in = write_input(dir);
  const auto& g = golden_file();
  std::vector<float> amax = g.get("amax").to_f32_vector();
  for (size_t k : {size_t(0), size_t(3), size_t(4), size_t(5), size_t(7), size_t(8)}) {
    const std::string a = fmt::format("{}", amax[k]);
    for (const char* mode : {"fp8", "nvfp4", "nvfp4-ieee"}) {
      SCOPED_TRACE(std::string(mode) + " amax " + a);
      std::string out = dir.file(std::string(mode) + std::to_string(k) + ".safetensors");
      std::string fmt_arg = std::string(mode) == "fp8" ? "fp8" : "nvfp4";
      std::string extra = std::string(mode) == "nvfp4-ieee" ? " --nvfp4-division ieee" : "";
      auto r = test::run_qarl("fake-quant --format " + fmt_arg + " --amax " + a + " --in " + in +
                              " --out " + out + extra);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      io::SafetensorsFile f = io::SafetensorsFile::open(out);
      ASSERT_EQ(f.tensors().size(), 4u);
      EXPECT_EQ(f.metadata().at("note"), "golden inputs");
      for (const char* dt : {"f32", "bf16"}) {
        std::string key = std::string(mode) == "fp8" ? "fp8." : "nvfp4.";
        key += std::string(dt) + "." + std::to_string(k);
        if (std::string(mode) == "nvfp4" && g.contains(key + ".triton")) key += ".triton";
        EXPECT_TRUE(same_bytes(f.get(std::string("input.") + dt), g.get(key))) << key;
      }
      Tensor ids = f.get("ids");
      EXPECT_EQ(ids.dtype(), DType::I32);
      EXPECT_EQ(std::vector<int32_t>(ids.data_as<int32_t>(), ids.data_as<int32_t>() + 4),
                (std::vector<int32_t>{1, -2, 3, 7}));
      EXPECT_EQ(f.get("raw").data_as<uint8_t>()[1], 0xab);
    }
  }
}

TEST(FakeQuantCli, ConstantAmaxIsAmax448) {
  test::TempDir dir;
  std::string in = write_input(dir);
  auto r = test::run_qarl("fake-quant --format fp8 --constant-amax --in " + in + " --out " +
                          dir.file("c.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  io::SafetensorsFile f = io::SafetensorsFile::open(dir.file("c.safetensors"));
  Tensor x = golden_file().get("input.bf16");
  EXPECT_TRUE(same_bytes(f.get("input.bf16"), fake_quant_fp8(x, 448.0f)));
}

TEST(FakeQuantCli, Errors) {
  test::TempDir dir;
  std::string in = write_input(dir);
  std::string out = dir.file("o.safetensors");
  // usage: no amax, both, negative, not a number, bad format
  for (const char* args : {"--format fp8", "--format fp8 --amax 1 --constant-amax",
                           "--format fp8 --amax -1", "--format fp8 --amax abc",
                           "--format int8 --amax 1", "--format fp8 --amax inf"}) {
    auto r = test::run_qarl(std::string("fake-quant ") + args + " --in " + in + " --out " + out);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.err;
  }
  // input: NVFP4 needs the last dim % 16 == 0; the error names the tensor; nothing written
  Tensor bad = Tensor::zeros({2, 24}, DType::BF16);
  io::save_safetensors(dir.file("bad.safetensors"), {{"model.k_proj", bad}});
  auto r = test::run_qarl("fake-quant --format nvfp4 --amax 1 --in " + dir.file("bad.safetensors") +
                          " --out " + out);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("model.k_proj"), std::string::npos) << r.err;
  EXPECT_FALSE(std::ifstream(out).good());
  auto r2 = test::run_qarl("fake-quant --format fp8 --amax 1 --in " + dir.file("missing.safetensors") +
                           " --out " + out);
  EXPECT_NE(r2.exit_code, 0);
}

}  // namespace
}  // namespace qarl::quant
