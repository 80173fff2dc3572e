// CUDA fake quant and KV codecs against the CPU reference (qarl/quant), bitwise. The GPU
// cases skip, with the reason, where no CUDA device is usable (CI); the argument checks run
// everywhere.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/core/half.h"
#include "qarl/kernels/cuda/device.h"
#include "qarl/kernels/cuda/fake_quant.h"
#include "qarl/quant/fake_quant.h"
#include "test_util.h"

namespace qarl {
namespace {

namespace gpu = kernels::gpu;

// Random values with the awkward ones mixed in: zeros (both signs), infinities, NaN, huge
// and tiny (E4M3-subnormal and fp32-subnormal) magnitudes, exact E2M1 ladder midpoints.
std::vector<float> nasty_values(size_t n, uint64_t seed, float scale) {
  std::vector<float> v = test::random_normal(n, scale, seed);
  std::mt19937_64 rng(seed ^ 0x5eedu);
  const float specials[] = {0.0f, -0.0f, std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(),
                            -std::numeric_limits<float>::quiet_NaN(), 1e30f, -3e38f, 1e-40f,
                            -1.5e-3f, 0.25f, 0.75f, 1.25f, 2.5f, 3.5f, 5.0f, 448.0f, 464.0f};
  for (size_t i = 0; i < n; ++i)
    if (rng() % 23 == 0) v[i] = specials[rng() % std::size(specials)];
  return v;
}

Tensor poisoned_like(const Tensor& x) {  // CUDA tensor full of 0xff bytes
  Tensor p = Tensor::empty(x.shape(), x.dtype());
  std::memset(p.data(), 0xff, p.nbytes());
  return p.to_device(Device::CUDA);
}
Tensor poisoned_bytes(Shape s) {
  Tensor p = Tensor::empty(std::move(s), DType::U8);
  std::memset(p.data(), 0xa5, p.nbytes());
  return p.to_device(Device::CUDA);
}

// Bitwise equality with the first differing element named.
::testing::AssertionResult same_bits(const Tensor& got_any, const Tensor& want) {
  Tensor got = got_any.device() == Device::CPU ? got_any : got_any.to_device(Device::CPU);
  if (got.dtype() != want.dtype() || got.shape() != want.shape())
    return ::testing::AssertionFailure() << "dtype/shape differ: " << shape_str(got.shape())
                                         << " vs " << shape_str(want.shape());
  const size_t es = dtype_size(got.dtype());
  const auto* a = static_cast<const unsigned char*>(got.data());
  const auto* b = static_cast<const unsigned char*>(want.data());
  for (int64_t i = 0; i < got.numel(); ++i) {
    if (std::memcmp(a + i * es, b + i * es, es) != 0) {
      std::vector<float> ga = got.reshape({got.numel()}).narrow0(i, 1).to_f32_vector();
      std::vector<float> wa = want.reshape({want.numel()}).narrow0(i, 1).to_f32_vector();
      uint64_t ua = 0, ub = 0;
      std::memcpy(&ua, a + i * es, es);
      std::memcpy(&ub, b + i * es, es);
      return ::testing::AssertionFailure()
             << fmt::format("element {} of {}: got {} ({:#x}) want {} ({:#x})", i, got.numel(),
                            ga[0], ua, wa[0], ub);
    }
  }
  return ::testing::AssertionSuccess();
}

float amax_of(const std::vector<float>& v) {
  float m = 0;
  for (float f : v) if (std::isfinite(f)) m = std::max(m, std::fabs(f));
  return m;
}

const DType kDtypes[] = {DType::F32, DType::BF16, DType::F16};
const quant::Nvfp4Division kDivisions[] = {quant::Nvfp4Division::kTriton,
                                           quant::Nvfp4Division::kIeee};

struct Case { Shape shape; float scale; };
// Sizes that are not multiples of anything (NVFP4 needs the last dim % 16 == 0), plus one
// large enough to use the whole grid with several grid-stride iterations.
const Case kFp8Cases[] = {{{1}, 1.f}, {{7}, 3.f}, {{13, 37}, 1.f}, {{3, 5, 129}, 100.f},
                          {{1001, 96}, 0.01f}, {{4099, 257}, 10.f}};
const Case kNvfp4Cases[] = {{{1, 16}, 1.f}, {{7, 48}, 3.f}, {{13, 80}, 1.f}, {{3, 5, 144}, 100.f},
                            {{1001, 112}, 0.01f}, {{4099, 256}, 10.f}};

std::vector<float> amaxes_for(const std::vector<float>& v) {
  float a = amax_of(v);
  return {a, 448.0f, 0.0f, 5.9604644775390625e-08f, 1e-30f, 1e30f, a * 0.1f, -2.0f};
}

TEST(CudaFakeQuant, Fp8MatchesCpuBitwise) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  int k = 0;
  for (const Case& c : kFp8Cases)
    for (DType dt : kDtypes) {
      std::vector<float> v = nasty_values(size_t(shape_numel(c.shape)), seed + k++, c.scale);
      Tensor x = Tensor::from_f32(v, c.shape, dt);
      Tensor xd = x.to_device(Device::CUDA);
      for (float amax : amaxes_for(v)) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " " << shape_str(c.shape)
                                          << " amax " << amax);
        Tensor y = poisoned_like(x);
        gpu::fake_quant_fp8(xd, amax, y);
        EXPECT_TRUE(same_bits(y, quant::fake_quant_fp8(x, amax)));
      }
    }
}

TEST(CudaFakeQuant, Nvfp4MatchesCpuBitwise) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  int k = 0;
  for (const Case& c : kNvfp4Cases)
    for (DType dt : kDtypes) {
      std::vector<float> v = nasty_values(size_t(shape_numel(c.shape)), seed + k++, c.scale);
      // A block of zeros, one all-equal block and one with a single outlier.
      for (int i = 0; i < 16 && 48 + i < int(v.size()); ++i) {
        if (i < int(v.size())) v[i] = 0.0f;
        if (16 + i < int(v.size())) v[16 + i] = -0.375f * c.scale;
        if (32 + i < int(v.size())) v[32 + i] = i == 5 ? 1000.f * c.scale : 0.001f * c.scale;
      }
      Tensor x = Tensor::from_f32(v, c.shape, dt);
      Tensor xd = x.to_device(Device::CUDA);
      for (float amax : amaxes_for(v))
        for (auto div : kDivisions) {
          SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " " << shape_str(c.shape)
                                            << " amax " << amax << " " << quant::division_name(div));
          Tensor y = poisoned_like(x);
          gpu::fake_quant_nvfp4(xd, amax, y, nullptr, div);
          EXPECT_TRUE(same_bits(y, quant::fake_quant_nvfp4(x, amax, div)));
        }
    }
}

// Views whose data pointer is not 16-byte aligned take the scalar kernels; in-place works.
TEST(CudaFakeQuant, MisalignedViewsAndInPlace) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  for (DType dt : kDtypes) {
    SCOPED_TRACE(dtype_name(dt));
    std::vector<float> v = nasty_values(16 * 301 + 1, seed, 2.0f);
    Tensor x = Tensor::from_f32(v, {int64_t(v.size())}, dt);
    Tensor xv = x.narrow0(1, 16 * 301);  // offset of one element
    Tensor xd = x.to_device(Device::CUDA).narrow0(1, 16 * 301);
    Tensor yd = poisoned_like(x).narrow0(1, 16 * 301);
    const float amax = amax_of(v);
    gpu::fake_quant_fp8(xd, amax, yd);
    EXPECT_TRUE(same_bits(yd, quant::fake_quant_fp8(xv, amax)));
    gpu::fake_quant_nvfp4(xd, amax, yd);
    EXPECT_TRUE(same_bits(yd, quant::fake_quant_nvfp4(xv, amax)));
    Tensor inplace = xv.clone().to_device(Device::CUDA);
    gpu::fake_quant_nvfp4(inplace, amax, inplace);
    EXPECT_TRUE(same_bits(inplace, quant::fake_quant_nvfp4(xv, amax)));
    gpu::fake_quant_fp8(inplace, amax, inplace);
    EXPECT_TRUE(same_bits(inplace, quant::fake_quant_fp8(quant::fake_quant_nvfp4(xv, amax), amax)));
  }
}

TEST(CudaFakeQuant, BackwardMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  for (DType dt : kDtypes) {
    SCOPED_TRACE(dtype_name(dt));
    std::vector<float> xv = nasty_values(3 * 333, seed, 4.0f);
    std::vector<float> gv = test::random_normal(xv.size(), 1.0f, seed + 1);
    Tensor x = Tensor::from_f32(xv, {3, 333}, dt), dy = Tensor::from_f32(gv, {3, 333}, dt);
    Tensor xd = x.to_device(Device::CUDA), dyd = dy.to_device(Device::CUDA);
    for (float amax : {amax_of(xv) * 0.5f, 448.0f, 0.0f}) {
      for (bool pass : {true, false}) {
        Tensor dx = poisoned_like(dy);
        gpu::fake_quant_backward(dyd, xd, amax, pass, dx);
        EXPECT_TRUE(same_bits(dx, quant::fake_quant_backward(dy, x, amax, pass)))
            << "amax " << amax << " pass_through " << pass;
      }
    }
  }
}

TEST(CudaKvCodec, Fp8EncodeDecodeMatchCpuAndFakeQuant) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  for (DType dt : kDtypes) {
    std::vector<float> v = nasty_values(37 * 41, seed, 3.0f);
    Tensor x = Tensor::from_f32(v, {37, 41}, dt);
    Tensor xd = x.to_device(Device::CUDA);
    for (float amax : {amax_of(v), 448.0f, 0.0f, 1e-3f}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " amax " << amax);
      Tensor codes = poisoned_bytes({37, 41});
      gpu::encode_fp8(xd, amax, codes);
      Tensor want_codes = Tensor::empty({37, 41}, DType::U8);
      quant::encode_fp8_row(x.data(), dt, x.numel(), quant::fp8_scales(amax),
                            want_codes.data_as<uint8_t>());
      EXPECT_TRUE(same_bits(codes, want_codes));
      Tensor y = poisoned_like(x);
      gpu::decode_fp8(codes, amax, y);
      EXPECT_TRUE(same_bits(y, quant::fake_quant_fp8(x, amax)));
      Tensor yf = poisoned_like(x);
      gpu::fake_quant_fp8(xd, amax, yf);
      EXPECT_TRUE(same_bits(y, yf.to_device(Device::CPU)));
    }
  }
}

TEST(CudaKvCodec, Nvfp4EncodeDecodeMatchCpuAndFakeQuant) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  for (DType dt : kDtypes) {
    std::vector<float> v = nasty_values(29 * 112, seed, 3.0f);
    Tensor x = Tensor::from_f32(v, {29, 112}, dt);
    Tensor xd = x.to_device(Device::CUDA);
    for (float amax : {amax_of(v), 448.0f, 0.0f, 1e-3f})
      for (auto div : kDivisions) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " amax " << amax << " "
                                          << quant::division_name(div));
        Tensor packed = poisoned_bytes({29, 56}), scales = poisoned_bytes({29, 7});
        gpu::encode_nvfp4(xd, amax, packed, scales, nullptr, div);
        Tensor want_p = Tensor::empty({29, 56}, DType::U8), want_s = Tensor::empty({29, 7}, DType::U8);
        quant::encode_nvfp4_row(x.data(), dt, x.numel(), quant::nvfp4_scales(amax, div),
                                want_p.data_as<uint8_t>(), want_s.data_as<uint8_t>());
        EXPECT_TRUE(same_bits(packed, want_p));
        EXPECT_TRUE(same_bits(scales, want_s));
        Tensor y = poisoned_like(x);
        gpu::decode_nvfp4(packed, scales, amax, y);
        EXPECT_TRUE(same_bits(y, quant::fake_quant_nvfp4(x, amax, div)));
      }
  }
}

// Against PyTorch / ModelOpt's Triton kernel as run on an H200 (tests/data/quant/golden.*,
// made by tests/data/quant/make_golden.py): an independent check of the GPU kernels.
std::map<std::string, Tensor> read_golden() {
  std::string bytes = read_file(test::data_path("quant/golden.safetensors"));
  uint64_t hlen;
  std::memcpy(&hlen, bytes.data(), 8);
  auto header = nlohmann::json::parse(bytes.substr(8, hlen));
  const char* data = bytes.data() + 8 + hlen;
  std::map<std::string, Tensor> out;
  for (auto& [name, v] : header.items()) {
    if (name == "__metadata__") continue;
    Tensor t = Tensor::empty(v["shape"].get<Shape>(), *dtype_from_name(v["dtype"].get<std::string>()));
    std::memcpy(t.data(), data + v["data_offsets"][0].get<uint64_t>(), t.nbytes());
    out[name] = t;
  }
  return out;
}

TEST(CudaFakeQuant, MatchesPyTorchAndTritonGolden) {
  SKIP_WITHOUT_GPU();
  auto g = read_golden();
  std::vector<float> amax = g.at("amax").to_f32_vector();
  for (const char* dt : {"f32", "bf16"}) {
    Tensor x = g.at(std::string("input.") + dt).to_device(Device::CUDA);
    for (size_t k = 0; k < amax.size(); ++k) {
      std::string suffix = std::string(dt) + "." + std::to_string(k);
      SCOPED_TRACE(suffix + " amax " + std::to_string(amax[k]));
      EXPECT_TRUE(same_bits(gpu::fake_quant_fp8(x, amax[k]), g.at("fp8." + suffix)));
      EXPECT_TRUE(same_bits(gpu::fake_quant_nvfp4(x, amax[k], quant::Nvfp4Division::kIeee),
                            g.at("nvfp4." + suffix)));
      auto tri = g.find("nvfp4." + suffix + ".triton");
      EXPECT_TRUE(same_bits(gpu::fake_quant_nvfp4(x, amax[k]),
                            tri != g.end() ? tri->second : g.at("nvfp4." + suffix)));
    }
  }
}

// Runs without a GPU too: bad arguments are rejected before any CUDA call.
TEST(CudaFakeQuant, RejectsBadArguments) {
  Tensor cpu = Tensor::from_f32(std::vector<float>(32, 1.0f), {2, 16});
  EXPECT_THROW(gpu::fake_quant_fp8(cpu, 1.0f, cpu), Error);  // not a CUDA tensor
  EXPECT_THROW(gpu::fake_quant_nvfp4(cpu, 1.0f, cpu), Error);
  if (!gpu::available()) return;
  Tensor odd = Tensor::from_f32(std::vector<float>(24, 1.0f), {2, 12}).to_device(Device::CUDA);
  EXPECT_THROW(gpu::fake_quant_nvfp4(odd, 1.0f), Error);  // last dim not a multiple of 16
  Tensor ok = cpu.to_device(Device::CUDA);
  EXPECT_THROW(gpu::fake_quant_fp8(ok, std::numeric_limits<float>::infinity()), Error);
  Tensor wrong = Tensor::empty({2, 16}, DType::BF16, Device::CUDA);
  EXPECT_THROW(gpu::fake_quant_fp8(ok, 1.0f, wrong), Error);  // dtype differs
}

}  // namespace
}  // namespace qarl
