#include "qarl/perf/registry.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>

#include <omp.h>

#include "qarl/core/rng.h"
#include "qarl/core/tensor.h"
#include "qarl/kernels/cuda/device.h"

namespace qarl::perf {

Tensor random_uniform_device(int64_t n, DType t, float scale, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  CounterRng rng(seed, 0);
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = scale * (2.0f * rng.uniform(0, uint64_t(i)) - 1.0f);
  return Tensor::from_f32(v, {n}, t).to_device(Device::CUDA);
}

const char* backend_name(Backend b) { return b == Backend::CPU ? "cpu" : "cuda"; }

const Registry& builtin_registry() {
  static const Registry r = [] {
    Registry reg;
    add_fake_quant_benchmarks(reg);
    add_gemm_benchmarks(reg);
    add_attention_benchmarks(reg);
#if QARL_HAVE_CUDA
    add_gpu_model_benchmarks(reg);  // src/qarl/gpu (CUDA builds only)
    add_model_ops_benchmarks(reg);
    add_gpu_kv_cache_benchmarks(reg);
#endif
    return reg;
  }();
  return r;
}

double time_median_cpu_s(const std::function<void()>& fn, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < std::max(reps, 1); ++i) {
    auto a = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

Limits measure_limits(Backend backend, const Options& opt) {
  Limits l;
  if (backend == Backend::CUDA) {
    // 512 MiB each way: the size of the fake-quant benchmark tensor, far beyond the L2.
    const int64_t n = opt.quick ? (int64_t(1) << 24) : (int64_t(1) << 29);
    Tensor a = Tensor::empty({n}, DType::U8, Device::CUDA);
    Tensor b = Tensor::empty({n}, DType::U8, Device::CUDA);
    a.copy_from(Tensor::zeros({n}, DType::U8));
    double s = kernels::gpu::time_median_s([&] { kernels::gpu::copy_async(b, a); },
                                           3, opt.quick ? 5 : 20);
    l.copy_bytes_per_s = 2.0 * double(n) / s;
  } else {
    const int64_t n = opt.quick ? (int64_t(1) << 22) : (int64_t(1) << 26);
    std::unique_ptr<char[]> a(new char[n]), b(new char[n]);
    std::memset(a.get(), 1, n);
    std::memset(b.get(), 2, n);
    auto copy = [&] {
#pragma omp parallel
      {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t chunk = (n + nt - 1) / nt, lo = std::min(n, t * chunk), hi = std::min(n, lo + chunk);
        std::memcpy(b.get() + lo, a.get() + lo, size_t(hi - lo));
      }
    };
    double s = time_median_cpu_s(copy, 2, opt.quick ? 3 : 10);
    l.copy_bytes_per_s = 2.0 * double(n) / s;
  }
  return l;
}

}  // namespace qarl::perf
