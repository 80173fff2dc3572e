#include "qarl/core/env.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "qarl/core/error.h"

namespace qarl {
namespace {

const EnvVar* find(const char* name) {
  for (const EnvVar& v : environment_variables())
    if (std::strcmp(v.name, name) == 0) return &v;
  return nullptr;
}

const char* raw(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

bool is_word_list(const EnvVar& v) { return v.values[0] != '<'; }

bool takes_word(const EnvVar& v, std::string_view s) {
  std::string_view words = v.values;
  while (!words.empty()) {
    const size_t bar = words.find('|');
    if (words.substr(0, bar) == s) return true;
    if (bar == std::string_view::npos) break;
    words.remove_prefix(bar + 1);
  }
  return false;
}

}  // namespace

const std::vector<EnvVar>& environment_variables() {
  static const std::vector<EnvVar> vars = {
      {"QARL_LOG", "error|warn|info|debug", "log level (the --log-level option wins)"},
      {"QARL_PROGRESS", "0|1", "0: no progress bars on stderr"},
      {"QARL_GEMM_ISA", "scalar|avx2|avx512",
       "CPU GEMM instruction set (default: the best the CPU has; one it lacks falls back)"},
      {"QARL_GEMM_AUTOTUNE", "1|0|legacy",
       "GPU fast GEMMs: 1 = cuBLASLt, per-shape algorithm timed on first use (default); 0 = "
       "cuBLASLt's first choice; legacy = cublasGemmEx"},
      {"QARL_CUDA_CACHE_MB", "<integer>",
       "GPU allocation cache limit in MiB (default: unlimited; 0 = no cache)"},
      {"QARL_NCCL_TIMEOUT_S", "<number>",
       "seconds one NCCL refit step may take before the communicator is aborted (default 300)"},
  };
  return vars;
}

std::optional<std::string> env_choice(const char* name) {
  const EnvVar* v = find(name);
  if (!v || !is_word_list(*v)) throw Error(fmt::format("env_choice: {} is not a listed word variable", name), ErrorKind::Internal);
  const char* s = raw(name);
  if (!s) return std::nullopt;
  if (!takes_word(*v, s)) throw usage_err("{}='{}' is not one of {}", name, s, v->values);
  return std::string(s);
}

std::optional<double> env_number(const char* name) {
  const EnvVar* v = find(name);
  if (!v || is_word_list(*v)) throw Error(fmt::format("env_number: {} is not a listed number variable", name), ErrorKind::Internal);
  const char* s = raw(name);
  if (!s) return std::nullopt;
  const bool integer = std::strcmp(v->values, "<integer>") == 0;
  char* end = nullptr;
  const double x = std::strtod(s, &end);
  const bool ok = end != s && *end == 0 && std::isfinite(x) &&
                  (integer ? x >= 0 && x == std::floor(x) : x > 0);
  if (!ok)
    throw usage_err("{}='{}' is not {}", name, s,
                    integer ? "a whole number >= 0" : "a positive number");
  return x;
}

void check_environment() {
  for (const EnvVar& v : environment_variables()) {
    if (is_word_list(v)) env_choice(v.name);
    else env_number(v.name);
  }
}

std::string environment_help() {
  std::string out = "Environment:\n";
  for (const EnvVar& v : environment_variables())
    out += fmt::format("  {:<20} {:<22} {}\n", v.name, v.values, v.what);
  return out;
}

}  // namespace qarl
