// Refit between GPU models under the same strict contract as the CPU path (refit/): the
// trainer's GpuModel is an ExportSource (HF names, its bf16 working copies for matrices and its
// fp32 norms/biases, the K/V quantizer states), a rollout GpuModel is a RefitTarget (vLLM's
// fused runtime names through NameMapper::dense(), staged in device memory, published by
// device-to-device copies after every check passed). Refit data never leaves the device.
// Since the rollout then holds exactly the weights the trainer computes with, exact mode
// gives bitwise equal logprobs across the refit (tests/gpu/gpu_refit_test.cpp).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "qarl/gpu/gpu_model.h"
#include "qarl/refit/export.h"
#include "qarl/refit/name_map.h"
#include "qarl/refit/target.h"

namespace qarl::gpu {

class GpuModelExport : public refit::ExportSource {
 public:
  explicit GpuModelExport(const GpuModel& m) : m_(m) {}
  std::vector<refit::NamedTensor> named_parameters() const override;
  std::vector<refit::QuantizerState> quantizers() const override;
  Tensor fold_weight(const refit::QuantizerState& wq, const Tensor& w) const override;

 private:
  const GpuModel& m_;
};

class GpuRolloutTarget : public refit::RefitTarget {
 public:
  explicit GpuRolloutTarget(GpuModel& rollout);
  std::vector<refit::RuntimeParam> runtime_params() const override { return params_; }
  void begin_stage() override;
  Tensor staged(const std::string& runtime_name) override;
  void commit() override;
  void abort() override { staged_.clear(); }
  const refit::NameMapper& mapper() const { return mapper_; }

 private:
  GpuModel& m_;
  refit::NameMapper mapper_ = refit::NameMapper::dense();
  std::vector<refit::RuntimeParam> params_;
  std::map<std::string, Tensor> serving_;  // runtime name -> the rollout model's own tensor
  std::map<std::string, Tensor> staged_;
};

// One refit: plan_export(policy) streamed through a StrictLoader into `rollout`. Returns the
// bytes moved. Throws (rollout unchanged) on any contract violation.
double refit_gpu(const GpuModel& policy, GpuRolloutTarget& rollout);

}  // namespace qarl::gpu
