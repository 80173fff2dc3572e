// Device-side arithmetic of the fake quantizers (reference-spec §2), shared by the fake-quant
// and KV-codec kernels. Every rounding step is spelled out (__fmul_rn, __fdiv_rn, hardware
// cvt with SATFINITE RNE) so that results are bitwise those of the CPU reference in
// qarl/quant. The element conversions replicate qarl/core/half.h bit for bit (NaN included).
#pragma once
#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

namespace qarl::kernels::gpu::dev {

// ---- element types: raw storage <-> float -------------------------------------------------
// store() reproduces qarl/core/half.h for every float, NaN payloads included; store2()
// packs two values with the hardware's RNE conversion, equal to store() for non-NaN values.
struct F32 {
  using raw = float;
  __device__ static float load(raw v) { return v; }
  __device__ static raw store(float f) { return f; }
};
struct BF16 {
  using raw = uint16_t;
  __device__ static uint32_t pack2(float a, float b) {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  __device__ static float load(raw v) { return __uint_as_float(uint32_t(v) << 16); }
  __device__ static raw store(float f) {  // == qarl::f32_to_bf16
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return raw((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return raw(u >> 16);
  }
};
struct F16 {
  using raw = uint16_t;
  __device__ static uint32_t pack2(float a, float b) {
    __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  __device__ static float load(raw v) {  // exact; NaN payload kept as qarl::f16_to_f32 does
    uint32_t h = v;
    if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu))
      return __uint_as_float(((h & 0x8000u) << 16) | 0x7f800000u | ((h & 0x3ffu) << 13));
    return __half2float(__ushort_as_half(v));
  }
  __device__ static raw store(float f) {  // RNE, overflow to inf; NaN as qarl::f32_to_f16
    uint32_t u = __float_as_uint(f);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return raw(((u >> 16) & 0x8000u) | 0x7e00u | ((a >> 13) & 0x3ffu));
    return __half_as_ushort(__float2half_rn(f));
  }
};

// ---- E4M3 ("fn": max 448, no inf) ------------------------------------------------------------
// float -> E4M3 code, round to nearest even, saturating to +-448, NaN -> NaN code.
// NaN keeps its sign (0x7f | sign), as qarl::quant::e4m3_encode.
__device__ __forceinline__ uint8_t e4m3_encode(float v) {
  uint8_t c = uint8_t(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
  return v != v ? uint8_t(0x7fu | ((__float_as_uint(v) >> 24) & 0x80u)) : c;
}
// The quiet NaN the CPU reference produces for a NaN input x (x86 arithmetic keeps the NaN
// operand's sign; the GPU's would return its canonical NaN): 0x7fc00000 | sign(x).
__device__ __forceinline__ float cpu_nan_like(float x) {
  return __uint_as_float(0x7fc00000u | (__float_as_uint(x) & 0x80000000u));
}
// E4M3 code -> float (exact; every E4M3 value is an f16 value). NaN codes: see callers.
__device__ __forceinline__ float e4m3_decode(uint8_t c) {
  __half_raw h = __nv_cvt_fp8_to_halfraw(__nv_fp8_storage_t(c), __NV_E4M3);
  return __half2float(__half(h));
}
__device__ __forceinline__ bool e4m3_is_nan(uint8_t c) { return (c & 0x7fu) == 0x7fu; }
// Two at once (one cvt each way): lo in bits 0-7.
__device__ __forceinline__ uint16_t e4m3x2_encode(float lo, float hi) {
  return uint16_t(__nv_cvt_float2_to_fp8x2(make_float2(lo, hi), __NV_SATFINITE, __NV_E4M3));
}
__device__ __forceinline__ float2 e4m3x2_decode(uint16_t c) {
  __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(c), __NV_E4M3);
  return __half22float2(__half2(h));
}

// ---- FP8 per-tensor: y = e4m3(x*s) * inv ---------------------------------------------------
struct Fp8Scale { float s, inv; };

// A NaN code arises exactly when x is NaN (s is finite and positive).
__device__ __forceinline__ float fp8_fake(float x, Fp8Scale k) {
  float y = __fmul_rn(e4m3_decode(e4m3_encode(__fmul_rn(x, k.s))), k.inv);
  return x != x ? cpu_nan_like(x) : y;
}
// The KV code of x: a NaN x keeps its sign (the GPU's x*s would be its canonical NaN).
__device__ __forceinline__ uint8_t fp8_code(float x, float s) {
  uint8_t c = e4m3_encode(__fmul_rn(x, s));
  return x != x ? uint8_t(0x7fu | ((__float_as_uint(x) >> 24) & 0x80u)) : c;
}
__device__ __forceinline__ float fp8_dequant(uint8_t c, float inv) {
  float y = __fmul_rn(e4m3_decode(c), inv);
  return e4m3_is_nan(c) ? __uint_as_float(0x7fc00000u | (uint32_t(c & 0x80u) << 24)) : y;
}

// ---- NVFP4 (E2M1 values with an E4M3 block scale and an fp32 global scale) ------------------
// Scalars from qarl::quant::nvfp4_scales (gs = amax * fl(1/2688), 6*gs, triton_rcp(6*gs)).
struct Nvfp4Scale { float gs, six_gs, rcp_six_gs; };

// sm_90's rcp.approx.f32: with a multiply it is Triton's fp32 division (div.full.f32), which
// ModelOpt's NVFP4 kernel uses; qarl::quant::triton_rcp models it bit for bit on the CPU.
__device__ __forceinline__ float rcp_approx(float b) {
  float r;
  asm("rcp.approx.f32 %0, %1;" : "=f"(r) : "f"(b));
  return r;
}

// Division modes (qarl::quant::Nvfp4Division): kTriton = a * rcp.approx(b) and Triton's
// negation 0 - v (so a zero result is +0); IEEE = correctly rounded a / b and -v (PyTorch).
template <bool kTriton>
struct Nvfp4Block {
  float S;   // dequantized block scale s8 * gs (0 allowed: the block becomes zeros)
  float rS;  // rcp.approx(S) (Triton mode)
  uint8_t code;  // E4M3 code of s8
  __device__ __forceinline__ Nvfp4Block(float m, Nvfp4Scale k) {
    float sr = kTriton ? __fmul_rn(m, k.rcp_six_gs) : __fdiv_rn(m, k.six_gs);
    code = e4m3_encode(sr < 448.0f ? sr : 448.0f);
    S = __fmul_rn(e4m3_decode(code), k.gs);
    rS = kTriton ? rcp_approx(S) : 0.0f;
  }
  __device__ __forceinline__ float ratio(float a) const {
    return kTriton ? __fmul_rn(a, rS) : __fdiv_rn(a, S);
  }
};

// E2M1 magnitude index (0..7 -> 0, .5, 1, 1.5, 2, 3, 4, 6) of r = |x|/S on ModelOpt's
// fp4_round_magnitude ladder; NaN and inf (S == 0) fall through to 6.
__device__ __forceinline__ uint32_t e2m1_index(float r) {
  return r <= 0.25f ? 0u : r < 0.75f ? 1u : r <= 1.25f ? 2u : r < 1.75f ? 3u
       : r <= 2.5f ? 4u : r < 3.5f ? 5u : r <= 5.0f ? 6u : 7u;
}
__device__ __forceinline__ float e2m1_value(uint32_t idx) {
  // 0, .5, 1, 1.5, 2, 3, 4, 6 without a table: idx<4 -> idx/2, else (2+(idx&1)) << (idx/2-2)
  return idx < 4 ? 0.5f * float(idx) : float((2u + (idx & 1u)) << ((idx >> 1) - 2u));
}
template <bool kTriton>
__device__ __forceinline__ float nvfp4_fake(float x, const Nvfp4Block<kTriton>& b) {
  float v = __fmul_rn(e2m1_value(e2m1_index(b.ratio(fabsf(x)))), b.S);
  return x >= 0.0f ? v : (kTriton ? __fsub_rn(0.0f, v) : -v);
}
// The same ladder as arithmetic (fewer instructions, for the bandwidth kernel): on [0, 2)
// the grid step is 0.5, on [2, 4) 1, on [4, 6] 2, and each ladder threshold is a tie that
// goes to the even grid point, i.e. round-half-even of r/step; NaN and inf give 6 via fminf.
// Equal to e2m1_value(e2m1_index(r)) for every non-negative float (checked exhaustively on
// the CPU over all 2^31 bit patterns; the GPU tests compare the kernels with qarl/quant).
__device__ __forceinline__ float e2m1_round(float r) {
  const float up = r < 2.0f ? 2.0f : r < 4.0f ? 1.0f : 0.5f;
  const float down = r < 2.0f ? 0.5f : r < 4.0f ? 1.0f : 2.0f;
  return fminf(__fmul_rn(rintf(__fmul_rn(r, up)), down), 6.0f);
}
// nvfp4_fake via e2m1_round; the result is always finite.
template <bool kTriton>
__device__ __forceinline__ float nvfp4_fake_fast(float x, const Nvfp4Block<kTriton>& b) {
  float v = __fmul_rn(e2m1_round(b.ratio(fabsf(x))), b.S);
  return x >= 0.0f ? v : (kTriton ? __fsub_rn(0.0f, v) : -v);
}
// 4-bit code, sign in bit 3, set so that decode reproduces nvfp4_fake exactly (Triton's
// 0 - v makes every zero +0), as qarl::quant::encode_nvfp4_row.
template <bool kTriton>
__device__ __forceinline__ uint32_t e2m1_code(float x, const Nvfp4Block<kTriton>& b) {
  uint32_t idx = e2m1_index(b.ratio(fabsf(x)));
  bool neg = !(x >= 0.0f) && (!kTriton || __fmul_rn(e2m1_value(idx), b.S) != 0.0f);
  return (neg ? 8u : 0u) | idx;
}
__device__ __forceinline__ float e2m1_dequant(uint32_t code, float S) {
  float v = __fmul_rn(e2m1_value(code & 7u), S);
  return (code & 8u) ? -v : v;
}

}  // namespace qarl::kernels::gpu::dev
