// The GPU side of `qarl train` with model.device: cuda. The trainer (rl/trainer.cpp) keeps its
// CPU models for set-up (loading, calibration, checkpoints) and hands the work of a step here:
// rollouts on a rollout GpuModel, the training forward/backward and AdamW on a policy GpuModel,
// and a strict refit between the two every step (gpu_refit.h), all on one device. The
// optimizer state is mirrored to the CPU optimizer for checkpoints (sync_to_cpu) and loaded
// from it on resume, so checkpoints have the same format whichever device trained.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "qarl/gpu/gpu_adamw.h"
#include "qarl/gpu/gpu_model.h"
#include "qarl/gpu/gpu_refit.h"
#include "qarl/gpu/train_state.h"
#include "qarl/model/model.h"
#include "qarl/rollout/engine.h"
#include "qarl/train/adamw.h"

namespace qarl::gpu {

class TrainerBackend {
 public:
  // policy: the trainer's model with its quantizers configured; rollout: a model with the
  // rollout recipe's quantizers (the CPU RuntimeModel's); reference (may be null): a frozen
  // model for the KL penalty. cpu_opt: the CPU optimizer, whose state (fresh or resumed) is
  // uploaded.
  TrainerBackend(const model::Model& policy, const model::Model& rollout,
                 const model::Model* reference, GemmMode mode, const train::AdamWOptions& o,
                 const train::AdamW& cpu_opt);

  std::string label() const;  // "cuda-exact" / "cuda-fast"
  std::string device() const;
  int64_t kv_bytes_per_token() const;  // K and V rows of every layer in the rollout's storage
  // The rollout's KV storage (rollout.kv_cache): auto (bf16), fp8 or nvfp4 (native codes).
  void set_kv_cache_mode(rollout::KVCacheMode m) { kv_mode_ = m; }

  std::vector<rollout::SampleOutput> generate(std::vector<rollout::GenRequest> reqs, uint64_t seed);
  // Training forward of one micro-batch (kept for backward()).
  std::vector<std::vector<float>> forward(const std::vector<std::vector<int32_t>>& seqs, float temperature);
  void backward(const std::vector<std::vector<float>>& d_logprobs);
  // Scoring only: the policy with its K/V quantizers off ("unaware"), or the reference.
  std::vector<std::vector<float>> score_unaware(const std::vector<std::vector<int32_t>>& seqs, float temperature);
  std::vector<std::vector<float>> score_reference(const std::vector<std::vector<int32_t>>& seqs, float temperature);
  void zero_grads();
  double clip_grad_norm(double max_norm);
  void step(double lr);
  double refit();  // bytes moved (device to device)
  // Masters into `policy` (CPU), optimizer state into `opt`: before a checkpoint.
  void sync_to_cpu(model::Model& policy, train::AdamW& opt) const;

 private:
  std::unique_ptr<GpuModel> policy_, rollout_, reference_;
  std::unique_ptr<GpuRolloutTarget> target_;
  std::unique_ptr<GpuAdamW> opt_;
  std::unique_ptr<GpuGrads> grads_;
  TrainState state_;
  rollout::KVCacheMode kv_mode_ = rollout::KVCacheMode::Auto;
};

}  // namespace qarl::gpu
