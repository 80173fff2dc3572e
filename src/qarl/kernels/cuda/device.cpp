#include "qarl/kernels/cuda/device.h"

#include <algorithm>
#include <vector>

#include "qarl/core/error.h"
#include "qarl/kernels/cuda/launch.h"

#ifdef QARL_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace qarl::kernels::gpu {

bool built_with_cuda() {
#ifdef QARL_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

std::string unavailable_reason() {
#ifdef QARL_HAVE_CUDA
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return std::string("no CUDA device: ") + cudaGetErrorString(e);
  }
  return n > 0 ? "" : "no CUDA device found";
#else
  return "qarl was built without CUDA";
#endif
}

bool available() {
  static const bool ok = unavailable_reason().empty();
  return ok;
}

#ifdef QARL_HAVE_CUDA
void check_last_launch(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw runtime_err("CUDA {} failed: {}", what, cudaGetErrorString(e));
}

static void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw runtime_err("CUDA {} failed: {}", what, cudaGetErrorString(e));
}

std::string device_name() {
  if (!available()) throw runtime_err("CUDA: {}", unavailable_reason());
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, dev), "cudaGetDeviceProperties");
  return fmt::format("{}, {} SMs, {:.1f} GiB", p.name, p.multiProcessorCount,
                     double(p.totalGlobalMem) / (1024.0 * 1024 * 1024));
}

void synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

void copy_async(const Tensor& dst, const Tensor& src) {
  if (dst.nbytes() != src.nbytes())
    throw usage_err("CUDA copy: {} bytes into {} bytes", src.nbytes(), dst.nbytes());
  check(cudaMemcpyAsync(dst.data(), src.data(), src.nbytes(), cudaMemcpyDefault),
        "cudaMemcpyAsync");
}

double time_median_s(const std::function<void()>& fn, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) fn();
  synchronize();
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "cudaEventCreate");
  check(cudaEventCreate(&b), "cudaEventCreate");
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(a);
    fn();
    cudaEventRecord(b);
    check(cudaEventSynchronize(b), "cudaEventSynchronize");
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms * 1e-3);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
#else
void check_last_launch(const char*) {}
std::string device_name() { throw runtime_err("CUDA: {}", unavailable_reason()); }
void synchronize() { throw runtime_err("CUDA: {}", unavailable_reason()); }
void copy_async(const Tensor&, const Tensor&) { throw runtime_err("CUDA: {}", unavailable_reason()); }
double time_median_s(const std::function<void()>&, int, int) {
  throw runtime_err("CUDA: {}", unavailable_reason());
}
#endif

}  // namespace qarl::kernels::gpu
