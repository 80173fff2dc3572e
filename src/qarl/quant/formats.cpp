#include "qarl/quant/formats.h"

#include <cmath>

namespace qarl::quant {

uint8_t e4m3_encode(float x) {
  uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  if (std::isnan(x)) return sign | 0x7f;
  float a = std::fabs(x);
  if (a >= kE4M3Max) return sign | 0x7e;  // saturate finite overflow and inf to 448
  if (a < 0.015625f) {
    // subnormal: value = m * 2^-9, m in 0..8 (8 is the smallest normal, code 0x08)
    float m = std::nearbyint(a * 512.0f);  // exact scaling; nearbyint rounds ties to even
    return sign | uint8_t(m);
  }
  int e;
  float f = std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1)
  // mantissa with 3 fraction bits: a = (1 + k/8) * 2^(e-1); k = round((2f - 1) * 8)
  float k = std::nearbyint((2.0f * f - 1.0f) * 8.0f);  // exact arithmetic, RNE
  int exp_field = e - 1 + 7;
  if (k == 8.0f) { k = 0.0f; ++exp_field; }  // mantissa overflow carries into the exponent
  uint8_t code = uint8_t((exp_field << 3) | int(k));
  if (code > 0x7e) code = 0x7e;  // cannot happen below 448, kept as a guard
  return sign | code;
}

float e4m3_decode(uint8_t code) {
  bool neg = code & 0x80;
  int exp_field = (code >> 3) & 0xf;
  int man = code & 0x7;
  float v;
  if (exp_field == 0xf && man == 0x7) {
    v = bitsf(0x7fc00000u);
  } else if (exp_field == 0) {
    v = std::ldexp(float(man), -9);
  } else {
    v = std::ldexp(1.0f + float(man) / 8.0f, exp_field - 7);
  }
  return neg ? -v : v;
}

uint8_t e2m1_encode(float x) {
  uint8_t sign = std::signbit(x) ? 0x8 : 0x0;
  return sign | e2m1_magnitude_code(std::fabs(x));
}

float e2m1_decode(uint8_t code) {
  static constexpr float kMag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  float v = kMag[code & 7];
  return (code & 8) ? -v : v;
}

}  // namespace qarl::quant
