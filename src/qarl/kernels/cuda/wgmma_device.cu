// wgmma::device_supported (wgmma_ptx.cuh): whether the current device runs this build's
// sm_90a kernels. A trivial kernel of this file tells which binary the runtime loaded for
// the device: 9.0 with an sm_90 cubin (binaryVersion 90); anything else runs none of them.
#include <cuda_runtime.h>

#include "qarl/kernels/cuda/wgmma_ptx.cuh"

namespace qarl::kernels::gpu::wgmma {
namespace {
__global__ void arch_probe_kernel() {}
}  // namespace

bool device_supported() {
  static const bool ok = [] {
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    cudaFuncAttributes attr{};
    if (cudaFuncGetAttributes(&attr, arch_probe_kernel) != cudaSuccess) return false;
    return major == 9 && minor == 0 && attr.binaryVersion == 90;
  }();
  return ok;
}

}  // namespace qarl::kernels::gpu::wgmma
