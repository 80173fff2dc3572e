#include "qarl/gpu/trainer_backend.h"

#include "qarl/core/error.h"
#include "qarl/gpu/generate.h"
#include "qarl/kernels/cuda/device.h"

namespace qarl::gpu {

TrainerBackend::TrainerBackend(const model::Model& policy, const model::Model& rollout,
                               const model::Model* reference, GemmMode mode,
                               const train::AdamWOptions& o, const train::AdamW& cpu_opt) {
  if (!kernels::gpu::available())
    throw usage_err("model.device: cuda: {}", kernels::gpu::unavailable_reason());
  policy_ = std::make_unique<GpuModel>(policy, mode);
  rollout_ = std::make_unique<GpuModel>(rollout, mode);
  if (reference) reference_ = std::make_unique<GpuModel>(*reference, mode);
  target_ = std::make_unique<GpuRolloutTarget>(*rollout_);
  opt_ = std::make_unique<GpuAdamW>(*policy_, o);
  opt_->import_from(cpu_opt);
  grads_ = std::make_unique<GpuGrads>(*policy_);
}

std::string TrainerBackend::label() const {
  return std::string("cuda-") + kernels::gpu::gemm_mode_name(policy_->gemm_mode());
}
std::string TrainerBackend::device() const { return kernels::gpu::device_name(); }

int64_t TrainerBackend::kv_bytes_per_token() const {
  const auto& c = policy_->config();
  const int64_t d = policy_->kv_dim();
  const int64_t row = kv_mode_ == rollout::KVCacheMode::Auto  ? d * 2
                      : kv_mode_ == rollout::KVCacheMode::FP8 ? d
                                                              : d / 2 + d / 16;
  return int64_t(c.num_hidden_layers) * 2 * row;  // as PagedCache::bytes_per_token()
}

std::vector<rollout::SampleOutput> TrainerBackend::generate(std::vector<rollout::GenRequest> reqs, uint64_t seed) {
  GenerateOptions o;
  o.seed = seed;
  o.kv_mode = kv_mode_;
  return gpu::generate(*rollout_, std::move(reqs), o);
}

std::vector<std::vector<float>> TrainerBackend::forward(const std::vector<std::vector<int32_t>>& seqs,
                                                        float temperature) {
  return forward_train(*policy_, seqs, temperature, state_);
}

void TrainerBackend::backward(const std::vector<std::vector<float>>& d) { gpu::backward(*policy_, state_, d, *grads_); }

std::vector<std::vector<float>> TrainerBackend::score_unaware(const std::vector<std::vector<int32_t>>& seqs,
                                                              float temperature) {
  auto k = policy_->k_quantizers(), v = policy_->v_quantizers();
  policy_->set_kv_quantizers(std::vector<quant::TensorQuantizer>(k.size()),
                             std::vector<quant::TensorQuantizer>(v.size()));
  TrainState st;
  std::vector<std::vector<float>> out;
  try {
    out = forward_train(*policy_, seqs, temperature, st);
  } catch (...) {
    policy_->set_kv_quantizers(k, v);
    throw;
  }
  policy_->set_kv_quantizers(k, v);
  return out;
}

std::vector<std::vector<float>> TrainerBackend::score_reference(const std::vector<std::vector<int32_t>>& seqs,
                                                                float temperature) {
  if (!reference_) throw Error("GPU trainer: no reference model", ErrorKind::Internal);
  TrainState st;
  return forward_train(*reference_, seqs, temperature, st);
}

void TrainerBackend::zero_grads() { grads_->zero(); }
double TrainerBackend::clip_grad_norm(double max_norm) { return opt_->clip(*grads_, max_norm); }
void TrainerBackend::step(double lr) { opt_->step(*grads_, lr); }
double TrainerBackend::refit() { return refit_gpu(*policy_, *target_); }

void TrainerBackend::sync_to_cpu(model::Model& policy, train::AdamW& opt) const {
  policy_->download(policy);
  opt_->export_to(opt);
}

}  // namespace qarl::gpu
