// Native FP8 / NVFP4 storage of the GPU paged KV cache (gpu/paged_cache.h): the K/V pools hold
// the quantizers' codes instead of bf16 fake-quantized values, and a decode step expands one
// layer's live rows into a bf16 pool with the same block layout (the "scratch"), which the bf16
// attention kernels then read through the same block table. The codes decode to exactly the
// bf16 values the K/V fake quantizer gives (same device arithmetic as fake_quant.cu and
// kv_codec.cu, quant_device.cuh), so attention sees bitwise what a simulated cache holds.
//
// Layouts (per layer, D = n_kv_heads * head_dim values per row, D % 16 == 0):
//   FP8  : codes  [n_blocks][block_size][D]      one E4M3 code of x * s per value
//   NVFP4: codes  [n_blocks][block_size][D / 2]  two E2M1 codes per byte (element 2i low nibble)
//          scales [n_blocks][block_size][D / 16] E4M3 code of each 16-value block's scale
// Launches are asynchronous on `stream` (nullptr: the legacy default stream). CUDA builds only.
#pragma once
#include <cstdint>

#include "qarl/kernels/cuda/attention_gpu.h"
#include "qarl/kernels/cuda/launch.h"

namespace qarl::kernels::gpu {

enum class KvFormat : uint8_t { FP8, NVFP4 };

// One layer of a native cache. Scalars from qarl::quant::fp8_scales / nvfp4_scales of the
// layer's K and V quantizers (NVFP4 with Triton's divisions, as the simulated quantizer).
struct NativeKV {
  KvFormat format = KvFormat::FP8;
  uint8_t* k_codes = nullptr;
  uint8_t* v_codes = nullptr;
  uint8_t* k_scales = nullptr;  // NVFP4 only
  uint8_t* v_scales = nullptr;
  const int32_t* block_table = nullptr;  // device, [max_seqs * max_blocks_per_seq]
  int row_values = 0;                    // D
  int block_size = 16;
  int max_blocks_per_seq = 0;
  float k_s = 1, k_inv = 1, v_s = 1, v_inv = 1;  // FP8 scale and inverse scale
  Nvfp4Scalars k_nv{1, 6, 1.0f / 6, true}, v_nv{1, 6, 1.0f / 6, true};
};

// Encodes K/V rows k, v ([n, D] bf16, row stride ld: the rows BEFORE the K/V quantizer, so
// NVFP4 block scales are those the fake quantizer computes) of tokens (row_seq[i], row_pos[i])
// (device arrays) into the code pools.
void launch_kv_write_native(const NativeKV& kv, const bf16* k, const bf16* v, int64_t ld,
                            const int32_t* row_seq, const int32_t* row_pos, int64_t n,
                            void* stream);

// Decodes, for each i < entries[0], rows 0 .. entries[2 + 2i]-1 of cache block entries[1 + 2i]
// (device int32: the count, then (block, rows) pairs; at most max_entries of them) into k_out /
// v_out ([n_blocks][block_size][D] bf16, the same block ids). The count is read on the device
// and the grid depends only on max_entries, so a captured CUDA graph replays it for any count.
void launch_kv_decode_native(const NativeKV& kv, const int32_t* entries, int max_entries,
                             bf16* k_out, bf16* v_out, void* stream);

}  // namespace qarl::kernels::gpu
