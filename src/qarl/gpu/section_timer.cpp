#include "qarl/gpu/section_timer.h"

#include <algorithm>

#include <cuda_runtime.h>
#include <fmt/format.h>

#include "qarl/core/error.h"

namespace qarl::gpu {
namespace {
thread_local SectionTimer* g_active = nullptr;
}

SectionTimer::SectionTimer() {
  if (g_active) throw err("SectionTimer: a timer is already active on this thread");
  g_active = this;
}

SectionTimer::~SectionTimer() {
  if (g_active == this) g_active = nullptr;
  for (void* e : pool_) cudaEventDestroy(static_cast<cudaEvent_t>(e));
}

void SectionTimer::mark(const char* name) {
  if (used_ == pool_.size()) {
    cudaEvent_t e = nullptr;
    if (cudaEventCreate(&e) != cudaSuccess) throw runtime_err("SectionTimer: cudaEventCreate failed");
    pool_.push_back(e);
  }
  cudaEvent_t e = static_cast<cudaEvent_t>(pool_[used_++]);
  cudaEventRecord(e, nullptr);
  marks_.push_back(Mark{name, e});
}

std::vector<std::pair<std::string, double>> SectionTimer::totals() {
  mark(nullptr);
  cudaError_t ce = cudaDeviceSynchronize();
  if (ce != cudaSuccess) throw runtime_err("SectionTimer: {}", cudaGetErrorString(ce));
  std::vector<std::pair<std::string, double>> out;
  for (size_t i = 0; i + 1 < marks_.size(); ++i) {
    if (!marks_[i].name) continue;
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(marks_[i].event),
                         static_cast<cudaEvent_t>(marks_[i + 1].event));
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& p) { return p.first == marks_[i].name; });
    if (it == out.end()) out.emplace_back(marks_[i].name, ms * 1e-3);
    else it->second += ms * 1e-3;
  }
  marks_.clear();
  used_ = 0;
  return out;
}

void section(const char* name) {
  if (g_active) g_active->mark(name);
}

std::string format_sections(const std::vector<std::pair<std::string, double>>& totals) {
  double sum = 0.0;
  for (const auto& [n, s] : totals) sum += s;
  std::string out;
  for (const auto& [n, s] : totals)
    out += fmt::format("  {:<24} {:9.2f} ms  {:5.1f}%\n", n, s * 1e3, sum > 0 ? 100.0 * s / sum : 0.0);
  out += fmt::format("  {:<24} {:9.2f} ms\n", "total", sum * 1e3);
  return out;
}

}  // namespace qarl::gpu
