// E4M3 / E2M1 codecs: every code, every rounding midpoint, saturation, NaN, and the
// branch-free e4m3_round against the readable codec.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "qarl/quant/formats.h"

namespace qarl::quant {
namespace {

float nextup(float x) { return std::nextafter(x, INFINITY); }
float nextdown(float x) { return std::nextafter(x, -INFINITY); }
bool same_bits(float a, float b) { return fbits(a) == fbits(b); }

// Every finite E4M3 value by construction from the format definition.
float e4m3_value_by_definition(int code) {
  int s = code >> 7, e = (code >> 3) & 15, m = code & 7;
  double v = e == 0 ? m * std::ldexp(1.0, -9) : (1.0 + m / 8.0) * std::ldexp(1.0, e - 7);
  return float(s ? -v : v);
}

TEST(E4M3, DecodeEveryCode) {
  for (int c = 0; c < 256; ++c) {
    SCOPED_TRACE(c);
    float v = e4m3_decode(uint8_t(c));
    if ((c & 0x7f) == 0x7f) {
      EXPECT_TRUE(std::isnan(v));
      EXPECT_EQ(std::signbit(v), c >= 0x80);
      continue;
    }
    EXPECT_TRUE(same_bits(v, e4m3_value_by_definition(c)));
    EXPECT_EQ(e4m3_encode(v), c);  // round trip, incl. -0 (0x80)
    EXPECT_TRUE(same_bits(e4m3_round(v), v));
  }
  EXPECT_EQ(e4m3_decode(0x7e), 448.0f);
  EXPECT_EQ(e4m3_decode(0x08), 0.015625f);   // min normal 2^-6
  EXPECT_EQ(e4m3_decode(0x01), 0.001953125f);  // min subnormal 2^-9
}

TEST(E4M3, MidpointsTiesToEvenAndOneUlpAway) {
  int checked = 0;
  for (int c = 0; c < 0x7e; ++c) {  // positive neighbours (c, c+1), up to 448
    float lo = e4m3_decode(uint8_t(c)), hi = e4m3_decode(uint8_t(c + 1));
    float mid = float((double(lo) + double(hi)) / 2);  // exact in fp32
    ASSERT_EQ(double(mid), (double(lo) + double(hi)) / 2);
    for (float sgn : {1.0f, -1.0f}) {
      SCOPED_TRACE(testing::Message() << "code " << c << " sign " << sgn);
      uint8_t sbit = sgn < 0 ? 0x80 : 0;
      uint8_t even = uint8_t((c % 2 == 0) ? c : c + 1);
      EXPECT_EQ(e4m3_encode(sgn * mid), even | sbit);
      EXPECT_EQ(e4m3_encode(sgn * nextdown(mid)), c | sbit);
      EXPECT_EQ(e4m3_encode(sgn * nextup(mid)), (c + 1) | sbit);
      for (float v : {mid, nextdown(mid), nextup(mid), lo, hi})
        EXPECT_TRUE(same_bits(e4m3_round(sgn * v), e4m3_decode(e4m3_encode(sgn * v))));
      ++checked;
    }
  }
  EXPECT_EQ(checked, 2 * 126);
}

TEST(E4M3, SaturationAndNaN) {
  for (float v : {448.0f, nextup(448.0f), 464.0f, 479.9f, 480.0f, 1e6f, 3.4e38f, INFINITY}) {
    SCOPED_TRACE(v);
    EXPECT_EQ(e4m3_encode(v), 0x7e);
    EXPECT_EQ(e4m3_encode(-v), 0xfe);
    EXPECT_EQ(e4m3_round(v), 448.0f);
    EXPECT_EQ(e4m3_round(-v), -448.0f);
  }
  EXPECT_EQ(e4m3_encode(NAN), 0x7f);
  EXPECT_EQ(e4m3_encode(-NAN), 0xff);
  EXPECT_TRUE(std::isnan(e4m3_round(NAN)));
  EXPECT_TRUE(std::signbit(e4m3_round(-NAN)));
  // Below half the smallest subnormal: zero, sign kept; exactly half ties to even (0).
  EXPECT_EQ(e4m3_encode(std::ldexp(1.0f, -10)), 0x00);
  EXPECT_EQ(e4m3_encode(nextup(std::ldexp(1.0f, -10))), 0x01);
  EXPECT_EQ(e4m3_encode(-1e-30f), 0x80);
  EXPECT_EQ(e4m3_encode(1e-45f), 0x00);  // fp32 denormal
}

// e4m3_round == decode(encode(.)) over a dense sweep of fp32 bit patterns (every 97th
// pattern: all exponents, many mantissas) plus all patterns near each E4M3 boundary above.
TEST(E4M3, FastRoundMatchesCodecSweep) {
  int64_t bad = 0;
  for (uint64_t u = 0; u <= 0xffffffffull; u += 97) {
    float x = bitsf(uint32_t(u));
    float a = e4m3_round(x), b = e4m3_decode(e4m3_encode(x));
    if (!(same_bits(a, b) || (std::isnan(a) && std::isnan(b) &&
                              std::signbit(a) == std::signbit(b))))
      ++bad;
  }
  EXPECT_EQ(bad, 0);
}

TEST(E2M1, DecodeEveryCode) {
  const float mags[8] = {0, .5f, 1, 1.5f, 2, 3, 4, 6};
  for (int c = 0; c < 16; ++c) {
    float v = e2m1_decode(uint8_t(c));
    EXPECT_TRUE(same_bits(v, c & 8 ? -mags[c & 7] : mags[c & 7])) << c;
    EXPECT_EQ(e2m1_encode(v), c) << c;
  }
}

TEST(E2M1, EveryThresholdAndNeighbours) {
  // {threshold, code at the threshold, code one ulp below, code one ulp above}
  struct T { float t; int at, below, above; };
  const T table[] = {{0.25f, 0, 0, 1}, {0.75f, 2, 1, 2}, {1.25f, 2, 2, 3}, {1.75f, 4, 3, 4},
                     {2.5f, 4, 4, 5},  {3.5f, 6, 5, 6},  {5.0f, 6, 6, 7}};
  for (const T& t : table) {
    SCOPED_TRACE(t.t);
    EXPECT_EQ(e2m1_magnitude_code(t.t), t.at);
    EXPECT_EQ(e2m1_magnitude_code(nextdown(t.t)), t.below);
    EXPECT_EQ(e2m1_magnitude_code(nextup(t.t)), t.above);
    for (float r : {t.t, nextdown(t.t), nextup(t.t)}) {
      EXPECT_EQ(e2m1_round_magnitude(r), e2m1_decode(e2m1_magnitude_code(r)));
      EXPECT_EQ(e2m1_encode(-r), e2m1_magnitude_code(r) | 8);
    }
  }
  EXPECT_EQ(e2m1_magnitude_code(0.0f), 0);
  EXPECT_EQ(e2m1_magnitude_code(1e9f), 7);
  EXPECT_EQ(e2m1_magnitude_code(INFINITY), 7);
  EXPECT_EQ(e2m1_magnitude_code(NAN), 7);  // falls through the ladder to 6, as in Triton
  EXPECT_EQ(e2m1_round_magnitude(NAN), 6.0f);
}

TEST(E2M1, PackingLowNibbleFirst) {
  uint8_t b = e2m1_pack(0x3, 0xc);
  EXPECT_EQ(b, 0xc3);
  EXPECT_EQ(e2m1_unpack_even(b), 0x3);
  EXPECT_EQ(e2m1_unpack_odd(b), 0xc);
}

}  // namespace
}  // namespace qarl::quant
