#include "qarl/rl/policy_export.h"

#include "qarl/core/error.h"

namespace qarl::rl {

std::vector<refit::NamedTensor> ModelExport::named_parameters() const {
  std::vector<refit::NamedTensor> out;
  for (const auto& n : m_.param_names()) {
    const Tensor& p = m_.param(n);
    out.push_back({n, p.dtype() == m_.dtype() ? p : p.to(m_.dtype())});
  }
  return out;
}

std::vector<refit::QuantizerState> kv_quantizer_states(const model::Model& m) {
  std::vector<refit::QuantizerState> out;
  for (const auto& [name, q] : m.kv_quantizers()) {
    refit::QuantizerState s{name, q->enabled(), q->enabled() && !q->has_amax_buffer(), {}};
    if (q->has_amax_buffer()) s.amax = q->amax_tensor();
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<refit::QuantizerState> ModelExport::quantizers() const {
  return override_ ? *override_ : kv_quantizer_states(m_);
}

Tensor ModelExport::fold_weight(const refit::QuantizerState& wq, const Tensor&) const {
  throw Error("weight quantizer '" + wq.name + "' is not supported by qarl's model yet",
              ErrorKind::Internal);
}

}  // namespace qarl::rl
