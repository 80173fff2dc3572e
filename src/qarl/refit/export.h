// Trainer side of a refit: what is sent, in which order, under which names.
//
// The trainer implements ExportSource (its named parameters in HF naming, its quantizer
// states, and how to fold a weight through its weight quantizer). plan_export() turns that
// into an ordered list of ExportItem: the refit metadata and the refit stream both come from
// this one list, so they cannot disagree (reference-spec 1.4).
//
// Order and content:
//   1. every parameter, in named_parameters() order; a parameter `<m>.weight` whose
//      quantizer `<m>.weight_quantizer` is enabled is sent pre-folded (fake-quantized,
//      same shape and dtype); names containing "weight_quantizer" are never sent;
//   2. `<q>._amax` for every enabled input quantizer `<q>` (name ends in ".input_quantizer");
//   3. `<parent>.k_bmm_quantizer._amax` and `<parent>.v_bmm_quantizer._amax` as 0-d tensors
//      for every calibrated K/V quantizer (enabled, not constant amax); nothing for
//      constant-amax ones, nor for quantizers under a draft/mtp segment (speculative
//      decoding stacks, skipped as Megatron-Bridge does). q_bmm quantizers are never sent.
// An enabled quantizer that should carry an amax but has none, or a non-positive or
// non-finite one, is an Error here: the trainer must not send uncalibrated state.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "qarl/refit/stream.h"

namespace qarl::refit {

// One quantizer of the trainer, named by its HF-semantic module path, e.g.
// "model.layers.3.self_attn.k_bmm_quantizer", "model.layers.3.mlp.down_proj.input_quantizer",
// "model.layers.3.mlp.down_proj.weight_quantizer".
struct QuantizerState {
  std::string name;
  bool enabled = false;
  bool constant_amax = false;  // ModelOpt use_constant_amax: no _amax buffer exists
  Tensor amax;                 // undefined when there is none
};

class ExportSource {
 public:
  virtual ~ExportSource() = default;
  // Parameters in HF naming and a fixed order (the stream order).
  virtual std::vector<NamedTensor> named_parameters() const = 0;
  virtual std::vector<QuantizerState> quantizers() const = 0;
  // Fake-quantizes `weight` through weight quantizer `wq` (wq(w.float()).to(w.dtype)); the
  // result must have the weight's shape and dtype. Called lazily, once per streamed weight.
  virtual Tensor fold_weight(const QuantizerState& wq, const Tensor& weight) const = 0;
};

struct ExportItem {
  TensorMeta meta;
  std::function<Tensor()> produce;  // the tensor to send (folded weights computed here)
};

std::vector<ExportItem> plan_export(const ExportSource& source);
RefitMetadata export_metadata(const std::vector<ExportItem>& plan);
// Convenience: produces every item and calls `fn(name, tensor)` in order, checking each
// produced tensor against its planned metadata.
void for_each_export(const std::vector<ExportItem>& plan,
                     const std::function<void(const std::string&, const Tensor&)>& fn);

bool is_kv_amax_name(const std::string& name);  // ends with ".{k,v}_bmm_quantizer._amax"

}  // namespace qarl::refit
