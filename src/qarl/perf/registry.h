// Built-in benchmarks behind `qarl bench`: a registry of named cases per backend, each
// reporting achieved rates against limits measured in the same run (device-to-device copy
// bandwidth on the GPU, memcpy bandwidth on the CPU). To add a benchmark (model, rollout,
// ...), write an add_<thing>_benchmarks(Registry&) beside its component and call it from
// builtin_registry() in registry.cpp; explicit calls, because a static library drops
// self-registering objects that nothing references.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "qarl/core/tensor.h"

namespace qarl::perf {

enum class Backend { CPU, CUDA };
const char* backend_name(Backend b);  // "cpu", "cuda"

struct Options {
  bool quick = false;   // smaller sizes and fewer repetitions (tests, CI)
  int reps = 0;         // timed repetitions (0: each case's default)
  int64_t rows = 0;     // override of the tensor rows (0: each case's default)
};

// The hardware limits measured in this run (0 = not measured).
struct Limits {
  double copy_bytes_per_s = 0;  // bytes read + written per second
};

struct Result {
  std::string name;     // "fake_quant_fp8"
  std::string dtype;    // "BF16"
  std::string shape;    // "[2097152, 128]"
  double seconds = 0;   // median time of one call
  double bytes = 0;     // bytes the call must move (each input read once, output written once)
  double flops = 0;     // floating-point operations (compute-bound cases)
  std::string note;
  // Further named figures for the JSON record (e.g. tokens_per_s), machine-readable.
  std::vector<std::pair<std::string, double>> metrics = {};
};

struct Case {
  std::string name;
  Backend backend;
  std::string description;
  std::function<std::vector<Result>(const Options&)> run;
};

class Registry {
 public:
  void add(Case c) { cases_.push_back(std::move(c)); }
  const std::vector<Case>& cases() const { return cases_; }

 private:
  std::vector<Case> cases_;
};

// Every built-in benchmark (fake quant on CPU and CUDA, ...).
const Registry& builtin_registry();

// Limits measured now on `backend` (a copy of `bytes` bytes, median of several).
Limits measure_limits(Backend backend, const Options& opt);

// n values scale * (2u - 1), u = CounterRng(seed, 0).uniform(0, i), rounded to `t`, on the
// GPU: fresh, reproducible, nonzero bench inputs (a case's seeds keep its tensors apart).
Tensor random_uniform_device(int64_t n, DType t, float scale, uint64_t seed);

// Median wall time of fn() over reps calls after warmup calls (CPU).
double time_median_cpu_s(const std::function<void()>& fn, int warmup, int reps);

// The component entry points that builtin_registry() calls.
void add_fake_quant_benchmarks(Registry& r);
void add_gemm_benchmarks(Registry& r);  // gemm_cases.cpp
void add_attention_benchmarks(Registry& r);  // CUDA builds only (no-op otherwise)
void add_gpu_model_benchmarks(Registry& r);  // CUDA builds only
void add_model_ops_benchmarks(Registry& r);  // model_ops_cases.cpp; CUDA builds only
void add_gpu_kv_cache_benchmarks(Registry& r);  // gpu/kv_cache_bench.cpp, CUDA builds only

}  // namespace qarl::perf
