#include "qarl/train/adamw.h"

#include <cmath>

#include "qarl/core/error.h"

namespace qarl::train {

AdamW::AdamW(AdamWOptions o) : o_(o) {
  if (!(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1))
    throw usage_err("AdamW: betas must be in [0, 1), got ({}, {})", o.beta1, o.beta2);
  if (!(o.eps > 0)) throw usage_err("AdamW: eps must be positive");
  if (!(o.weight_decay >= 0)) throw usage_err("AdamW: weight_decay must be >= 0");
}

void AdamW::add_param(const std::string& name, const Tensor& initial, bool decay) {
  if (slots_.count(name)) throw err("AdamW: parameter registered twice").tensor(name);
  Slot s;
  s.master = initial.to(DType::F32).clone();
  s.m = Tensor::zeros(initial.shape(), DType::F32);
  s.v = Tensor::zeros(initial.shape(), DType::F32);
  s.decay = decay;
  slots_.emplace(name, std::move(s));
  order_.push_back(name);
}

const Tensor& AdamW::master(const std::string& name) const {
  auto it = slots_.find(name);
  if (it == slots_.end()) throw err("AdamW: no such parameter").tensor(name);
  return it->second.master;
}

void AdamW::step(const std::map<std::string, Tensor>& grads, double lr) {
  for (const auto& name : order_) {
    auto it = grads.find(name);
    if (it == grads.end()) throw err("AdamW: no gradient for parameter").tensor(name);
    const Tensor& g = it->second;
    if (g.dtype() != DType::F32 || g.device() != Device::CPU || g.shape() != slots_.at(name).master.shape())
      throw err("AdamW: gradient must be fp32 on CPU with shape {}, got {} {}",
                shape_str(slots_.at(name).master.shape()), dtype_name(g.dtype()), shape_str(g.shape()))
          .tensor(name);
  }
  if (grads.size() != order_.size())
    for (const auto& [name, g] : grads)
      if (!slots_.count(name)) throw err("AdamW: gradient for an unknown parameter").tensor(name);
  ++step_;
  const double b1 = o_.beta1, b2 = o_.beta2;
  const double bc1 = 1.0 - std::pow(b1, double(step_));
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(b2, double(step_)));
  const double step_size = lr / bc1;
  for (const auto& name : order_) {
    Slot& s = slots_.at(name);
    float* p = s.master.data_as<float>();
    float* m = s.m.data_as<float>();
    float* v = s.v.data_as<float>();
    const float* g = grads.at(name).data_as<float>();
    const double decay = s.decay ? lr * o_.weight_decay : 0.0;
    const int64_t n = s.master.numel();
    for (int64_t i = 0; i < n; ++i) {
      // Arithmetic in double, stored in fp32: the moments and master stay fp32 tensors.
      double pi = double(p[i]) * (1.0 - decay);
      const double gi = double(g[i]);
      const double mi = b1 * double(m[i]) + (1.0 - b1) * gi;
      const double vi = b2 * double(v[i]) + (1.0 - b2) * gi * gi;
      m[i] = float(mi);
      v[i] = float(vi);
      pi -= step_size * double(m[i]) / (std::sqrt(double(v[i])) / bc2_sqrt + o_.eps);
      p[i] = float(pi);
    }
  }
}

std::vector<std::pair<std::string, Tensor>> AdamW::state_tensors() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& name : order_) {
    const Slot& s = slots_.at(name);
    out.emplace_back(name + ".master", s.master);
    out.emplace_back(name + ".exp_avg", s.m);
    out.emplace_back(name + ".exp_avg_sq", s.v);
  }
  return out;
}

void AdamW::load_state(const std::map<std::string, Tensor>& tensors, int64_t step,
                       const std::string& source) {
  if (step < 0) throw err("optimizer step {} is negative", step).file(source);
  std::map<std::string, Slot> next;
  size_t used = 0;
  for (const auto& name : order_) {
    Slot s;
    s.decay = slots_.at(name).decay;
    const Shape& shape = slots_.at(name).master.shape();
    for (auto [suffix, dst] : {std::pair<const char*, Tensor*>{".master", &s.master},
                               {".exp_avg", &s.m}, {".exp_avg_sq", &s.v}}) {
      const std::string key = name + suffix;
      auto it = tensors.find(key);
      if (it == tensors.end()) throw err("optimizer state tensor missing").file(source).tensor(key);
      if (it->second.dtype() != DType::F32 || it->second.shape() != shape)
        throw err("expected fp32 {}, found {} {}", shape_str(shape), dtype_name(it->second.dtype()),
                  shape_str(it->second.shape()))
            .file(source).tensor(key);
      *dst = it->second.to_device(Device::CPU).clone();
      ++used;
    }
    next.emplace(name, std::move(s));
  }
  if (used != tensors.size())
    for (const auto& [key, t] : tensors) {
      bool known = false;
      for (const auto& name : order_)
        for (const char* suffix : {".master", ".exp_avg", ".exp_avg_sq"})
          known = known || key == name + suffix;
      if (!known) throw err("unknown optimizer state tensor").file(source).tensor(key);
    }
  slots_ = std::move(next);
  step_ = step;
}

}  // namespace qarl::train
