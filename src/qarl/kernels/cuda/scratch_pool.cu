// ops::keep_scratch_pool (model_ops_device.cuh): the default memory pool of the current
// device keeps up to 1 GiB of freed scratch across synchronizations.
#include <cstdint>
#include <mutex>
#include <set>

#include <cuda_runtime.h>

#include "qarl/kernels/cuda/model_ops_device.cuh"

namespace qarl::kernels::gpu::ops {

void keep_scratch_pool() {
  static std::mutex mu;
  static std::set<int> done;
  int dev = 0;
  check_cuda(cudaGetDevice(&dev), "cudaGetDevice (scratch pool)");
  std::lock_guard<std::mutex> lock(mu);
  if (!done.insert(dev).second) return;
  cudaMemPool_t pool;
  check_cuda(cudaDeviceGetDefaultMemPool(&pool, dev), "cudaDeviceGetDefaultMemPool");
  uint64_t keep = uint64_t(1) << 30;
  check_cuda(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep),
             "cudaMemPoolSetAttribute (scratch pool)");
}

}  // namespace qarl::kernels::gpu::ops
