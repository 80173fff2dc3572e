// qarl's quantizers against golden values computed with PyTorch on an H200
// (tests/data/quant/make_golden.py): PyTorch's own float8_e4m3fn conversions, the ModelOpt
// formulas in torch ops (CUDA), and ModelOpt's NVFP4 Triton kernel operations run by Triton.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "qarl/core/fs.h"
#include "qarl/quant/fake_quant.h"
#include "qarl/quant/formats.h"
#include "test_util.h"

namespace qarl::quant {
namespace {

// A minimal safetensors reader for this test's one file (the io component's reader is the
// real one; this keeps the golden test independent of it).
struct Golden {
  std::map<std::string, Tensor> t;
  std::map<std::string, std::string> meta;
};

const Golden& golden() {
  static const Golden g = [] {
    Golden g;
    std::string bytes = read_file(test::data_path("quant/golden.safetensors"));
    uint64_t hlen;
    std::memcpy(&hlen, bytes.data(), 8);
    auto header = nlohmann::json::parse(bytes.substr(8, hlen));
    const char* data = bytes.data() + 8 + hlen;
    for (auto& [name, v] : header.items()) {
      if (name == "__metadata__") {
        for (auto& [k, mv] : v.items()) g.meta[k] = mv.get<std::string>();
        continue;
      }
      DType dt = *dtype_from_name(v["dtype"].get<std::string>());
      Shape shape = v["shape"].get<Shape>();
      uint64_t b = v["data_offsets"][0], e = v["data_offsets"][1];
      Tensor t = Tensor::empty(shape, dt);
      EXPECT_EQ(e - b, t.nbytes()) << name;
      std::memcpy(t.data(), data + b, t.nbytes());
      g.t[name] = t;
    }
    return g;
  }();
  return g;
}

const Tensor& get(const std::string& name) {
  auto it = golden().t.find(name);
  if (it == golden().t.end()) throw std::runtime_error("golden tensor missing: " + name);
  return it->second;
}

::testing::AssertionResult same_bits(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape())
    return ::testing::AssertionFailure() << "dtype/shape differ";
  if (std::memcmp(a.data(), b.data(), a.nbytes()) == 0) return ::testing::AssertionSuccess();
  std::vector<float> va = a.to_f32_vector(), vb = b.to_f32_vector();
  int bad = 0;
  std::string first;
  for (size_t i = 0; i < va.size(); ++i)
    if (fbits(va[i]) != fbits(vb[i])) {
      if (!bad++) first = std::to_string(i) + ": " + std::to_string(va[i]) + " vs " + std::to_string(vb[i]);
    }
  return ::testing::AssertionFailure() << bad << " elements differ, first " << first;
}

TEST(QuantGolden, Provenance) {
  const auto& m = golden().meta;
  ASSERT_TRUE(m.count("device_name"));
  EXPECT_EQ(m.at("device_name"), "NVIDIA H200");
  // Recorded facts the implementation relies on (docs/quantization.md).
  EXPECT_EQ(m.at("cuda_cpu_agree"), "true");
  EXPECT_EQ(m.at("gs_cuda_eq_recip_mul"), m.at("gs_samples"));
  EXPECT_EQ(m.at("triton_div_vs_a_times_rcp_mismatch"), "0");
  EXPECT_EQ(m.at("triton_rcp_scaling_mismatch"), "0");
}

TEST(QuantGolden, E4M3EveryCodeDecodedAsPyTorch) {
  std::vector<float> want = get("e4m3.decoded").to_f32_vector();
  ASSERT_EQ(want.size(), 256u);
  for (int c = 0; c < 256; ++c) {
    float v = e4m3_decode(uint8_t(c));
    if (std::isnan(want[size_t(c)])) EXPECT_TRUE(std::isnan(v)) << c;
    else EXPECT_EQ(fbits(v), fbits(want[size_t(c)])) << c;
  }
}

TEST(QuantGolden, E4M3MidpointsEncodedAsPyTorch) {
  std::vector<float> x = get("e4m3.mid.x").to_f32_vector();
  const Tensor& codes = get("e4m3.mid.code");
  ASSERT_EQ(size_t(codes.numel()), x.size());
  const uint8_t* c = codes.data_as<uint8_t>();
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(int(e4m3_encode(x[i])), int(c[i])) << "x = " << x[i];
    EXPECT_EQ(fbits(e4m3_round(x[i])), fbits(e4m3_decode(c[i]))) << "x = " << x[i];
  }
}

TEST(QuantGolden, FakeQuantMatchesBitForBit) {
  std::vector<float> amax = get("amax").to_f32_vector();
  int triton_differs = 0;
  for (const char* dt : {"f32", "bf16"}) {
    const Tensor& x = get(std::string("input.") + dt);
    for (size_t k = 0; k < amax.size(); ++k) {
      std::string suffix = std::string(dt) + "." + std::to_string(k);
      SCOPED_TRACE(suffix + " amax " + std::to_string(amax[k]));
      EXPECT_TRUE(same_bits(fake_quant_fp8(x, amax[k]), get("fp8." + suffix)));
      // torch ops (IEEE division) on CUDA
      EXPECT_TRUE(same_bits(fake_quant_nvfp4(x, amax[k], Nvfp4Division::kIeee), get("nvfp4." + suffix)));
      // ModelOpt's Triton kernel (stored only where it differs from the torch ops)
      bool has = golden().t.count("nvfp4." + suffix + ".triton") > 0;
      triton_differs += has;
      const Tensor& tri = has ? get("nvfp4." + suffix + ".triton") : get("nvfp4." + suffix);
      EXPECT_TRUE(same_bits(fake_quant_nvfp4(x, amax[k]), tri));
    }
  }
  EXPECT_GT(triton_differs, 0);  // the data does exercise the Triton/IEEE difference
}

}  // namespace
}  // namespace qarl::quant
