// CRC32C of a device buffer, computed on the GPU (the device packed stream's per-batch
// check, equal to crc32c() of the same bytes on the host). Two levels: every thread takes
// one kCrcChunk-byte piece (slicing-by-8 tables in shared memory), every block of
// kCrcBlockThreads combines its pieces with a shift table, and the host combines the block
// results (crc32c.h's parallel form). Synchronous on the legacy default stream.
#pragma once
#include <cstddef>
#include <cstdint>

namespace qarl::refit {

inline constexpr size_t kCrcChunk = 1024;
inline constexpr size_t kCrcBlockThreads = 256;

// Throws an Error without CUDA. `data` must be 8-byte aligned (cudaMalloc gives 256).
uint32_t crc32c_device(const void* data, size_t n, uint32_t crc = 0);

}  // namespace qarl::refit
