#include "qarl/refit/crc32c_device.h"

// The device half of crc32c_device (crc32c_device.cpp holds the host half): tables and
// the block kernel. No qarl::Error here: errors go back as cudaError_t.
#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "qarl/refit/crc32c_device.h"

namespace qarl::refit {
namespace {

__device__ uint32_t g_slice8[8][256];
__device__ uint32_t g_shift[4][256];  // shift by kCrcChunk bytes

// One piece per thread: raw CRC from state 0; then thread 0 appends the block's pieces in
// order (shift by a whole chunk through the table, the final shorter piece by zeros).
__global__ void crc_blocks(const unsigned char* p, size_t n, uint32_t* block_raw) {
  __shared__ uint32_t T[8][256];
  __shared__ uint32_t S[4][256];
  __shared__ uint32_t raw[kCrcBlockThreads];
  for (int i = threadIdx.x; i < 8 * 256; i += blockDim.x) T[i / 256][i % 256] = g_slice8[i / 256][i % 256];
  for (int i = threadIdx.x; i < 4 * 256; i += blockDim.x) S[i / 256][i % 256] = g_shift[i / 256][i % 256];
  __syncthreads();
  const size_t piece = size_t(blockIdx.x) * kCrcBlockThreads + threadIdx.x;
  const size_t begin = piece * kCrcChunk;
  uint32_t c = 0;
  if (begin < n) {
    size_t len = n - begin < kCrcChunk ? n - begin : kCrcChunk;
    const unsigned char* q = p + begin;
    size_t k = 0;
    for (; k + 8 <= len; k += 8) {
      uint2 v = *reinterpret_cast<const uint2*>(q + k);
      uint32_t lo = v.x ^ c, hi = v.y;
      c = T[7][lo & 0xff] ^ T[6][(lo >> 8) & 0xff] ^ T[5][(lo >> 16) & 0xff] ^ T[4][lo >> 24] ^
          T[3][hi & 0xff] ^ T[2][(hi >> 8) & 0xff] ^ T[1][(hi >> 16) & 0xff] ^ T[0][hi >> 24];
    }
    for (; k < len; ++k) c = (c >> 8) ^ T[0][(c ^ q[k]) & 0xff];
  }
  raw[threadIdx.x] = c;
  __syncthreads();
  if (threadIdx.x != 0) return;
  uint32_t s = 0;
  const size_t first = size_t(blockIdx.x) * kCrcBlockThreads;
  for (size_t t = 0; t < kCrcBlockThreads; ++t) {
    size_t b = (first + t) * kCrcChunk;
    if (b >= n) break;
    size_t len = n - b < kCrcChunk ? n - b : kCrcChunk;
    if (len == kCrcChunk) {
      s = S[0][s & 0xff] ^ S[1][(s >> 8) & 0xff] ^ S[2][(s >> 16) & 0xff] ^ S[3][s >> 24];
    } else {
      for (size_t z = 0; z < len; ++z) s = (s >> 8) ^ T[0][s & 0xff];
    }
    s ^= raw[t];
  }
  block_raw[blockIdx.x] = s;
}

}  // namespace

cudaError_t crc32c_upload_tables(const uint32_t* slice8, const uint32_t* shift) {
  cudaError_t e = cudaMemcpyToSymbol(g_slice8, slice8, sizeof(uint32_t) * 8 * 256);
  if (e != cudaSuccess) return e;
  return cudaMemcpyToSymbol(g_shift, shift, sizeof(uint32_t) * 4 * 256);
}

cudaError_t crc32c_launch_blocks(const void* data, size_t n, uint32_t* block_raw, unsigned blocks) {
  crc_blocks<<<blocks, unsigned(kCrcBlockThreads)>>>(static_cast<const unsigned char*>(data), n,
                                                     block_raw);
  return cudaGetLastError();
}

}  // namespace qarl::refit
