#include "qarl/quant/quantizer.h"

#include <cmath>
#include <cstring>

#include "qarl/core/error.h"

namespace qarl::quant {

std::string describe(const QuantizerConfig& c) {
  if (!c.enable) return "disabled";
  std::string s = c.format == Format::FP8 ? "fp8 e4m3" : "nvfp4 e2m1";
  s += c.block_size > 0 ? fmt::format(" block {}", c.block_size) : std::string(" per-tensor");
  s += c.use_constant_amax ? ", constant amax" : ", calibrated amax";
  if (!c.pass_through_bwd) s += ", clipped backward";
  return s;
}

TensorQuantizer::TensorQuantizer(QuantizerConfig cfg) : cfg_(cfg) {
  if (cfg_.format == Format::NVFP4 && cfg_.block_size != kNvfp4BlockSize)
    throw err("NVFP4 quantizer needs block size {}, got {}", kNvfp4BlockSize, cfg_.block_size);
  if (cfg_.format == Format::FP8 && cfg_.block_size != 0)
    throw err("FP8 quantizer supports only per-tensor scaling (block size {})", cfg_.block_size);
  if (has_amax_buffer()) amax_ = Tensor::scalar(kAmaxSentinel, DType::F32);
}

void TensorQuantizer::set_amax(const Tensor& amax, const std::string& name) {
  if (!has_amax_buffer())
    throw err("quantizer has no _amax buffer ({})", describe(cfg_)).tensor(name);
  if (!amax.defined() || amax.numel() != 1)
    throw err("amax must be a scalar (one element), got shape {}",
              amax.defined() ? shape_str(amax.shape()) : std::string("undefined"))
        .tensor(name);
  if (!dtype_is_float(amax.dtype()) || amax.dtype() == DType::F8_E4M3)
    throw err("amax dtype {} is not F32/BF16/F16/F64", dtype_name(amax.dtype())).tensor(name);
  Tensor host = amax.device() == Device::CPU ? amax : amax.to_device(Device::CPU);
  double v = host.item();
  if (!std::isfinite(v)) throw err("amax {} is not finite", v).tensor(name);
  if (v < 0 && v != kAmaxSentinel)
    throw err("amax {} is negative (only the sentinel -1 is allowed)", v).tensor(name);
  amax_ = host.reshape({}).clone();
}

void TensorQuantizer::set_amax(float amax, DType dtype, const std::string& name) {
  set_amax(Tensor::scalar(amax, dtype), name);
}

bool TensorQuantizer::amax_received() const {
  return has_amax_buffer() && amax_.item() != double(kAmaxSentinel);
}

float TensorQuantizer::effective_amax() const {
  if (!cfg_.enable) throw err("quantizer is disabled: it has no amax");
  if (calibrating_) throw err("quantizer is calibrating: amax not frozen yet");
  if (cfg_.use_constant_amax) return kFp8ConstantAmax;
  if (!amax_received())
    throw err("quantizer amax has not been received (still the sentinel -1)");
  return float(amax_.item());
}

void TensorQuantizer::start_calibration() {
  if (!has_amax_buffer())
    throw err("cannot calibrate a quantizer without _amax ({})", describe(cfg_));
  calibrating_ = true;
  calib_max_ = -1.0f;
}

void TensorQuantizer::observe(const Tensor& x) {
  if (!calibrating_) throw err("observe() outside calibration");
  if (calib_max_ < 0) calib_dtype_ = x.dtype();
  Tensor h = x.device() == Device::CPU ? x : x.to_device(Device::CPU);
  float m = calib_max_ < 0 ? 0.0f : calib_max_;
  for (float v : h.to_f32_vector()) {
    float a = std::fabs(v);
    if (a > m) m = a;
  }
  calib_max_ = m;
}

void TensorQuantizer::finish_calibration() {
  if (!calibrating_) throw err("finish_calibration() without start_calibration()");
  if (calib_max_ < 0) throw err("calibration observed no data");
  calibrating_ = false;
  if (!std::isfinite(calib_max_)) throw err("calibrated amax {} is not finite", calib_max_);
  // ModelOpt keeps amax in the activation dtype: max|x| of bf16 values is a bf16 value.
  amax_ = Tensor::scalar(calib_max_, calib_dtype_);
}

Tensor TensorQuantizer::forward(const Tensor& x) {
  if (!cfg_.enable) return x;
  if (calibrating_) { observe(x); return x; }
  return fake_quant(x, cfg_.format, effective_amax());
}

void TensorQuantizer::forward_(Tensor& x) {
  if (!cfg_.enable) return;
  if (calibrating_) { observe(x); return; }
  fake_quant_(x, cfg_.format, effective_amax());
}

void TensorQuantizer::forward_row(const void* in, void* out, int64_t n, DType dtype) const {
  if (!cfg_.enable) {
    if (in != out) std::memmove(out, in, size_t(n) * dtype_size(dtype));
    return;
  }
  if (calibrating_) throw err("forward_row() while calibrating");
  float a = effective_amax();
  if (cfg_.format == Format::FP8) fake_quant_fp8_row(in, out, n, dtype, fp8_scales(a));
  else fake_quant_nvfp4_row(in, out, n, dtype, nvfp4_scales(a));
}

Tensor TensorQuantizer::backward(const Tensor& dy, const Tensor& x) const {
  if (!cfg_.enable || cfg_.pass_through_bwd) return fake_quant_backward(dy, x, 0.0f, true);
  return fake_quant_backward(dy, x, effective_amax(), false);
}

}  // namespace qarl::quant
