// A tensor quantizer with ModelOpt's TensorQuantizer state, for one K or V site:
//   enabled, format (fp8 / nvfp4), block size, `_amax` as a 0-d tensor (dtype of the
//   activations that produced it, bf16 typically), or no `_amax` at all when
//   use_constant_amax (forward uses 448), the -1 sentinel meaning "not yet received"
//   (rollout side, before the first refit), pass_through_bwd.
// Max calibration as ModelOpt: while calibrating, forward only records max|x| and returns
// x unchanged (so every layer's amax comes from the unquantized forward); finishing
// calibration freezes amax = max over all batches as a 0-d tensor.
#pragma once
#include <optional>
#include <string>

#include "qarl/core/tensor.h"
#include "qarl/quant/fake_quant.h"

namespace qarl::quant {

constexpr float kAmaxSentinel = -1.0f;

// The settings a recipe gives one quantizer (ModelOpt QuantizerAttributeConfig subset).
struct QuantizerConfig {
  bool enable = false;
  Format format = Format::FP8;
  int block_size = 0;              // 0 = per tensor (FP8); 16 for NVFP4
  bool use_constant_amax = false;  // FP8 only in practice: amax = 448, no _amax buffer
  bool pass_through_bwd = true;    // ModelOpt default: straight-through gradient
  bool operator==(const QuantizerConfig&) const = default;
};
std::string describe(const QuantizerConfig& c);  // "fp8 per-tensor, constant amax", ...

class TensorQuantizer {
 public:
  TensorQuantizer() = default;
  explicit TensorQuantizer(QuantizerConfig cfg);

  const QuantizerConfig& config() const { return cfg_; }
  bool enabled() const { return cfg_.enable; }
  // ModelOpt registers `_amax` only when the amax is not constant.
  bool has_amax_buffer() const { return cfg_.enable && !cfg_.use_constant_amax; }

  // `_amax` (0-d); undefined when there is no buffer. Starts as the sentinel -1 (F32).
  const Tensor& amax_tensor() const { return amax_; }
  // Loads `_amax` (e.g. from a checkpoint or a refit): must have one element (ModelOpt:
  // "Only scalar states are supported for KV Cache/BMM Quantizers"), be finite and either
  // >= 0 or the sentinel -1. Stored as a 0-d tensor of the given dtype. `name` is used in
  // errors. Error if the quantizer has no `_amax` buffer.
  void set_amax(const Tensor& amax, const std::string& name = "_amax");
  void set_amax(float amax, DType dtype = DType::F32, const std::string& name = "_amax");
  bool amax_received() const;  // has a buffer and it is not the sentinel
  // The amax the kernels use: 448 for constant amax, else float(_amax). Error when the
  // quantizer is disabled, still has the sentinel, or is calibrating.
  float effective_amax() const;

  // ---- Calibration (max) ----
  void start_calibration();  // Error if there is no `_amax` buffer
  bool calibrating() const { return calibrating_; }
  void observe(const Tensor& x);  // max |x| (NaN ignored); Error if not calibrating
  // Freezes `_amax` = max observed (0-d tensor, dtype of the first observed batch).
  // Error if nothing was observed.
  void finish_calibration();

  // ---- Forward / backward ----
  // Disabled: returns x. Calibrating: observes x and returns x. Else fake-quantizes.
  Tensor forward(const Tensor& x);
  void forward_(Tensor& x);  // in place, same rules
  // One contiguous row (e.g. one token's K or V, n_kv*head_dim values); bitwise identical
  // to forward() on any tensor containing that row. Not for calibration.
  void forward_row(const void* in, void* out, int64_t n, DType dtype) const;
  // Straight-through, or clipped at effective_amax() when pass_through_bwd is false.
  Tensor backward(const Tensor& dy, const Tensor& x) const;

 private:
  QuantizerConfig cfg_;
  Tensor amax_;
  bool calibrating_ = false;
  float calib_max_ = -1.0f;
  DType calib_dtype_ = DType::F32;
};

}  // namespace qarl::quant
