// Per-step metrics: one JSON object per line in RUN_DIR/metrics.jsonl (each line written
// with a single O_APPEND write and fsync'd, so a crash leaves at most a torn last line,
// which readers skip), and a one-line progress summary for stdout.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qarl::train {

struct StepMetrics {
  int64_t step = 0;
  double reward_mean = 0, accuracy = 0, loss = 0, grad_norm = 0, lr = 0;
  double token_mult_prob_error = 0, gen_kl_error = 0, policy_kl_error = 0, js_divergence_error = 0;
  double refit_seconds = 0, refit_bytes = 0;
  double generation_tokens_per_s = 0, train_tokens_per_s = 0;
  double kv_cache_bytes_per_token = 0;
  double step_seconds = 0;
  std::string gemm_mode;                 // e.g. "fp32", "bf16"
  std::string kv_quant;                  // e.g. "none", "fp8", "nvfp4"
  bool rollout_only_experiment = false;  // the run opted out of the same-recipe rule
  std::string kl_type = "k3";            // estimator of gen/policy_kl_error
  std::map<std::string, double> extra;   // anything else (clip_fraction, kl_penalty, ...)

  nlohmann::ordered_json to_json() const;
  static StepMetrics from_json(const nlohmann::ordered_json& j);  // missing keys keep defaults
};

// The keys every metrics line carries (issue 7); tests check them.
const std::vector<std::string>& required_metric_keys();

class MetricsWriter {
 public:
  explicit MetricsWriter(std::string run_dir);  // creates run_dir if needed
  void append(const StepMetrics& m);
  const std::string& path() const { return path_; }
  // On resume: keep only the lines with step <= last_step (and drop a torn line), rewritten
  // atomically, so the file matches the checkpoint being resumed.
  void truncate_after(int64_t last_step);

 private:
  std::string path_;
};

// Parsed lines of a metrics.jsonl in file order; unparsable (torn) lines are skipped.
std::vector<nlohmann::ordered_json> read_metrics_lines(const std::string& path);

// "step 12/100 | reward 0.625 acc 0.625 | loss -0.0123 | gnorm 0.91 | tmpe 1.0003
//  gen_kl 1.2e-05 | gen 850 tok/s train 2100 tok/s | refit 0.01 s" (+ " | ROLLOUT-ONLY").
std::string progress_line(const StepMetrics& m, int64_t total_steps);

}  // namespace qarl::train
