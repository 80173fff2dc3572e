// Fake-quant kernels: every SIMD path, every entry point (tensor, row, native encode+decode)
// bitwise equal to the scalar reference; amax edge cases; degenerate NVFP4 blocks; FP8
// idempotence; backward.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "qarl/core/error.h"
#include "qarl/core/half.h"
#include "qarl/quant/fake_quant.h"
#include "qarl/quant/formats.h"
#include "qarl/quant/triton_rcp.h"
#include "test_util.h"

namespace qarl::quant {
namespace {

// Bitwise equality, except that any two NaNs of the same sign count as equal.
::testing::AssertionResult bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape())
    return ::testing::AssertionFailure() << "dtype/shape differ";
  std::vector<float> va = a.to_f32_vector(), vb = b.to_f32_vector();
  for (size_t i = 0; i < va.size(); ++i) {
    bool nan_ok = std::isnan(va[i]) && std::isnan(vb[i]) && std::signbit(va[i]) == std::signbit(vb[i]);
    if (fbits(va[i]) != fbits(vb[i]) && !nan_ok)
      return ::testing::AssertionFailure() << "element " << i << ": " << va[i] << " vs " << vb[i];
  }
  return ::testing::AssertionSuccess();
}

std::vector<const char*> supported_isas() {
  std::vector<const char*> out;
  for (const char* isa : {"scalar", "avx2", "avx512"}) {
    try {
      set_fake_quant_isa(isa);
      out.push_back(isa);
    } catch (const Error&) {
    }
  }
  set_fake_quant_isa("auto");
  return out;
}

// Random data with a spread of magnitudes, zeros, exact E2M1/E4M3 tie points and outliers.
Tensor random_input(Shape shape, DType dt, uint64_t seed, float scale) {
  int64_t n = shape_numel(shape);
  std::vector<float> v = test::random_normal(size_t(n), scale, seed);
  std::mt19937_64 g(seed ^ 0x9e3779b97f4a7c15ull);
  for (int64_t i = 0; i < n; ++i) {
    switch (g() % 16) {
      case 0: v[i] = 0.0f; break;
      case 1: v[i] *= 100.0f; break;                  // outliers
      case 2: v[i] = std::ldexp(v[i], -20); break;    // tiny
      case 3: v[i] = float(int(g() % 13) - 6) * 0.25f * scale; break;  // grid-ish points
      default: break;
    }
  }
  return Tensor::from_f32(v, shape, dt);
}

TEST(FakeQuant, AllPathsMatchReferenceBitwise) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  const Shape shapes[] = {{37, 160}, {3, 5, 48}, {1, 16}, {7, 1008}};
  int round = 0;
  for (const char* isa : supported_isas()) {
    set_fake_quant_isa(isa);
    for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
      for (const Shape& shape : shapes) {
        for (float amax : {0.0f, 5.9604644775390625e-08f, 1e-30f, 0.37f, 3.0f, 448.0f, 1e30f}) {
          SCOPED_TRACE(testing::Message() << isa << " " << dtype_name(dt) << " "
                                          << shape_str(shape) << " amax " << amax);
          float scale = dt == DType::F16 ? 1.0f : (round % 3 == 0 ? 1e-3f : 2.0f);
          Tensor x = random_input(shape, dt, seed + uint64_t(round++), scale);
          // FP8
          Tensor ref8 = fake_quant_fp8_reference(x, amax);
          EXPECT_TRUE(bitwise_equal(fake_quant_fp8(x, amax), ref8));
          // NVFP4, IEEE division (checked fully below for the default, Triton's).
          EXPECT_TRUE(bitwise_equal(fake_quant_nvfp4(x, amax, Nvfp4Division::kIeee),
                                    fake_quant_nvfp4_reference(x, amax, Nvfp4Division::kIeee)));
          Tensor ref4 = fake_quant_nvfp4_reference(x, amax);
          EXPECT_TRUE(bitwise_equal(fake_quant_nvfp4(x, amax), ref4));
          // In place.
          Tensor y = x.clone();
          fake_quant_(y, Format::NVFP4, amax);
          EXPECT_TRUE(bitwise_equal(y, ref4));
          // Row by row, into poisoned outputs.
          int64_t last = x.dim(-1), rows = x.numel() / last;
          size_t es = dtype_size(dt);
          Tensor r8 = Tensor::empty(x.shape(), dt), r4 = Tensor::empty(x.shape(), dt);
          std::memset(r8.data(), 0xa5, r8.nbytes());
          std::memset(r4.data(), 0xa5, r4.nbytes());
          for (int64_t r = 0; r < rows; ++r) {
            const char* in = static_cast<const char*>(x.data()) + r * last * es;
            fake_quant_fp8_row(in, static_cast<char*>(r8.data()) + r * last * es, last, dt,
                               fp8_scales(amax));
            fake_quant_nvfp4_row(in, static_cast<char*>(r4.data()) + r * last * es, last, dt,
                                 nvfp4_scales(amax));
          }
          EXPECT_TRUE(bitwise_equal(r8, ref8));
          EXPECT_TRUE(bitwise_equal(r4, ref4));
          // Native encode -> decode.
          int64_t n = x.numel();
          std::vector<uint8_t> codes(static_cast<size_t>(n)), packed(static_cast<size_t>(n / 2)),
              scales(static_cast<size_t>(n / 16));
          Tensor d8 = Tensor::empty(x.shape(), dt), d4 = Tensor::empty(x.shape(), dt);
          encode_fp8_row(x.data(), dt, n, fp8_scales(amax), codes.data());
          decode_fp8_row(codes.data(), n, fp8_scales(amax).inv_scale, d8.data(), dt);
          EXPECT_TRUE(bitwise_equal(d8, ref8));
          const Nvfp4Scales sc = nvfp4_scales(amax);
          encode_nvfp4_row(x.data(), dt, n, sc, packed.data(), scales.data());
          decode_nvfp4_row(packed.data(), scales.data(), n, sc.global_scale, d4.data(), dt);
          EXPECT_TRUE(bitwise_equal(d4, ref4));
          const Nvfp4Scales si = nvfp4_scales(amax, Nvfp4Division::kIeee);
          encode_nvfp4_row(x.data(), dt, n, si, packed.data(), scales.data());
          decode_nvfp4_row(packed.data(), scales.data(), n, si.global_scale, d4.data(), dt);
          EXPECT_TRUE(bitwise_equal(d4, fake_quant_nvfp4_reference(x, amax, Nvfp4Division::kIeee)));
        }
      }
    }
  }
  set_fake_quant_isa("auto");
}

TEST(FakeQuant, Fp8FormulaAndConstantAmax) {
  Fp8Scales sc = fp8_scales(3.0f);
  EXPECT_EQ(sc.scale, 448.0f / 3.0f);
  EXPECT_EQ(sc.inv_scale, 1.0f / (448.0f / 3.0f));
  // amax <= 2^-24 (incl. 0 and negatives) is treated as 1.
  for (float a : {0.0f, 5.9604644775390625e-08f, -5.0f}) EXPECT_EQ(fp8_scales(a).scale, 448.0f);
  EXPECT_NE(fp8_scales(std::nextafter(5.9604644775390625e-08f, 1.0f)).scale, 448.0f);
  // Constant amax: scale 1, y = e4m3(x) exactly.
  Tensor x = Tensor::from_f32(std::vector<float>{0.1f, -1.3f, 500.0f, -1e9f, 0.0f, 3.3e-3f},
                              {6}, DType::BF16);
  Tensor y = fake_quant_fp8(x, kFp8ConstantAmax);
  std::vector<float> xv = x.to_f32_vector(), yv = y.to_f32_vector();
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_EQ(yv[i], e4m3_decode(e4m3_encode(xv[i])));
  EXPECT_EQ(yv[2], 448.0f);
  EXPECT_EQ(yv[3], -448.0f);
}

TEST(FakeQuant, NonFiniteAmaxIsAnError) {
  Tensor x = Tensor::zeros({2, 16}, DType::F32);
  for (float a : {INFINITY, -INFINITY, NAN}) {
    EXPECT_THROW(fake_quant_fp8(x, a), Error);
    EXPECT_THROW(fake_quant_nvfp4(x, a), Error);
  }
}

TEST(FakeQuant, Nvfp4LastDimMustBeMultipleOf16) {
  Tensor x = Tensor::zeros({4, 24}, DType::BF16);
  EXPECT_THROW(fake_quant_nvfp4(x, 1.0f), Error);
  EXPECT_THROW(fake_quant_nvfp4(Tensor::scalar(1.0f), 1.0f), Error);
  EXPECT_NO_THROW(fake_quant_fp8(x, 1.0f));
  Tensor i32 = Tensor::zeros({16}, DType::I32);
  EXPECT_THROW(fake_quant_fp8(i32, 1.0f), Error);
}

TEST(FakeQuant, Nvfp4DegenerateBlocks) {
  // Block 0: all zeros. Block 1: one outlier. Block 2: all equal. Block 3: so small that the
  // E4M3 block scale is 0 (HEAD: zeros, sign of x kept). v[64..80): tiny non-zero S.
  std::vector<float> v(80, 0.0f);
  for (int i = 16; i < 32; ++i) v[i] = 0.01f * float(i - 16);
  v[20] = 100.0f;
  for (int i = 32; i < 48; ++i) v[i] = -0.7f;
  for (int i = 48; i < 64; ++i) v[i] = (i % 2 ? -1.0f : 1.0f) * 1e-9f;
  for (int i = 64; i < 80; ++i) v[i] = float(i - 63) * 2e-6f;
  Tensor x = Tensor::from_f32(v, {80}, DType::F32);
  const float amax = 100.0f;
  EXPECT_TRUE(bitwise_equal(fake_quant_nvfp4(x, amax), fake_quant_nvfp4_reference(x, amax)));
  // The explicit expectations below use IEEE division.
  Tensor y = fake_quant_nvfp4(x, amax, Nvfp4Division::kIeee);
  EXPECT_TRUE(bitwise_equal(y, fake_quant_nvfp4_reference(x, amax, Nvfp4Division::kIeee)));
  std::vector<float> yv = y.to_f32_vector();
  float gs = nvfp4_global_scale(amax);
  for (int i = 0; i < 16; ++i) EXPECT_TRUE(fbits(yv[i]) == 0u) << i;
  // outlier block: S = e4m3(100/(6gs)) * gs, the outlier maps to 6*S, the rest to 0.
  float S1 = e4m3_round(100.0f / (6.0f * gs)) * gs;
  EXPECT_EQ(yv[20], 6.0f * S1);
  EXPECT_EQ(yv[17], 0.0f);
  // all equal: every element the same value, close to -0.7
  for (int i = 32; i < 48; ++i) EXPECT_EQ(yv[i], yv[32]);
  EXPECT_NEAR(yv[32], -0.7f, 0.7f * 0.1f);
  // S == 0: zeros; negative inputs give -0.0 (x >= 0 ? v : -v with v = 6*0).
  ASSERT_EQ(e4m3_round(1e-9f / (6.0f * gs)), 0.0f);
  for (int i = 48; i < 64; ++i) {
    EXPECT_EQ(yv[i], 0.0f);
    EXPECT_EQ(std::signbit(yv[i]), v[i] < 0) << i;
  }
  // Triton (ModelOpt's kernel) negates as 0 - v: the zeros are all +0.
  std::vector<float> tv0 = fake_quant_nvfp4(x, amax).to_f32_vector();
  for (int i = 48; i < 64; ++i) EXPECT_EQ(fbits(tv0[i]), 0u) << i;
  // Tiny non-zero S (below the pin's 1e-5 guard) still quantizes normally (HEAD): with
  // amax 1, gs = 1/2688 and a block max of 32e-6 gives S ~ 5e-6.
  Tensor t = Tensor::from_f32(std::vector<float>(v.begin() + 64, v.end()), {16}, DType::F32);
  Tensor ty = fake_quant_nvfp4(t, 1.0f, Nvfp4Division::kIeee);
  EXPECT_TRUE(bitwise_equal(ty, fake_quant_nvfp4_reference(t, 1.0f, Nvfp4Division::kIeee)));
  float g1 = nvfp4_global_scale(1.0f);
  float S4 = e4m3_round(32e-6f / (6.0f * g1)) * g1;
  ASSERT_GT(S4, 0.0f);
  ASSERT_LT(S4, 1e-5f);
  std::vector<float> tv = ty.to_f32_vector();
  EXPECT_EQ(tv[15], 6.0f * S4);
  EXPECT_GT(tv[8], 0.0f);
}

TEST(FakeQuant, Nvfp4Saturation) {
  // |x| > amax: block scale capped at 448*gs = amax/6, q capped at 6: |y| <= ~amax.
  std::vector<float> v(16, 1.0f);
  v[0] = 1e6f;
  for (Nvfp4Division d : {Nvfp4Division::kTriton, Nvfp4Division::kIeee}) {
    Tensor y = fake_quant_nvfp4(Tensor::from_f32(v, {16}), 2.0f, d);
    float gs = nvfp4_global_scale(2.0f);
    EXPECT_EQ(y.to_f32_vector()[0], 6.0f * (448.0f * gs));
  }
}

TEST(FakeQuant, Nvfp4GlobalScaleIsPyTorchCudaScalarDivision) {
  // PyTorch on CUDA divides by a Python scalar as a multiply by float(1.0 / scalar).
  const float inv = float(1.0 / 2688.0);
  int differs = 0;
  for (float a = 0.001f; a < 1e4f; a *= 1.0137f) {
    EXPECT_EQ(nvfp4_global_scale(a), a * inv);
    differs += nvfp4_global_scale(a) != a / 2688.0f;
  }
  EXPECT_GT(differs, 0);  // the two really are different formulas
  EXPECT_EQ(nvfp4_global_scale(0.0f), 1e-12f);
  EXPECT_EQ(nvfp4_global_scale(-3.0f), 1e-12f);
}

TEST(FakeQuant, TritonDivisionDiffersFromIeeeAtTies) {
  // The Triton issue's example: 4.6875 / 0.9375 = 5 exactly (an E2M1 tie, -> 4), but
  // div.full.f32 returns 5.0000005 on sm_90, which the ladder sends to 6.
  EXPECT_EQ(4.6875f / 0.9375f, 5.0f);
  EXPECT_EQ(triton_div(4.6875f, 0.9375f), std::nextafter(5.0f, 10.0f));
  EXPECT_EQ(triton_rcp(1.0f), 1.0f);
  EXPECT_EQ(triton_rcp(0.0f), INFINITY);
  EXPECT_EQ(triton_rcp(-0.0f), -INFINITY);
  EXPECT_EQ(triton_rcp(INFINITY), 0.0f);
  EXPECT_TRUE(std::isnan(triton_rcp(NAN)));
  // Exact scaling with the exponent and odd symmetry (how the table is used).
  for (float b : {0.9375f, 1.3f, 1.7777f}) {
    EXPECT_EQ(triton_rcp(b * 1024.0f), triton_rcp(b) / 1024.0f);
    EXPECT_EQ(triton_rcp(-b), -triton_rcp(b));
  }
  // Within 1 ulp of IEEE everywhere (the measured table holds only -1, 0, +1).
  for (float b = 1.0f; b < 2.0f; b += 0.00173f) EXPECT_LE(std::fabs(triton_rcp(b) - 1.0f / b), std::nextafter(1.0f / b, 2.0f) - 1.0f / b);
}

TEST(FakeQuant, Fp8Idempotent) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 g(seed);
  for (DType dt : {DType::F32, DType::BF16}) {
    for (int trial = 0; trial < 20; ++trial) {
      float amax = std::ldexp(1.0f + float(g() % 1000) / 1000.0f, int(g() % 40) - 20);
      Tensor x = random_input({13, 33}, dt, seed + uint64_t(trial), amax);
      Tensor y = fake_quant_fp8(x, amax);
      SCOPED_TRACE(testing::Message() << dtype_name(dt) << " amax " << amax);
      if (dt == DType::F32) {
        EXPECT_TRUE(bitwise_equal(fake_quant_fp8(y, amax), y));
      } else {
        // In bf16 the dequantized value may round (e4m3 * inv has up to 24 significant
        // bits): idempotence then holds after the first re-quantization.
        Tensor z = fake_quant_fp8(y, amax);
        EXPECT_TRUE(bitwise_equal(fake_quant_fp8(z, amax), z));
      }
    }
  }
}

TEST(FakeQuant, BackwardStraightThroughAndClipped) {
  std::vector<float> xv = {-3.0f, -2.0f, -1.0f, 0.0f, 1.999f, 2.0f, 2.001f, NAN};
  std::vector<float> gv = {1, 2, 3, 4, 5, 6, 7, 8};
  Tensor x = Tensor::from_f32(xv, {8}), dy = Tensor::from_f32(gv, {8}, DType::BF16);
  EXPECT_TRUE(bitwise_equal(fake_quant_backward(dy, x, 2.0f, true), dy));
  std::vector<float> dx = fake_quant_backward(dy, x, 2.0f, false).to_f32_vector();
  std::vector<float> want = {0, 2, 3, 4, 5, 6, 0, 0};  // |x| > 2 and NaN -> 0
  EXPECT_EQ(dx, want);
  EXPECT_THROW(fake_quant_backward(dy, Tensor::zeros(Shape{7}, DType::F32), 2.0f, false), Error);
}

// The straight-through gradient is the derivative of the identity that the STE assumes;
// the clipped one the derivative of clamp(x, -amax, amax). Check both against central finite
// differences of those surrogate functions at points away from the clip boundary.
TEST(FakeQuant, BackwardMatchesSurrogateFiniteDifferences) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::vector<float> xv = test::random_normal(64, 2.0f, seed);
  const float amax = 1.5f, h = 1e-3f;
  for (float& v : xv)
    if (std::fabs(std::fabs(v) - amax) < 10 * h) v += 20 * h;
  Tensor x = Tensor::from_f32(xv, {64});
  Tensor ones = Tensor::from_f32(std::vector<float>(64, 1.0f), {64});
  std::vector<float> ste = fake_quant_backward(ones, x, amax, true).to_f32_vector();
  std::vector<float> clip = fake_quant_backward(ones, x, amax, false).to_f32_vector();
  auto clampf = [&](float v) { return std::fmax(-amax, std::fmin(amax, v)); };
  for (size_t i = 0; i < xv.size(); ++i) {
    EXPECT_NEAR(ste[i], ((xv[i] + h) - (xv[i] - h)) / (2 * h), 1e-2);
    EXPECT_NEAR(clip[i], (clampf(xv[i] + h) - clampf(xv[i] - h)) / (2 * h), 1e-2);
  }
}

}  // namespace
}  // namespace qarl::quant
