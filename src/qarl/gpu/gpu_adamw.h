// AdamW on the device over the GPU model's fp32 masters: train::AdamW's formula and
// arithmetic (one update is bitwise equal to the CPU optimizer's on the same inputs), plus
// the bf16 working copies refreshed in the same pass. Global-norm gradient clipping.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "qarl/core/tensor.h"
#include "qarl/gpu/gpu_model.h"
#include "qarl/gpu/train_state.h"
#include "qarl/kernels/cuda/model_ops.h"
#include "qarl/train/adamw.h"

namespace qarl::gpu {

class GpuAdamW {
 public:
  GpuAdamW(GpuModel& m, train::AdamWOptions o = {});
  // Global L2 norm of all gradients (computed on the device, fp64 accumulation; a pending
  // clip coefficient is applied first).
  double grad_norm(GpuGrads& g) const;
  // Scales the gradients so their global norm is at most max_norm; returns the norm before.
  // The scaling is recorded in g.clip_scale and applied by step() as it reads them.
  double clip(GpuGrads& g, double max_norm) const;
  void step(const GpuGrads& g, double lr);
  int64_t step_count() const { return step_; }
  // Checkpoints go through the CPU optimizer (train::AdamW's names and format): export copies
  // this state into `cpu` (whose masters must be registered under the model's names), import
  // uploads `cpu`'s state here (masters into the model, moments, step).
  void export_to(train::AdamW& cpu) const;
  void import_from(const train::AdamW& cpu);

 private:
  GpuModel& m_;
  train::AdamWOptions o_;
  int64_t step_ = 0;
  std::map<std::string, std::pair<Tensor, Tensor>> moments_;  // exp_avg, exp_avg_sq
  // The multi-tensor step's tables: the host copy (to see when pointers change) and the
  // device copies of it and of its chunks.
  std::vector<kernels::gpu::AdamWTensor> table_;
  Tensor tensors_dev_, chunks_dev_;
  int64_t n_chunks_ = 0;
};

}  // namespace qarl::gpu
