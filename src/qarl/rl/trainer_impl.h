// The trainer's private state and helpers, shared by trainer.cpp (set-up, refit, checkpoints,
// the run loop) and trainer_step.cpp (one GRPO / distillation step). Not a public interface.
#pragma once
#include "qarl/rl/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <fmt/format.h>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/core/log.h"
#include "qarl/core/progress.h"
#include "qarl/io/safetensors.h"
#include "qarl/model/cli_support.h"
#include "qarl/model/forward.h"
#include "qarl/model/model.h"
#include "qarl/model/train.h"
#include "qarl/quant/recipe.h"
#include "qarl/refit/export.h"
#include "qarl/refit/loader.h"
#include "qarl/refit/name_map.h"
#include "qarl/rl/advantages.h"
#include "qarl/rl/data_iterator.h"
#include "qarl/rl/distill_loss.h"
#include "qarl/rl/mismatch.h"
#include "qarl/rl/pg_loss.h"
#include "qarl/rl/policy_export.h"
#include "qarl/rl/sft.h"
#include "qarl/rl/task.h"
#include "qarl/rl/tiny_model.h"
#include "qarl/rollout/engine.h"
#include "qarl/kernels/cuda/device.h"
#if QARL_HAVE_CUDA
#include "qarl/gpu/trainer_backend.h"
#endif
#include "qarl/rollout/runtime_model.h"
#include "qarl/tokenizer/chat.h"
#include "qarl/tokenizer/tokenizer.h"
#include "qarl/tokenizer/tiny_tokenizer.h"
#include "qarl/train/adamw.h"
#include "qarl/train/metrics.h"
#include "qarl/train/report.h"
#include "qarl/train/run_checkpoint.h"
#include "qarl/train/schedule.h"


namespace qarl::rl {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace trainer_detail {

inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A request seed that depends only on (run seed, step, prompt slot): resumed and
// uninterrupted runs sample the same tokens.
inline uint64_t request_seed(uint64_t seed, int64_t step, size_t slot) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull ^ uint64_t(step) * 0xBF58476D1CE4E5B9ull ^
               uint64_t(slot) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}

// Name of the K/V quantization a recipe applies, for metrics ("none", "fp8", "nvfp4", ...).
inline std::string kv_quant_label(const model::Model& m) {
  auto qs = m.kv_quantizers();
  if (qs.empty() || !qs[0].second->enabled()) return "none";
  const auto& q = *qs[0].second;
  std::string f = q.config().format == quant::Format::NVFP4 ? "nvfp4" : "fp8";
  if (!q.has_amax_buffer()) f += "-constant";
  return f;
}

inline bool recipe_has_calibrated_kv(const quant::QuantRecipe& rec, int n_layers) {
  for (int i = 0; i < n_layers; ++i)
    for (char w : {'k', 'v'}) {
      auto c = rec.resolve(model::kv_quantizer_name(i, w));
      if (c.enable && !c.use_constant_amax) return true;
    }
  return false;
}

}  // namespace trainer_detail
using namespace trainer_detail;

struct Trainer::Impl {
  train::RunRecipe r;
  std::string run_dir;
  quant::QuantRecipe policy_recipe = quant::QuantRecipe::none();
  quant::QuantRecipe rollout_recipe = quant::QuantRecipe::none();
  std::optional<tokenizer::Tokenizer> tok;
  std::optional<tokenizer::ChatTemplate> chat;
  int32_t eos = -1;
  std::unique_ptr<model::Model> policy, reference;
  std::unique_ptr<rollout::RuntimeModel> rollout_model;
  std::unique_ptr<rollout::Engine> engine;
  std::unique_ptr<train::AdamW> opt;
  train::LrSchedule sched;
  std::shared_ptr<ProblemSource> task;
  std::unique_ptr<DataIterator> data;
  std::unique_ptr<train::MetricsWriter> metrics;
  std::map<std::string, Tensor> kv_amax;  // calibrated once; saved with every checkpoint
  std::optional<std::vector<refit::QuantizerState>> export_override;
  int64_t step = 0;  // completed optimizer steps
  AnswerFormat answer_format = AnswerFormat::LastNumber;
  std::vector<train::StepMetrics> history;
#if QARL_HAVE_CUDA
  std::unique_ptr<gpu::TrainerBackend> gpu;  // model.device: cuda
#endif
  bool on_gpu() const {
#if QARL_HAVE_CUDA
    return gpu != nullptr;
#else
    return false;
#endif
  }
  void setup_gpu();

  void setup(bool resume);
  std::string prepare_model_dir(bool resume, std::optional<train::FoundCheckpoint>& ckpt);
  void warm_start_tiny(const std::string& dir);
  std::vector<int32_t> encode_problem(const Problem& p) const;
  std::vector<std::vector<int32_t>> calibration_sequences();
  void calibrate(const std::string& model_dir);
  void refit(double* seconds, double* bytes);
  train::StepMetrics train_step();
  void save_checkpoint();
  void write_report() const;
};


}  // namespace qarl::rl
