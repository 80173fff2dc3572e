#include "qarl/refit/tensor_table_target.h"

#include "qarl/core/error.h"

namespace qarl::refit {

void TensorTableTarget::add(RuntimeParam param, Tensor serving) {
  if (!serving.defined() || serving.shape() != param.shape || serving.dtype() != param.dtype)
    throw Error(fmt::format("serving tensor does not match its declared {} {}",
                            dtype_name(param.dtype), shape_str(param.shape)),
                ErrorKind::Internal)
        .tensor(param.name);
  if (!serving_.emplace(param.name, serving).second)
    throw Error("runtime tensor registered twice", ErrorKind::Internal).tensor(param.name);
  params_.push_back(std::move(param));
}

void TensorTableTarget::begin_stage() { staged_.clear(); }

Tensor TensorTableTarget::staged(const std::string& name) {
  auto it = staged_.find(name);
  if (it != staged_.end()) return it->second;
  auto s = serving_.find(name);
  if (s == serving_.end()) throw Error("no such runtime tensor", ErrorKind::Internal).tensor(name);
  // A copy of the serving values: shards of a fused tensor fill it piecewise.
  return staged_[name] = s->second.clone();
}

void TensorTableTarget::commit() {
  for (auto& [name, t] : staged_) serving_.at(name).copy_from(t);
  staged_.clear();
}

const Tensor& TensorTableTarget::serving(const std::string& name) const {
  auto it = serving_.find(name);
  if (it == serving_.end()) throw Error("no such runtime tensor", ErrorKind::Internal).tensor(name);
  return it->second;
}

}  // namespace qarl::refit
