// launch_kv_write_native / launch_kv_decode_native (kv_native.h). One thread per group of 16
// values of one row (an NVFP4 block; for FP8 simply 16 codes = one 16-byte store), K and V in
// the same thread. The arithmetic is quant_device.cuh's, as in kv_codec.cu.
#include <cuda_runtime.h>

#include <cstdint>

#include "qarl/kernels/cuda/kv_native.h"
#include "qarl/kernels/cuda/launch_config.cuh"
#include "qarl/kernels/cuda/quant_device.cuh"

namespace qarl::kernels::gpu {
namespace {

using namespace dev;

__device__ __forceinline__ void encode_fp8_group(const bf16* __restrict__ x, float s,
                                                 uint8_t* __restrict__ dst) {
  uint32_t w[4];
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    uint32_t v = 0;
#pragma unroll
    for (int e = 0; e < 4; ++e) v |= uint32_t(fp8_code(BF16::load(x[q * 4 + e]), s)) << (8 * e);
    w[q] = v;
  }
  *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
}

__device__ __forceinline__ void encode_nvfp4_group(const bf16* __restrict__ x, Nvfp4Scalars k,
                                                   uint8_t* __restrict__ packed,
                                                   uint8_t* __restrict__ scale) {
  float f[16], m = 0.0f;
#pragma unroll
  for (int e = 0; e < 16; ++e) { f[e] = BF16::load(x[e]); m = fmaxf(m, fabsf(f[e])); }
  const Nvfp4Block<true> blk(m, Nvfp4Scale{k.gs, k.six_gs, k.rcp_six_gs});
  *scale = blk.code;
  uint32_t w[2] = {0, 0};
#pragma unroll
  for (int e = 0; e < 16; e += 2) {
    const uint32_t b = e2m1_code(f[e], blk) | (e2m1_code(f[e + 1], blk) << 4);
    w[e / 8] |= b << (8 * ((e / 2) % 4));
  }
  *reinterpret_cast<uint2*>(packed) = make_uint2(w[0], w[1]);
}

template <bool kNvfp4>
__global__ void kv_write_native_kernel(NativeKV kv, const bf16* __restrict__ k,
                                       const bf16* __restrict__ v, int64_t ld,
                                       const int32_t* __restrict__ row_seq,
                                       const int32_t* __restrict__ row_pos, int64_t n) {
  const int G = kv.row_values / 16;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n * G;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / G, g = i % G;
    const int s = row_seq[r], p = row_pos[r];
    const int64_t blk = kv.block_table[int64_t(s) * kv.max_blocks_per_seq + p / kv.block_size];
    const int64_t slot = blk * kv.block_size + p % kv.block_size;  // row index in the pool
    const bf16* kx = k + r * ld + g * 16;
    const bf16* vx = v + r * ld + g * 16;
    if constexpr (kNvfp4) {
      const int64_t pb = slot * (kv.row_values / 2) + g * 8, sb = slot * G + g;
      encode_nvfp4_group(kx, kv.k_nv, kv.k_codes + pb, kv.k_scales + sb);
      encode_nvfp4_group(vx, kv.v_nv, kv.v_codes + pb, kv.v_scales + sb);
    } else {
      const int64_t cb = slot * kv.row_values + g * 16;
      encode_fp8_group(kx, kv.k_s, kv.k_codes + cb);
      encode_fp8_group(vx, kv.v_s, kv.v_codes + cb);
    }
  }
}

__device__ __forceinline__ void store16(bf16* __restrict__ dst, const float (&y)[16]) {
  uint32_t w[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) w[e] = uint32_t(BF16::store(y[2 * e])) | (uint32_t(BF16::store(y[2 * e + 1])) << 16);
  uint4* d = reinterpret_cast<uint4*>(dst);
  d[0] = make_uint4(w[0], w[1], w[2], w[3]);
  d[1] = make_uint4(w[4], w[5], w[6], w[7]);
}

__device__ __forceinline__ void decode_fp8_group(const uint8_t* __restrict__ c, float inv,
                                                 bf16* __restrict__ dst) {
  const uint4 u = *reinterpret_cast<const uint4*>(c);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
  float y[16];
#pragma unroll
  for (int e = 0; e < 16; ++e) y[e] = fp8_dequant(uint8_t(w[e / 4] >> (8 * (e % 4))), inv);
  store16(dst, y);
}

__device__ __forceinline__ void decode_nvfp4_group(const uint8_t* __restrict__ packed,
                                                   uint8_t scale, float gs,
                                                   bf16* __restrict__ dst) {
  const uint2 u = *reinterpret_cast<const uint2*>(packed);
  const uint32_t w[2] = {u.x, u.y};
  const float S = __fmul_rn(e4m3_decode(scale), gs);
  float y[16];
#pragma unroll
  for (int e = 0; e < 16; e += 2) {
    const uint32_t b = (w[e / 8] >> (8 * ((e / 2) % 4))) & 0xffu;
    y[e] = e2m1_dequant(b & 15u, S);
    y[e + 1] = e2m1_dequant(b >> 4, S);
  }
  store16(dst, y);
}

// One CUDA block per entry (grid-stride over entries); its threads cover rows x groups.
// entries[0] is the count, then the (block, rows) pairs.
template <bool kNvfp4>
__global__ void kv_decode_native_kernel(NativeKV kv, const int32_t* __restrict__ entries,
                                        bf16* __restrict__ k_out, bf16* __restrict__ v_out) {
  const int G = kv.row_values / 16;
  const int n_entries = entries[0];
  const int32_t* pairs = entries + 1;
  for (int e = blockIdx.x; e < n_entries; e += gridDim.x) {
    const int64_t blk = pairs[2 * e];
    const int rows = pairs[2 * e + 1];
    for (int i = threadIdx.x; i < rows * G; i += blockDim.x) {
      const int64_t slot = blk * kv.block_size + i / G;
      const int g = i % G;
      const int64_t out = slot * kv.row_values + int64_t(g) * 16;
      if constexpr (kNvfp4) {
        const int64_t pb = slot * (kv.row_values / 2) + g * 8, sb = slot * G + g;
        decode_nvfp4_group(kv.k_codes + pb, kv.k_scales[sb], kv.k_nv.gs, k_out + out);
        decode_nvfp4_group(kv.v_codes + pb, kv.v_scales[sb], kv.v_nv.gs, v_out + out);
      } else {
        decode_fp8_group(kv.k_codes + out, kv.k_inv, k_out + out);
        decode_fp8_group(kv.v_codes + out, kv.v_inv, v_out + out);
      }
    }
  }
}

}  // namespace

void launch_kv_write_native(const NativeKV& kv, const bf16* k, const bf16* v, int64_t ld,
                            const int32_t* row_seq, const int32_t* row_pos, int64_t n,
                            void* stream) {
  if (n <= 0) return;
  const int threads = 128;
  const int64_t work = n * (kv.row_values / 16);
  auto st = static_cast<cudaStream_t>(stream);
  if (kv.format == KvFormat::NVFP4)
    kv_write_native_kernel<true><<<grid_for(kv_write_native_kernel<true>, threads, work), threads, 0, st>>>(
        kv, k, v, ld, row_seq, row_pos, n);
  else
    kv_write_native_kernel<false><<<grid_for(kv_write_native_kernel<false>, threads, work), threads, 0, st>>>(
        kv, k, v, ld, row_seq, row_pos, n);
  check_last_launch("native kv write");
}

void launch_kv_decode_native(const NativeKV& kv, const int32_t* entries, int max_entries,
                             bf16* k_out, bf16* v_out, void* stream) {
  if (max_entries <= 0) return;
  const int threads = 128;
  // At most 1024 blocks striding over the entries (a block per entry up to there).
  const int grid = max_entries < 1024 ? max_entries : 1024;
  auto st = static_cast<cudaStream_t>(stream);
  if (kv.format == KvFormat::NVFP4)
    kv_decode_native_kernel<true><<<grid, threads, 0, st>>>(kv, entries, k_out, v_out);
  else
    kv_decode_native_kernel<false><<<grid, threads, 0, st>>>(kv, entries, k_out, v_out);
  check_last_launch("native kv decode");
}

}  // namespace qarl::kernels::gpu
