// The two low-precision number formats qarl simulates, bit for bit as NVIDIA hardware and
// PyTorch produce them:
//   E4M3 (OCP FP8 "fn", torch.float8_e4m3fn): 1 sign, 4 exponent (bias 7), 3 mantissa bits;
//     max 448, min normal 2^-6, min subnormal 2^-9, no infinities, NaN = S.1111.111
//     (0x7f / 0xff). float -> E4M3 rounds to nearest, ties to even, and saturates every
//     finite or infinite overflow to +-448 (__NV_SATFINITE); NaN stays NaN (sign kept).
//   E2M1 (FP4, NVFP4's element type): 1 sign, 2 exponent, 1 mantissa bit; magnitudes
//     {0, .5, 1, 1.5, 2, 3, 4, 6} for codes 0..7, bit 3 the sign. No NaN/inf.
// Packing: two E2M1 codes per byte, element 2i in the LOW nibble, element 2i+1 in the high
// nibble (the layout of torch.float4_e2m1fn_x2 / NVIDIA's packed FP4).
#pragma once
#include <cstdint>
#include <cstring>

namespace qarl::quant {

inline uint32_t fbits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float bitsf(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

constexpr float kE4M3Max = 448.0f;
constexpr float kE2M1Max = 6.0f;

// ---- E4M3 ---------------------------------------------------------------------------
// Simple, readable reference conversions (used by tests and by the native encoders).
uint8_t e4m3_encode(float x);   // RNE, saturate to +-448, NaN -> 0x7f | sign
float e4m3_decode(uint8_t code);  // exact; NaN codes give a quiet NaN with the code's sign

// The E4M3 value nearest to x (RNE, saturating), as a float, without going through a code.
// Branch-free so that loops over it vectorize; equals e4m3_decode(e4m3_encode(x)) for
// every float (tested exhaustively over all 2^32 bit patterns' classes and by sampling).
// NaN input returns a quiet NaN with x's sign (0x7fc00000 | sign).
inline float e4m3_round(float x) {
  uint32_t u = fbits(x);
  uint32_t sign = u & 0x80000000u;
  uint32_t a = u & 0x7fffffffu;
  bool is_nan = a > 0x7f800000u;
  float af = bitsf(a);
  af = af < kE4M3Max ? af : kE4M3Max;  // saturate (inf too); NaN handled below
  // Normal range (>= 2^-6): round the fp32 mantissa to 3 bits, ties to even. The carry
  // may ripple into the exponent, which is the correct result (at most 448 after the clamp).
  uint32_t n = fbits(af);
  n = (n + 0x7ffffu + ((n >> 20) & 1u)) & 0xfff00000u;
  // Subnormal range (< 2^-6): quantum 2^-9. Adding 2^14 makes the fp32 ulp exactly 2^-9,
  // so the hardware's round-to-nearest-even does the rounding; subtracting is exact.
  float sub = (af + 16384.0f) - 16384.0f;
  uint32_t r = af < 0.015625f ? fbits(sub) : n;
  r = is_nan ? 0x7fc00000u : r;
  return bitsf(r | sign);
}

// ---- E2M1 ---------------------------------------------------------------------------
// Rounds a non-negative magnitude r to the E2M1 grid exactly as ModelOpt's
// fp4_round_magnitude (common/nvfp4_quant.py): round-half-to-even ladder
//   r<=0.25:0 | r<0.75:.5 | r<=1.25:1 | r<1.75:1.5 | r<=2.5:2 | r<3.5:3 | r<=5:4 | else 6.
// NaN and inf fall through every comparison to 6 (as in Triton).
inline float e2m1_round_magnitude(float r) {
  return r <= 0.25f ? 0.0f
       : r < 0.75f  ? 0.5f
       : r <= 1.25f ? 1.0f
       : r < 1.75f  ? 1.5f
       : r <= 2.5f  ? 2.0f
       : r < 3.5f   ? 3.0f
       : r <= 5.0f  ? 4.0f
                    : 6.0f;
}
// The 3-bit magnitude index (0..7) of the same ladder.
inline uint8_t e2m1_magnitude_code(float r) {
  return uint8_t((r > 0.25f) + (r >= 0.75f) + (r > 1.25f) + (r >= 1.75f) + (r > 2.5f) +
                 (r >= 3.5f) + (r > 5.0f)) |
         uint8_t(r != r ? 7 : 0);
}
// float -> 4-bit E2M1 code: magnitude by the ladder (saturating at 6), sign bit 3 set when
// x is negative (x < 0, or a NaN with the sign bit set). -0.0 encodes as 0x8.
uint8_t e2m1_encode(float x);
float e2m1_decode(uint8_t code);  // low 4 bits used

inline uint8_t e2m1_pack(uint8_t even, uint8_t odd) { return uint8_t((even & 0xf) | (odd << 4)); }
inline uint8_t e2m1_unpack_even(uint8_t byte) { return byte & 0xf; }
inline uint8_t e2m1_unpack_odd(uint8_t byte) { return byte >> 4; }

}  // namespace qarl::quant
