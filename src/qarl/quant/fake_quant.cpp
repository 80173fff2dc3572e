// Fake-quant entry points: scales, run-time ISA dispatch, whole-tensor drivers (OpenMP),
// native encode/decode, backward. The per-block arithmetic lives in fake_quant_kernels.h.
#include "qarl/quant/fake_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string_view>
#include <vector>

#include "qarl/core/error.h"
#include "qarl/quant/fake_quant_kernels.h"
#include "qarl/quant/triton_rcp.h"

namespace qarl::quant {

const char* format_name(Format f) { return f == Format::FP8 ? "fp8" : "nvfp4"; }

Fp8Scales fp8_scales(float amax) {
  if (!std::isfinite(amax)) throw err("FP8 fake quantization: amax {} is not finite", amax);
  float a = amax <= 5.9604644775390625e-08f ? 1.0f : amax;  // a <= 2^-24 -> 1
  Fp8Scales sc;
  sc.scale = 448.0f / a;
  sc.inv_scale = 1.0f / sc.scale;
  return sc;
}

const char* division_name(Nvfp4Division d) {
  return d == Nvfp4Division::kTriton ? "triton" : "ieee";
}

Nvfp4Scales nvfp4_scales(float amax, Nvfp4Division division) {
  if (!std::isfinite(amax)) throw err("NVFP4 fake quantization: amax {} is not finite", amax);
  // PyTorch CUDA: tensor / python scalar == tensor * float(1.0 / scalar) (fp32 multiply).
  static const float kInv2688 = float(1.0 / 2688.0);
  float gs = amax * kInv2688;
  gs = gs > 0.0f ? gs : 1e-12f;  // Triton: tl.where(gs > 0.0, gs, 1e-12)
  Nvfp4Scales sc;
  sc.global_scale = gs;
  sc.six_gs = 6.0f * gs;
  sc.rcp_six_gs = triton_rcp(sc.six_gs);
  sc.division = division;
  return sc;
}

float nvfp4_global_scale(float amax) { return nvfp4_scales(amax).global_scale; }

// ---- ISA dispatch ----------------------------------------------------------------------
namespace {

using Fp8RowFn = void (*)(const void*, void*, int64_t, DType, float, float);
using Nvfp4RowFn = void (*)(const void*, void*, int64_t, DType, const Nvfp4Scales&);

#define QARL_QK_DEFINE_ISA(SUFFIX, ATTR)                                                   \
  ATTR void fp8_row_##SUFFIX(const void* in, void* out, int64_t n, DType d, float s,        \
                             float inv) {                                                  \
    switch (d) {                                                                           \
      case DType::F32: detail::fp8_row<DType::F32>(in, out, n, s, inv); break;             \
      case DType::BF16: detail::fp8_row<DType::BF16>(in, out, n, s, inv); break;           \
      default: detail::fp8_row<DType::F16>(in, out, n, s, inv); break;                     \
    }                                                                                      \
  }                                                                                        \
  template <bool kTriton>                                                                   \
  ATTR void nvfp4_row_t_##SUFFIX(const void* in, void* out, int64_t n, DType d,            \
                                 const Nvfp4Scales& sc) {                                  \
    const float g = sc.global_scale, s6 = sc.six_gs, r6 = sc.rcp_six_gs;                   \
    switch (d) {                                                                           \
      case DType::F32: detail::nvfp4_row<DType::F32, kTriton>(in, out, n, g, s6, r6); break; \
      case DType::BF16: detail::nvfp4_row<DType::BF16, kTriton>(in, out, n, g, s6, r6); break; \
      default: detail::nvfp4_row<DType::F16, kTriton>(in, out, n, g, s6, r6); break;       \
    }                                                                                      \
  }                                                                                        \
  ATTR void nvfp4_row_##SUFFIX(const void* in, void* out, int64_t n, DType d,              \
                               const Nvfp4Scales& sc) {                                    \
    if (sc.division == Nvfp4Division::kTriton) nvfp4_row_t_##SUFFIX<true>(in, out, n, d, sc); \
    else nvfp4_row_t_##SUFFIX<false>(in, out, n, d, sc);                                   \
  }

QARL_QK_DEFINE_ISA(scalar, )
#if defined(__x86_64__)
QARL_QK_DEFINE_ISA(avx2, __attribute__((target("avx2,f16c"))))
QARL_QK_DEFINE_ISA(avx512, __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,f16c"))))
#endif

struct Kernels {
  Fp8RowFn fp8;
  Nvfp4RowFn nvfp4;
  const char* name;
};

bool cpu_has(std::string_view isa) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (isa == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (isa == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
#endif
  return isa == "scalar";
}

Kernels kernels_for(std::string_view isa) {
#if defined(__x86_64__)
  if (isa == "avx512") return {fp8_row_avx512, nvfp4_row_avx512, "avx512"};
  if (isa == "avx2") return {fp8_row_avx2, nvfp4_row_avx2, "avx2"};
#endif
  return {fp8_row_scalar, nvfp4_row_scalar, "scalar"};
}

Kernels detect() {
  for (const char* isa : {"avx512", "avx2"})
    if (cpu_has(isa)) return kernels_for(isa);
  return kernels_for("scalar");
}

Kernels& active() {
  static Kernels k = detect();
  return k;
}

void check_float_dtype(DType d, const char* what) {
  if (d != DType::F32 && d != DType::BF16 && d != DType::F16)
    throw err("{}: dtype {} is not supported (F32, BF16, F16)", what, dtype_name(d));
}

void check_cpu_float(const Tensor& x, const char* what) {
  if (!x.defined()) throw err("{}: undefined tensor", what);
  if (x.device() != Device::CPU) throw err("{}: tensor is not on the CPU", what);
  check_float_dtype(x.dtype(), what);
}

int64_t nvfp4_check_last_dim(const Tensor& x) {
  if (x.ndim() == 0) throw err("NVFP4 fake quantization needs at least one dimension");
  int64_t last = x.dim(-1);
  if (last % kNvfp4BlockSize != 0)
    throw err("NVFP4 fake quantization: last dimension {} of shape {} is not a multiple of {}",
              last, shape_str(x.shape()), kNvfp4BlockSize);
  return last;
}

// Runs fn(begin, count) over [0, n) in chunks (multiples of `align`), in parallel when the
// tensor is big enough to be worth the threads.
template <typename Fn>
void parallel_chunks(int64_t n, int64_t align, Fn fn) {
  const int64_t chunk = 16384;  // elements, a multiple of 16
  (void)align;
  int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (nchunks > 1)
  for (int64_t c = 0; c < nchunks; ++c) {
    int64_t b = c * chunk;
    fn(b, std::min(chunk, n - b));
  }
}

}  // namespace

const char* fake_quant_isa() { return active().name; }

void set_fake_quant_isa(const char* isa) {
  std::string_view v = isa;
  if (v == "auto") { active() = detect(); return; }
  if (v != "scalar" && v != "avx2" && v != "avx512") throw usage_err("unknown ISA '{}'", v);
  if (!cpu_has(v)) throw usage_err("this CPU does not support {}", v);
  active() = kernels_for(v);
}

// ---- Rows --------------------------------------------------------------------------------
void fake_quant_fp8_row(const void* in, void* out, int64_t n, DType dtype, Fp8Scales sc) {
  check_float_dtype(dtype, "FP8 fake quantization");
  active().fp8(in, out, n, dtype, sc.scale, sc.inv_scale);
}

void fake_quant_nvfp4_row(const void* in, void* out, int64_t n, DType dtype,
                          const Nvfp4Scales& sc) {
  check_float_dtype(dtype, "NVFP4 fake quantization");
  if (n % kNvfp4BlockSize != 0)
    throw err("NVFP4 fake quantization: row length {} is not a multiple of {}", n,
              kNvfp4BlockSize);
  active().nvfp4(in, out, n, dtype, sc);
}

// ---- Whole tensors ----------------------------------------------------------------------
namespace {
void run_tensor(const Tensor& x, const Tensor& y, Format format, float amax,
                Nvfp4Division division) {
  const DType d = x.dtype();
  const size_t es = dtype_size(d);
  const char* in = static_cast<const char*>(x.data());
  char* out = static_cast<char*>(y.data());
  if (format == Format::FP8) {
    Fp8Scales sc = fp8_scales(amax);
    Fp8RowFn fn = active().fp8;
    parallel_chunks(x.numel(), 1, [&](int64_t b, int64_t c) {
      fn(in + b * es, out + b * es, c, d, sc.scale, sc.inv_scale);
    });
  } else {
    nvfp4_check_last_dim(x);
    const Nvfp4Scales sc = nvfp4_scales(amax, division);
    Nvfp4RowFn fn = active().nvfp4;
    // Blocks never straddle rows (last dim % 16 == 0), so the tensor is a flat run of blocks.
    parallel_chunks(x.numel(), kNvfp4BlockSize, [&](int64_t b, int64_t c) {
      fn(in + b * es, out + b * es, c, d, sc);
    });
  }
}
}  // namespace

Tensor fake_quant(const Tensor& x, Format format, float amax, Nvfp4Division division) {
  check_cpu_float(x, format == Format::FP8 ? "FP8 fake quantization" : "NVFP4 fake quantization");
  if (format == Format::NVFP4) nvfp4_check_last_dim(x);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  run_tensor(x, y, format, amax, division);
  return y;
}

Tensor fake_quant_fp8(const Tensor& x, float amax) { return fake_quant(x, Format::FP8, amax); }
Tensor fake_quant_nvfp4(const Tensor& x, float amax, Nvfp4Division division) {
  return fake_quant(x, Format::NVFP4, amax, division);
}

void fake_quant_(Tensor& x, Format format, float amax, Nvfp4Division division) {
  check_cpu_float(x, format == Format::FP8 ? "FP8 fake quantization" : "NVFP4 fake quantization");
  run_tensor(x, x, format, amax, division);
}

// ---- Native encodings ------------------------------------------------------------------
namespace {
template <DType D>
void encode_fp8_t(const void* in, int64_t n, Fp8Scales sc, uint8_t* codes) {
  for (int64_t i = 0; i < n; ++i) codes[i] = e4m3_encode(detail::load<D>(in, i) * sc.scale);
}
template <DType D>
void decode_fp8_t(const uint8_t* codes, int64_t n, float inv, void* out) {
  for (int64_t i = 0; i < n; ++i) detail::store<D>(out, i, e4m3_decode(codes[i]) * inv);
}
template <DType D>
void encode_nvfp4_t(const void* in, int64_t n, const Nvfp4Scales& sc, uint8_t* packed,
                    uint8_t* scales) {
  const bool triton = sc.division == Nvfp4Division::kTriton;
  const float gs = sc.global_scale;
  for (int64_t b = 0; b < n; b += 16) {
    float x[16];
    for (int i = 0; i < 16; ++i) x[i] = detail::load<D>(in, b + i);
    float s8 = triton ? detail::nvfp4_block_s8<true>(x, sc.six_gs, sc.rcp_six_gs)
                      : detail::nvfp4_block_s8<false>(x, sc.six_gs, sc.rcp_six_gs);
    float S = s8 * gs;
    float rS = triton ? triton_rcp(S) : 0.0f;
    scales[b / 16] = e4m3_encode(s8);  // s8 is an E4M3 value: exact
    for (int i = 0; i < 16; i += 2) {
      uint8_t c[2];
      for (int k = 0; k < 2; ++k) {
        float xi = x[i + k];
        float r = triton ? std::fabs(xi) * rS : std::fabs(xi) / S;
        uint8_t mag = e2m1_magnitude_code(r);
        // Sign bit so that decode's (sign ? -v : v) reproduces the fake quantizer: PyTorch
        // keeps -0 for negative x; Triton's 0 - v gives +0 whenever v = q*S is 0.
        bool neg = !(xi >= 0.0f) && (!triton || e2m1_decode(mag) * S != 0.0f);
        c[k] = uint8_t(mag | (neg ? 8 : 0));
      }
      packed[(b + i) / 2] = e2m1_pack(c[0], c[1]);
    }
  }
}
template <DType D>
void decode_nvfp4_t(const uint8_t* packed, const uint8_t* scales, int64_t n, float gs,
                    void* out) {
  for (int64_t b = 0; b < n; b += 16) {
    float S = e4m3_decode(scales[b / 16]) * gs;
    for (int i = 0; i < 16; ++i) {
      uint8_t byte = packed[(b + i) / 2];
      uint8_t code = (i & 1) ? e2m1_unpack_odd(byte) : e2m1_unpack_even(byte);
      float v = e2m1_decode(code & 7) * S;
      detail::store<D>(out, b + i, (code & 8) ? -v : v);
    }
  }
}
#define QARL_QK_DTYPE_SWITCH(d, CALL)                        \
  switch (d) {                                                \
    case DType::F32: { constexpr DType D = DType::F32; CALL; break; }   \
    case DType::BF16: { constexpr DType D = DType::BF16; CALL; break; } \
    default: { constexpr DType D = DType::F16; CALL; break; }           \
  }
}  // namespace

void encode_fp8_row(const void* in, DType dtype, int64_t n, Fp8Scales sc, uint8_t* codes) {
  check_float_dtype(dtype, "FP8 encode");
  QARL_QK_DTYPE_SWITCH(dtype, (encode_fp8_t<D>(in, n, sc, codes)));
}
void decode_fp8_row(const uint8_t* codes, int64_t n, float inv, void* out, DType dtype) {
  check_float_dtype(dtype, "FP8 decode");
  QARL_QK_DTYPE_SWITCH(dtype, (decode_fp8_t<D>(codes, n, inv, out)));
}
void encode_nvfp4_row(const void* in, DType dtype, int64_t n, const Nvfp4Scales& sc,
                      uint8_t* packed, uint8_t* scales) {
  check_float_dtype(dtype, "NVFP4 encode");
  if (n % kNvfp4BlockSize != 0)
    throw err("NVFP4 encode: row length {} is not a multiple of {}", n, kNvfp4BlockSize);
  QARL_QK_DTYPE_SWITCH(dtype, (encode_nvfp4_t<D>(in, n, sc, packed, scales)));
}
void decode_nvfp4_row(const uint8_t* packed, const uint8_t* scales, int64_t n, float gs,
                      void* out, DType dtype) {
  check_float_dtype(dtype, "NVFP4 decode");
  if (n % kNvfp4BlockSize != 0)
    throw err("NVFP4 decode: row length {} is not a multiple of {}", n, kNvfp4BlockSize);
  QARL_QK_DTYPE_SWITCH(dtype, (decode_nvfp4_t<D>(packed, scales, n, gs, out)));
}

// ---- Backward --------------------------------------------------------------------------
Tensor fake_quant_backward(const Tensor& dy, const Tensor& x, float amax, bool pass_through) {
  check_cpu_float(dy, "fake-quant backward");
  if (pass_through) return dy.clone();
  check_cpu_float(x, "fake-quant backward");
  if (dy.shape() != x.shape())
    throw err("fake-quant backward: gradient shape {} differs from input shape {}",
              shape_str(dy.shape()), shape_str(x.shape()));
  if (!std::isfinite(amax)) throw err("fake-quant backward: amax {} is not finite", amax);
  Tensor dx = dy.clone();
  std::vector<float> xv = x.to_f32_vector();
  const DType d = dx.dtype();
  const int64_t n = dx.numel();
  QARL_QK_DTYPE_SWITCH(d, ({
    for (int64_t i = 0; i < n; ++i)
      if (!(std::fabs(xv[i]) <= amax)) detail::store<D>(dx.data(), i, 0.0f);
  }));
  return dx;
}

}  // namespace qarl::quant
