// launch_kv_write (attention_gpu.h): scatter new K/V rows into the paged pools.
#include <cuda_runtime.h>

#include <cstdint>

#include "qarl/kernels/cuda/attention_gpu.h"
#include "qarl/kernels/cuda/launch.h"
#include "qarl/kernels/cuda/launch_config.cuh"

namespace qarl::kernels::gpu {
namespace {

// One thread per 2-byte element, grid-stride; consecutive threads write consecutive columns.
__global__ void kv_write_kernel(PagedKV kv, const bf16* __restrict__ k,
                                const bf16* __restrict__ v, int64_t ld,
                                const int32_t* __restrict__ row_seq,
                                const int32_t* __restrict__ row_pos, int64_t n) {
  const int64_t W = int64_t(kv.n_kv_heads) * kv.head_dim;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n * W;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / W, c = i % W;
    const int s = row_seq[r], p = row_pos[r];
    const int64_t blk = kv.block_table[int64_t(s) * kv.max_blocks_per_seq + p / kv.block_size];
    const int64_t dst = (blk * kv.block_size + p % kv.block_size) * W + c;
    kv.k_pool[dst] = k[r * ld + c];
    kv.v_pool[dst] = v[r * ld + c];
  }
}

}  // namespace

void launch_kv_write(const PagedKV& kv, const bf16* k, const bf16* v, int64_t ld,
                     const int32_t* row_seq, const int32_t* row_pos, int64_t n, void* stream) {
  if (n <= 0) return;
  const int threads = 256;
  const int64_t work = n * int64_t(kv.n_kv_heads) * kv.head_dim;
  kv_write_kernel<<<grid_for(kv_write_kernel, threads, work), threads, 0,
                    static_cast<cudaStream_t>(stream)>>>(kv, k, v, ld, row_seq, row_pos, n);
  check_last_launch("attention kv write");
}

}  // namespace qarl::kernels::gpu
