#include "qarl/gpu/gpu_adamw.h"

#include <cmath>

#include <cuda_runtime.h>

#include "qarl/core/error.h"
#include "qarl/kernels/cuda/model_ops.h"

namespace qarl::gpu {
namespace kg = kernels::gpu;

GpuAdamW::GpuAdamW(GpuModel& m, train::AdamWOptions o) : m_(m), o_(o) {
  train::AdamW validate(o);  // the same option checks as the CPU optimizer
  for (const auto& name : m.param_names()) {
    const Tensor p = m.master(name);
    moments_[name] = {Tensor::zeros(p.shape(), DType::F32, Device::CUDA),
                      Tensor::zeros(p.shape(), DType::F32, Device::CUDA)};
  }
}

double GpuAdamW::grad_norm(GpuGrads& g) const {
  g.apply_clip_scale();
  Tensor acc = Tensor::zeros({1}, DType::F64, Device::CUDA);
  kg::launch_sum_squares(g.flat.data_as<float>(), g.flat.numel(), acc.data_as<double>(), nullptr);
  kg::check_last_launch("gradient norm");
  return std::sqrt(acc.to_f64_vector()[0]);
}

double GpuAdamW::clip(GpuGrads& g, double max_norm) const {
  const double n = grad_norm(g);
  if (max_norm > 0 && n > max_norm && std::isfinite(n)) {
    g.clip_scale = float(max_norm / (n + 1e-6));  // train::clip_grad_norm's coefficient
  }
  return n;
}

void GpuAdamW::step(const GpuGrads& g, double lr) {
  ++step_;
  const double b1 = o_.beta1, b2 = o_.beta2;
  kg::AdamWScalars s{};
  s.beta1 = b1;
  s.beta2 = b2;
  s.eps = o_.eps;
  s.step_size = lr / (1.0 - std::pow(b1, double(step_)));
  s.bc2_sqrt = std::sqrt(1.0 - std::pow(b2, double(step_)));
  s.grad_scale = g.clip_scale;
  for (const auto& name : m_.param_names()) {
    const Tensor p = m_.master(name);
    auto& [mm, vv] = moments_.at(name);
    s.decay = lr * o_.weight_decay;  // every parameter, as the CPU trainer registers them
    kg::launch_adamw_step(p.data_as<float>(), mm.data_as<float>(), vv.data_as<float>(),
                          g.by_name.at(name).data_as<float>(), p.numel(), s,
                          static_cast<kg::bf16*>(m_.working_of(name)), nullptr);
  }
  kg::check_last_launch("AdamW step");
}

void GpuAdamW::export_to(train::AdamW& cpu) const {
  std::map<std::string, Tensor> t;
  for (const auto& name : m_.param_names()) {
    t[name + ".master"] = m_.master(name).to_device(Device::CPU);
    t[name + ".exp_avg"] = moments_.at(name).first.to_device(Device::CPU);
    t[name + ".exp_avg_sq"] = moments_.at(name).second.to_device(Device::CPU);
  }
  cpu.load_state(t, step_, "the GPU optimizer");
}

void GpuAdamW::import_from(const train::AdamW& cpu) {
  std::map<std::string, Tensor> t;
  for (auto& [n, v] : cpu.state_tensors()) t[n] = v;
  for (const auto& name : m_.param_names())
    for (const char* k : {".master", ".exp_avg", ".exp_avg_sq"})
      if (!t.count(name + k)) throw err("CPU optimizer state has no '{}'", name + k);
  for (const auto& name : m_.param_names()) {
    m_.master(name).copy_from(t.at(name + ".master"));
    moments_.at(name).first.copy_from(t.at(name + ".exp_avg"));
    moments_.at(name).second.copy_from(t.at(name + ".exp_avg_sq"));
  }
  step_ = cpu.step_count();
  m_.masters_changed();
}

}  // namespace qarl::gpu
