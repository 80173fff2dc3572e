#include "qarl/train/metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"

namespace qarl::train {

nlohmann::ordered_json StepMetrics::to_json() const {
  nlohmann::ordered_json j;
  j["step"] = step;
  j["reward_mean"] = reward_mean;
  j["accuracy"] = accuracy;
  j["loss"] = loss;
  j["grad_norm"] = grad_norm;
  j["lr"] = lr;
  j["token_mult_prob_error"] = token_mult_prob_error;
  j["gen_kl_error"] = gen_kl_error;
  j["policy_kl_error"] = policy_kl_error;
  j["js_divergence_error"] = js_divergence_error;
  j["kl_type"] = kl_type;
  j["refit_seconds"] = refit_seconds;
  j["refit_bytes"] = refit_bytes;
  j["generation_tokens_per_s"] = generation_tokens_per_s;
  j["train_tokens_per_s"] = train_tokens_per_s;
  j["kv_cache_bytes_per_token"] = kv_cache_bytes_per_token;
  j["step_seconds"] = step_seconds;
  j["gemm_mode"] = gemm_mode;
  j["kv_quant"] = kv_quant;
  j["rollout_only_experiment"] = rollout_only_experiment;
  for (const auto& [k, v] : extra) j[k] = v;
  return j;
}

StepMetrics StepMetrics::from_json(const nlohmann::ordered_json& j) {
  StepMetrics m;
  auto num = [&](const char* k, double& dst) { if (j.contains(k) && j[k].is_number()) dst = j[k].get<double>(); };
  if (j.contains("step") && j["step"].is_number_integer()) m.step = j["step"].get<int64_t>();
  num("reward_mean", m.reward_mean); num("accuracy", m.accuracy); num("loss", m.loss);
  num("grad_norm", m.grad_norm); num("lr", m.lr);
  num("token_mult_prob_error", m.token_mult_prob_error); num("gen_kl_error", m.gen_kl_error);
  num("policy_kl_error", m.policy_kl_error); num("js_divergence_error", m.js_divergence_error);
  num("refit_seconds", m.refit_seconds); num("refit_bytes", m.refit_bytes);
  num("generation_tokens_per_s", m.generation_tokens_per_s);
  num("train_tokens_per_s", m.train_tokens_per_s);
  num("kv_cache_bytes_per_token", m.kv_cache_bytes_per_token); num("step_seconds", m.step_seconds);
  if (j.contains("gemm_mode") && j["gemm_mode"].is_string()) m.gemm_mode = j["gemm_mode"];
  if (j.contains("kv_quant") && j["kv_quant"].is_string()) m.kv_quant = j["kv_quant"];
  if (j.contains("kl_type") && j["kl_type"].is_string()) m.kl_type = j["kl_type"];
  if (j.contains("rollout_only_experiment") && j["rollout_only_experiment"].is_boolean())
    m.rollout_only_experiment = j["rollout_only_experiment"];
  const auto& known = required_metric_keys();
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it->is_number() && std::find(known.begin(), known.end(), it.key()) == known.end() &&
        it.key() != "lr" && it.key() != "step_seconds")
      m.extra[it.key()] = it->get<double>();
  return m;
}

const std::vector<std::string>& required_metric_keys() {
  static const std::vector<std::string> k = {
      "step", "reward_mean", "accuracy", "loss", "grad_norm", "token_mult_prob_error",
      "gen_kl_error", "policy_kl_error", "js_divergence_error", "refit_seconds", "refit_bytes",
      "generation_tokens_per_s", "train_tokens_per_s", "kv_cache_bytes_per_token", "gemm_mode",
      "kv_quant", "rollout_only_experiment"};
  return k;
}

MetricsWriter::MetricsWriter(std::string run_dir) : path_(run_dir + "/metrics.jsonl") {
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  if (ec) throw runtime_err("cannot create run directory: {}", ec.message()).file(run_dir);
}

void MetricsWriter::append(const StepMetrics& m) {
  const std::string line = m.to_json().dump() + "\n";
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw runtime_err("cannot open for append: {}", std::strerror(errno)).file(path_);
  // One write() of the whole line: O_APPEND makes it land contiguously at the end.
  const ssize_t w = ::write(fd, line.data(), line.size());
  const int saved = errno;
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (w != ssize_t(line.size()) || !synced)
    throw runtime_err("cannot append a metrics line: {}", std::strerror(saved)).file(path_);
}

std::vector<nlohmann::ordered_json> read_metrics_lines(const std::string& path) {
  std::vector<nlohmann::ordered_json> out;
  if (!path_exists(path)) return out;
  const std::string text = read_file(path);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    const bool complete = end != std::string::npos;
    if (!complete) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (!complete) break;  // torn last line (a crash during append)
    auto j = nlohmann::ordered_json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded() && j.is_object()) out.push_back(std::move(j));
  }
  return out;
}

void MetricsWriter::truncate_after(int64_t last_step) {
  std::string kept;
  for (const auto& j : read_metrics_lines(path_))
    if (j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() <= last_step)
      kept += j.dump() + "\n";
  write_file_atomic(path_, kept);
}

std::string progress_line(const StepMetrics& m, int64_t total_steps) {
  std::string s = fmt::format(
      "step {}/{} | reward {:.3f} acc {:.3f} | loss {:.4g} | gnorm {:.3g} | tmpe {:.5f} gen_kl {:.3g} | "
      "gen {:.0f} tok/s train {:.0f} tok/s | refit {:.3f} s",
      m.step, total_steps, m.reward_mean, m.accuracy, m.loss, m.grad_norm, m.token_mult_prob_error,
      m.gen_kl_error, m.generation_tokens_per_s, m.train_tokens_per_s, m.refit_seconds);
  if (m.rollout_only_experiment) s += " | ROLLOUT-ONLY";
  return s;
}

}  // namespace qarl::train
