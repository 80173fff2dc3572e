// The trainer side of a refit for a model::Model: its HF-named parameters in the checkpoint
// dtype, and the states of its K/V quantizers (refit::ExportSource, see refit/export.h).
#pragma once
#include <optional>
#include <vector>

#include "qarl/model/model.h"
#include "qarl/refit/export.h"

namespace qarl::rl {

class ModelExport : public refit::ExportSource {
 public:
  // `kv_states_override`: quantizer states sent instead of the model's own. A rollout-only
  // experiment trains with quantizers off but still owes the rollout its calibrated K/V amax.
  explicit ModelExport(const model::Model& m,
                       std::optional<std::vector<refit::QuantizerState>> kv_states_override = {})
      : m_(m), override_(std::move(kv_states_override)) {}

  std::vector<refit::NamedTensor> named_parameters() const override;
  std::vector<refit::QuantizerState> quantizers() const override;
  // KV-only recipes have no weight quantizers; a weight quantizer reaching here is a bug.
  Tensor fold_weight(const refit::QuantizerState& wq, const Tensor& w) const override;

 private:
  const model::Model& m_;
  std::optional<std::vector<refit::QuantizerState>> override_;
};

// The K/V quantizer states of a model as refit sees them.
std::vector<refit::QuantizerState> kv_quantizer_states(const model::Model& m);

}  // namespace qarl::rl
