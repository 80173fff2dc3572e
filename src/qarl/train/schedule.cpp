#include "qarl/train/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "qarl/core/error.h"

namespace qarl::train {

LrDecay parse_lr_decay(const std::string& s) {
  if (s == "constant") return LrDecay::Constant;
  if (s == "cosine") return LrDecay::Cosine;
  throw usage_err("unknown lr schedule '{}' (expected constant or cosine)", s);
}

double LrSchedule::at(int64_t step) const {
  if (warmup_steps > 0 && step <= warmup_steps) return lr * double(std::max<int64_t>(step, 0)) / double(warmup_steps);
  if (decay == LrDecay::Constant) return lr;
  const int64_t span = total_steps - warmup_steps;
  const double progress = span > 0 ? std::clamp(double(step - warmup_steps) / double(span), 0.0, 1.0) : 1.0;
  return min_lr + (lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

namespace {
void check_grad(const std::string& name, const Tensor& g) {
  if (g.dtype() != DType::F32 || g.device() != Device::CPU)
    throw err("gradient must be an fp32 CPU tensor").tensor(name);
}
}  // namespace

double global_grad_norm(const std::map<std::string, Tensor>& grads) {
  double ss = 0;
  for (const auto& [name, g] : grads) {
    check_grad(name, g);
    const float* p = g.data_as<float>();
    for (int64_t i = 0; i < g.numel(); ++i) ss += double(p[i]) * double(p[i]);
  }
  return std::sqrt(ss);
}

double clip_grad_norm(std::map<std::string, Tensor>& grads, double max_norm) {
  const double norm = global_grad_norm(grads);
  if (max_norm > 0 && norm > max_norm) {
    const float coef = float(max_norm / (norm + 1e-6));
    for (auto& [name, g] : grads) {
      float* p = g.data_as<float>();
      for (int64_t i = 0; i < g.numel(); ++i) p[i] *= coef;
    }
  }
  return norm;
}

void GradAccumulator::add(const std::map<std::string, Tensor>& micro) {
  if (count_ > 0 && micro.size() != sum_.size())
    throw err("gradient accumulation: micro-batch has {} tensors, expected {}", micro.size(), sum_.size());
  for (const auto& [name, g] : micro) {
    check_grad(name, g);
    auto it = sum_.find(name);
    if (it == sum_.end()) {
      if (count_ > 0) throw err("gradient accumulation: new tensor in a later micro-batch").tensor(name);
      sum_.emplace(name, g.clone());
      continue;
    }
    if (it->second.shape() != g.shape())
      throw err("gradient accumulation: shape {} differs from {}", shape_str(g.shape()),
                shape_str(it->second.shape())).tensor(name);
    float* d = it->second.data_as<float>();
    const float* s = g.data_as<float>();
    for (int64_t i = 0; i < g.numel(); ++i) d[i] += s[i];
  }
  ++count_;
}

}  // namespace qarl::train
