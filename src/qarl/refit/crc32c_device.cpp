// Host half of crc32c_device (the kernel: crc32c_device.cu).
#include "qarl/refit/crc32c_device.h"

#ifdef QARL_HAVE_CUDA
#include <memory>
#include <mutex>
#include <vector>

#include <cuda_runtime.h>

#include "qarl/core/error.h"
#include "qarl/refit/crc32c.h"

namespace qarl::refit {

cudaError_t crc32c_upload_tables(const uint32_t* slice8, const uint32_t* shift);
cudaError_t crc32c_launch_blocks(const void* data, size_t n, uint32_t* block_raw, unsigned blocks);

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw runtime_err("CUDA {} failed: {}", what, cudaGetErrorString(e));
}

struct DeviceCrcState {
  std::mutex mu;
  bool tables_ready = false;
  uint32_t* block_raw = nullptr;
  size_t capacity = 0;
  std::unique_ptr<Crc32cShift> block_shift;  // shift by one block's bytes (host combine)
};
DeviceCrcState& state() {
  static DeviceCrcState s;
  return s;
}

}  // namespace

uint32_t crc32c_device(const void* data, size_t n, uint32_t crc) {
  if (n == 0) return crc;
  if (reinterpret_cast<uintptr_t>(data) % 8 != 0)
    throw usage_err("crc32c_device: buffer at {} is not 8-byte aligned", data);
  DeviceCrcState& st = state();
  std::lock_guard<std::mutex> lk(st.mu);
  if (!st.tables_ready) {
    // Tables per device context: this process uses one device for refit.
    Crc32cShift chunk_shift(kCrcChunk);
    check(crc32c_upload_tables(crc32c_slice8_tables(), &chunk_shift.t[0][0]),
          "cudaMemcpyToSymbol (crc tables)");
    st.block_shift = std::make_unique<Crc32cShift>(kCrcChunk * kCrcBlockThreads);
    st.tables_ready = true;
  }
  const size_t block_bytes = kCrcChunk * kCrcBlockThreads;
  const size_t blocks = (n + block_bytes - 1) / block_bytes;
  if (blocks > st.capacity) {
    if (st.block_raw) cudaFree(st.block_raw);
    st.block_raw = nullptr;
    check(cudaMalloc(&st.block_raw, blocks * sizeof(uint32_t)), "cudaMalloc (crc)");
    st.capacity = blocks;
  }
  check(crc32c_launch_blocks(data, n, st.block_raw, unsigned(blocks)), "crc32c kernel launch");
  std::vector<uint32_t> raws(blocks);
  check(cudaMemcpy(raws.data(), st.block_raw, blocks * sizeof(uint32_t), cudaMemcpyDeviceToHost),
        "cudaMemcpy (crc)");
  return ~crc32c_raw_combine(~crc, raws.data(), blocks, *st.block_shift, n);
}

}  // namespace qarl::refit
#else
#include "qarl/core/error.h"
namespace qarl::refit {
uint32_t crc32c_device(const void*, size_t, uint32_t) {
  throw runtime_err("crc32c_device: qarl was built without CUDA");
}
}  // namespace qarl::refit
#endif
