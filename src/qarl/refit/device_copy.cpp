#include "qarl/refit/device_copy.h"

#include <cstring>

#include "qarl/core/error.h"

#ifdef QARL_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace qarl::refit {

#ifdef QARL_HAVE_CUDA
namespace {
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw runtime_err("CUDA {} failed: {}", what, cudaGetErrorString(e));
}
}  // namespace

void copy_to_host(void* dst, const Tensor& src) {
  size_t n = src.nbytes();
  if (n == 0) return;
  if (src.device() == Device::CPU) {
    std::memcpy(dst, src.data(), n);
    return;
  }
  check(cudaMemcpy(dst, src.data(), n, cudaMemcpyDeviceToHost), "cudaMemcpy (refit, to host)");
}

void copy_to_device_async(void* dst, const Tensor& src) {
  size_t n = src.nbytes();
  if (n == 0) return;
  check(cudaMemcpyAsync(dst, src.data(), n, cudaMemcpyDefault, 0),
        "cudaMemcpyAsync (refit, to device)");
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string cuda_unusable_reason() {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("no CUDA device: ") + cudaGetErrorString(e);
  }
  return n > 0 ? "" : "no CUDA device found";
}

void cuda_sync_default_stream() { check(cudaStreamSynchronize(0), "cudaStreamSynchronize"); }
void cuda_device_synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }
void cuda_set_device(int device) { check(cudaSetDevice(device), "cudaSetDevice"); }
#else
void cuda_set_device(int) { throw runtime_err("this qarl was built without CUDA"); }
void copy_to_host(void* dst, const Tensor& src) {
  if (src.device() != Device::CPU)
    throw runtime_err("this qarl was built without CUDA; cannot read a CUDA tensor");
  if (src.nbytes()) std::memcpy(dst, src.data(), src.nbytes());
}
void copy_to_device_async(void*, const Tensor&) {
  throw runtime_err("this qarl was built without CUDA; cannot copy to device memory");
}
int cuda_device_count() { return 0; }
std::string cuda_unusable_reason() { return "qarl was built without CUDA"; }
void cuda_sync_default_stream() { throw runtime_err("this qarl was built without CUDA"); }
void cuda_device_synchronize() { throw runtime_err("this qarl was built without CUDA"); }
#endif

bool cuda_device_usable() {
  static const bool ok = cuda_unusable_reason().empty();
  return ok;
}

Tensor on_device(const Tensor& t, Device device) {
  if (!t.defined() || t.device() == device) return t;
  return t.to_device(device);
}

}  // namespace qarl::refit
