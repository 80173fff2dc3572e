#include "qarl/gpu/gpu_adamw.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <cuda_runtime.h>

#include "qarl/core/error.h"
#include "qarl/kernels/cuda/model_ops.h"

namespace qarl::gpu {
namespace kg = kernels::gpu;
namespace {
// A device copy of `bytes` bytes of host memory (a U8 tensor that owns it).
Tensor upload_bytes(const void* data, size_t bytes) {
  Tensor t = Tensor::empty({int64_t(std::max<size_t>(bytes, 1))}, DType::U8, Device::CUDA);
  cudaError_t e = cudaMemcpy(t.data(), data, bytes, cudaMemcpyHostToDevice);
  if (e != cudaSuccess) throw runtime_err("AdamW: uploading the tensor table failed: {}", cudaGetErrorString(e));
  return t;
}
}  // namespace

GpuAdamW::GpuAdamW(GpuModel& m, train::AdamWOptions o) : m_(m), o_(o) {
  train::AdamW validate(o);  // the same option checks as the CPU optimizer
  for (const auto& name : m.param_names()) {
    const Tensor p = m.master(name);
    moments_[name] = {Tensor::zeros(p.shape(), DType::F32, Device::CUDA),
                      Tensor::zeros(p.shape(), DType::F32, Device::CUDA)};
  }
}

double GpuAdamW::grad_norm(GpuGrads& g) const {
  g.materialize_zero();  // zero() without a backward since: the gradients are zeros
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
  g.materialize_zero();
  s.grad_scale = g.clip_scale;
  s.decay = lr * o_.weight_decay;  // every parameter, as the CPU trainer registers them
  // One launch over every parameter. The table of pointers is rebuilt each step (cheap, on
  // the host) and uploaded only when it changed (new gradients object, re-made masters).
  std::vector<kg::AdamWTensor> tensors;
  tensors.reserve(m_.param_names().size());
  for (const auto& name : m_.param_names()) {
    const Tensor p = m_.master(name);
    auto& [mm, vv] = moments_.at(name);
    tensors.push_back({p.data_as<float>(), mm.data_as<float>(), vv.data_as<float>(),
                       g.by_name.at(name).data_as<float>(),
                       static_cast<kg::bf16*>(m_.working_of(name)), p.numel()});
  }
  auto same = [](const kg::AdamWTensor& a, const kg::AdamWTensor& b) {
    return a.master == b.master && a.m == b.m && a.v == b.v && a.grad == b.grad &&
           a.working == b.working && a.n == b.n;
  };
  if (tensors.size() != table_.size() || !std::equal(tensors.begin(), tensors.end(), table_.begin(), same)) {
    const auto chunks = kg::adamw_chunks(tensors);
    tensors_dev_ = upload_bytes(tensors.data(), tensors.size() * sizeof(kg::AdamWTensor));
    chunks_dev_ = upload_bytes(chunks.data(), chunks.size() * sizeof(kg::AdamWChunk));
    n_chunks_ = int64_t(chunks.size());
    table_ = std::move(tensors);
  }
  kg::launch_adamw_step_multi(static_cast<const kg::AdamWTensor*>(tensors_dev_.data()),
                              static_cast<const kg::AdamWChunk*>(chunks_dev_.data()), n_chunks_,
                              s, nullptr);
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
