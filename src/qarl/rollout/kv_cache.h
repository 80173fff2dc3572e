// The paged KV cache: fixed-size blocks of `block_size` tokens, shared by every layer (block b
// of layer l holds the K and V rows of the same tokens for every l, as in vLLM), a free list,
// and reference counts so that the n samples of one prompt share the prompt's blocks.
//
// Storage modes (the bytes a token row of n_kv_heads*head_dim values takes):
//   auto  : fp32 rows, already fake-quantized by the K/V quantizers (4 bytes per value);
//   fp8   : E4M3 codes of x * s, with the quantizer's scalar scale per layer (1 byte);
//   nvfp4 : E2M1 codes packed two per byte, one E4M3 block scale per 16 values, and the
//           global scale amax/2688 per layer (0.5625 bytes).
// Native codes dequantize to exactly the floats the K/V fake quantizer produces (quant's
// encode/decode contract), so a native cache reads back bitwise what `auto` stores.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "qarl/quant/fake_quant.h"

namespace qarl::rollout {

enum class KVCacheMode { Auto, FP8, NVFP4 };
KVCacheMode parse_kv_cache_mode(const std::string& s);  // "auto" | "fp8" | "nvfp4"
const char* kv_cache_mode_name(KVCacheMode m);

// How one K or V row of one layer is stored.
struct KVRowCodec {
  KVCacheMode mode = KVCacheMode::Auto;
  int row_values = 0;  // n_kv_heads * head_dim
  quant::Fp8Scales fp8{1.0f, 1.0f};
  quant::Nvfp4Scales nvfp4{1.0f, 6.0f, 1.0f / 6.0f, quant::Nvfp4Division::kTriton};

  static KVRowCodec make(KVCacheMode mode, int row_values, float amax);  // amax unused: auto
  size_t row_bytes() const;
  // Encodes rows of fp32 values: for native modes the values are the rows BEFORE the K/V
  // quantizer (the codes then decode to the quantizer's output), or already quantized rows
  // (FP8 re-encoding is exact; see kv_cache.cpp).
  void encode(const float* row, uint8_t* out) const;
  void decode(const uint8_t* in, float* row) const;
};

size_t kv_row_bytes(KVCacheMode mode, int row_values);
// K and V of every layer for one token.
size_t kv_bytes_per_token(KVCacheMode mode, int n_layers, int row_values);

// Free list + reference counts. Block ids are 0..num_blocks-1; allocation is LIFO, so it is
// deterministic for a given sequence of calls.
class BlockAllocator {
 public:
  explicit BlockAllocator(int num_blocks);
  int num_blocks() const { return int(refs_.size()); }
  int num_free() const { return int(free_.size()); }
  int allocate();              // -1 when none is free; refcount 1
  void incref(int block);
  void decref(int block);      // frees at 0
  int refcount(int block) const { return refs_[size_t(block)]; }

 private:
  std::vector<int> refs_;
  std::vector<int> free_;
};

struct KVCacheShape {
  int n_layers = 0;
  int row_values = 0;  // n_kv_heads * head_dim
  int block_size = 16;
  KVCacheMode mode = KVCacheMode::Auto;
};

class KVCache {
 public:
  KVCache(KVCacheShape shape, int num_blocks);
  // Blocks that fit into `bytes` (at least 0).
  static int blocks_for_bytes(const KVCacheShape& shape, uint64_t bytes);
  // bytes = fraction * physical RAM.
  static uint64_t bytes_for_fraction(double fraction);

  const KVCacheShape& shape() const { return shape_; }
  int block_size() const { return shape_.block_size; }
  BlockAllocator& blocks() { return alloc_; }
  const BlockAllocator& blocks() const { return alloc_; }
  size_t row_bytes() const { return row_bytes_; }
  size_t bytes_per_token() const { return 2 * size_t(shape_.n_layers) * row_bytes_; }
  size_t total_bytes() const { return bytes_per_token() * size_t(shape_.block_size) * size_t(alloc_.num_blocks()); }

  // The codecs (scales) of every layer's K and V; needed before any write in native modes.
  void set_codecs(std::vector<KVRowCodec> k, std::vector<KVRowCodec> v);
  const KVRowCodec& k_codec(int layer) const { return k_codec_[size_t(layer)]; }
  const KVRowCodec& v_codec(int layer) const { return v_codec_[size_t(layer)]; }

  uint8_t* k_row(int layer, int block, int row) { return row_ptr(k_[size_t(layer)].get(), block, row); }
  uint8_t* v_row(int layer, int block, int row) { return row_ptr(v_[size_t(layer)].get(), block, row); }
  // Copy-on-write: rows [0, n_rows) of every layer from block src to block dst.
  void copy_block_rows(int src, int dst, int n_rows);

 private:
  uint8_t* row_ptr(uint8_t* base, int block, int row) const {
    return base + (size_t(block) * size_t(shape_.block_size) + size_t(row)) * row_bytes_;
  }
  struct FreeDeleter { void operator()(uint8_t* p) const; };
  KVCacheShape shape_;
  size_t row_bytes_;
  BlockAllocator alloc_;
  std::vector<std::unique_ptr<uint8_t, FreeDeleter>> k_, v_;  // per layer
  std::vector<KVRowCodec> k_codec_, v_codec_;
};

}  // namespace qarl::rollout
