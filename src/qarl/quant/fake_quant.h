// Fake quantization (quantize then dequantize, result in the input dtype) exactly as NVIDIA
// ModelOpt computes it, on CPU. Formulas: docs/quantization.md and reference-spec section 2.
//
//   FP8 E4M3 per tensor:  a = amax (a <= 2^-24 -> 1), s = 448/a, inv = 1/s (fp32),
//                         y = T( e4m3(x*s) * inv ).
//   NVFP4 (block 16 of the last dim): gs = amax * fl(1/2688) (<= 0 or NaN -> 1e-12),
//                         S = e4m3(min(blockmax / (6*gs), 448)) * gs,
//                         y = T( sign * ladder(|x|/S) * S )   (S == 0 gives zeros, HEAD),
//     with the two divisions done as Triton does them on sm_90 (default, = ModelOpt on
//     H100/H200) or as IEEE divisions (= the same formulas in PyTorch); see triton_rcp.h.
//
// Every entry point (whole tensor, single row, native encode+decode) runs the same per-block
// arithmetic, so results are bitwise identical whichever is used: the model may quantize a
// [tokens, n_kv*head_dim] tensor while the rollout quantizes one token's row at a time.
// Inputs: F32, BF16 or F16 (CPU). Rows are contiguous slices of the last dimension.
// A non-finite amax is an Error (ModelOpt would produce garbage; recipes reject it at load).
#pragma once
#include <cstdint>

#include "qarl/core/tensor.h"

namespace qarl::quant {

enum class Format : uint8_t { FP8, NVFP4 };
const char* format_name(Format f);  // "fp8", "nvfp4"

constexpr int kNvfp4BlockSize = 16;
constexpr float kFp8ConstantAmax = 448.0f;  // use_constant_amax: finfo(float8_e4m3fn).max

// FP8 per-tensor scales from amax (fp32 arithmetic exactly as fake_e4m3fy).
struct Fp8Scales {
  float scale;      // s   = 448 / a_safe
  float inv_scale;  // inv = 1 / s  (the dequantization scale; NOT a/448)
};
Fp8Scales fp8_scales(float amax);  // Error if amax is inf/NaN
// How NVFP4's two fp32 divisions (blockmax / (6*gs) and |x| / S) round.
enum class Nvfp4Division : uint8_t {
  kTriton,  // Triton's div.full.f32 = a * rcp.approx(b), as measured on sm_90 (ModelOpt's kernel)
  kIeee,    // correctly rounded (PyTorch ops, CUDA C++ `/`)
};
const char* division_name(Nvfp4Division d);  // "triton", "ieee"
struct Nvfp4Scales {
  float global_scale;  // gs
  float six_gs;        // 6 * gs (fp32)
  float rcp_six_gs;    // triton_rcp(6 * gs)
  Nvfp4Division division;
};
// gs = amax * float(1.0/2688): ModelOpt computes global_amax.float() / (6.0 * 448.0) on a
// CUDA tensor, and PyTorch divides a CUDA tensor by a Python scalar as a multiply by its
// reciprocal (measured: equal to this on 2^20 random amax values, true division on 77%).
// gs <= 0 (or NaN) -> 1e-12. Error if amax is inf/NaN.
Nvfp4Scales nvfp4_scales(float amax, Nvfp4Division division = Nvfp4Division::kTriton);
float nvfp4_global_scale(float amax);  // nvfp4_scales(amax).global_scale

// ---- Whole tensors -----------------------------------------------------------------
// Out-of-place: returns a new CPU tensor of x's dtype and shape. OpenMP over rows.
Tensor fake_quant_fp8(const Tensor& x, float amax);
Tensor fake_quant_nvfp4(const Tensor& x, float amax,  // x.dim(-1) % 16 != 0 -> Error
                        Nvfp4Division division = Nvfp4Division::kTriton);
Tensor fake_quant(const Tensor& x, Format format, float amax,
                  Nvfp4Division division = Nvfp4Division::kTriton);
// In place (x must be owned/writable, CPU). Same results.
void fake_quant_(Tensor& x, Format format, float amax,
                 Nvfp4Division division = Nvfp4Division::kTriton);

// ---- Rows (raw memory; `in` may equal `out`) -----------------------------------------
// n elements of dtype (F32/BF16/F16). For NVFP4 n must be a multiple of 16.
void fake_quant_fp8_row(const void* in, void* out, int64_t n, DType dtype, Fp8Scales sc);
void fake_quant_nvfp4_row(const void* in, void* out, int64_t n, DType dtype,
                          const Nvfp4Scales& sc);

// ---- Native encodings (what a real FP8 / NVFP4 KV cache stores) ------------------------
// FP8: codes[i] = e4m3(x_i * s); decode: y_i = T(e4m3_decode(codes[i]) * inv_scale).
void encode_fp8_row(const void* in, DType dtype, int64_t n, Fp8Scales sc, uint8_t* codes);
void decode_fp8_row(const uint8_t* codes, int64_t n, float inv_scale, void* out, DType dtype);
// NVFP4: packed[n/2] E2M1 codes (element 2i in the low nibble), block_scales[n/16] E4M3
// codes of s8 (the per-block scale before multiplying by gs); global scale = gs.
// decode: y_i = T( +-e2m1_mag(code_i) * (e4m3_decode(block_scale) * gs) ), the sign taken
// from bit 3; encode sets it so that zeros carry the fake quantizer's sign (Triton: +0).
void encode_nvfp4_row(const void* in, DType dtype, int64_t n, const Nvfp4Scales& sc,
                      uint8_t* packed, uint8_t* block_scales);
void decode_nvfp4_row(const uint8_t* packed, const uint8_t* block_scales, int64_t n,
                      float global_scale, void* out, DType dtype);

// ---- Backward ------------------------------------------------------------------------
// Straight-through (pass_through_bwd: true, ModelOpt's default): dx = dy (a copy).
// Clipped (pass_through_bwd: false): dx = dy where |x| <= amax, else 0 (NaN x -> 0).
// For NVFP4 amax is the global amax; for constant amax it is 448. Result in dy's dtype.
Tensor fake_quant_backward(const Tensor& dy, const Tensor& x, float amax, bool pass_through);

// ---- Simple scalar references (llm.c style; tests compare the fast kernels to these) ----
Tensor fake_quant_fp8_reference(const Tensor& x, float amax);
Tensor fake_quant_nvfp4_reference(const Tensor& x, float amax,
                                  Nvfp4Division division = Nvfp4Division::kTriton);

// Which SIMD path the CPU kernels dispatched to: "avx512", "avx2" or "scalar".
const char* fake_quant_isa();
// Forces a path (tests/benchmarks); "auto" restores detection. Error for an unsupported one.
void set_fake_quant_isa(const char* isa);

}  // namespace qarl::quant
