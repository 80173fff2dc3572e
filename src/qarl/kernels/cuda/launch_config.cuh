// Grid sizing for grid-stride kernels: enough resident blocks to fill every SM (from the
// occupancy calculator), never more blocks than there is work for.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

namespace qarl::kernels::gpu {

inline int sm_count() {
  static int n = [] {
    int dev = 0, c = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&c, cudaDevAttrMultiProcessorCount, dev);
    return c > 0 ? c : 1;
  }();
  return n;
}

template <class Kernel>
int grid_for(Kernel kernel, int threads, int64_t work_items) {
  int per_sm = 0;
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, 0);
  int64_t full = int64_t(std::max(per_sm, 1)) * sm_count();
  int64_t needed = (work_items + threads - 1) / threads;
  return int(std::max<int64_t>(1, std::min(full, needed)));
}

// Lets kKernel use `bytes` of dynamic shared memory (more than the default 48 KiB) on the
// current device, once per device (the attribute is per device). A template on the kernel
// itself, not its type: kernels of one signature share a type. A failure shows as the
// launch's error.
template <auto kKernel>
void opt_in_dynamic_smem(size_t bytes) {
  static std::atomic<bool> done[64];
  int dev = 0;
  cudaGetDevice(&dev);
  const bool known = dev >= 0 && dev < 64;
  if (known && done[dev]) return;
  cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (known) done[dev] = true;
}

}  // namespace qarl::kernels::gpu
