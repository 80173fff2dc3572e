#include <cmath>
#include <cstring>

#include <gtest/gtest.h>

#include "qarl/core/half.h"
#include "test_util.h"

namespace qarl {
namespace {

// Reference: correct RNE rounding computed in double, independent of the bit tricks.
uint16_t ref_bf16(float f) {
  if (std::isnan(f)) return f32_to_bf16(f);
  uint32_t u = f32_bits(f);
  uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
  double d = f, dl = bits_f32(lo), dh = bits_f32(hi);
  if (std::isinf(bits_f32(hi)) && !std::isinf(f)) {
    // overflow boundary: handled by the comparison below as well
  }
  double el = std::fabs(d - dl), eh = std::fabs(dh - d);
  if (el < eh) return uint16_t(lo >> 16);
  if (eh < el) return uint16_t(hi >> 16);
  return ((lo >> 16) & 1) ? uint16_t(hi >> 16) : uint16_t(lo >> 16);
}

TEST(Half, Bf16RoundTripAndRne) {
  // exhaustive over every bf16 value: decode then encode is the identity (NaN aside)
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = bf16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_bf16(f), h);
  }
  // random float bit patterns against the double-precision reference
  auto seed = test::fresh_seed();
  SCOPED_TRACE(seed);
  uint64_t s = seed;
  for (int i = 0; i < 1000000; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    float f = bits_f32(uint32_t(s >> 32));
    if (std::isnan(f) || std::isinf(f)) continue;
    if (std::fabs(f) > 3.38e38f) continue;  // rounds past FLT_MAX: checked separately
    ASSERT_EQ(f32_to_bf16(f), ref_bf16(f)) << f;
  }
  // ties go to even
  EXPECT_EQ(f32_to_bf16(bits_f32(0x3f808000u)), 0x3f80);  // 1 + 2^-8: tie, even is 0x3f80
  EXPECT_EQ(f32_to_bf16(bits_f32(0x3f818000u)), 0x3f82);  // tie, even is 0x3f82
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  EXPECT_TRUE(std::isinf(bf16_to_f32(f32_to_bf16(INFINITY))));
}

TEST(Half, F16Exhaustive) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
      continue;
    }
    ASSERT_EQ(f32_to_f16(f), h) << h;
  }
  // midpoints between consecutive finite f16 values round to the even neighbour
  for (uint32_t h = 0; h < 0x7bff; ++h) {
    double a = f16_to_f32(uint16_t(h)), b = f16_to_f32(uint16_t(h + 1));
    float mid = float((a + b) / 2);  // exact in float32
    uint16_t want = (h & 1) ? uint16_t(h + 1) : uint16_t(h);
    ASSERT_EQ(f32_to_f16(mid), want) << h;
    ASSERT_EQ(f32_to_f16(std::nextafter(mid, 0.0f)), h);
    ASSERT_EQ(f32_to_f16(std::nextafter(mid, 1e9f)), h + 1);
  }
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // rounds to inf
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
}

}  // namespace
}  // namespace qarl
