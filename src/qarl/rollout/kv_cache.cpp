#include "qarl/rollout/kv_cache.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "qarl/core/error.h"

namespace qarl::rollout {

KVCacheMode parse_kv_cache_mode(const std::string& s) {
  if (s == "auto") return KVCacheMode::Auto;
  if (s == "fp8") return KVCacheMode::FP8;
  if (s == "nvfp4") return KVCacheMode::NVFP4;
  throw usage_err("unknown KV cache mode '{}' (expected auto, fp8 or nvfp4)", s);
}

const char* kv_cache_mode_name(KVCacheMode m) {
  switch (m) {
    case KVCacheMode::Auto: return "auto";
    case KVCacheMode::FP8: return "fp8";
    case KVCacheMode::NVFP4: return "nvfp4";
  }
  return "?";
}

size_t kv_row_bytes(KVCacheMode mode, int row_values) {
  switch (mode) {
    case KVCacheMode::Auto: return size_t(row_values) * sizeof(float);
    case KVCacheMode::FP8: return size_t(row_values);
    case KVCacheMode::NVFP4:
      return size_t(row_values) / 2 + size_t(row_values) / quant::kNvfp4BlockSize;
  }
  return 0;
}

size_t kv_bytes_per_token(KVCacheMode mode, int n_layers, int row_values) {
  return 2 * size_t(n_layers) * kv_row_bytes(mode, row_values);
}

KVRowCodec KVRowCodec::make(KVCacheMode mode, int row_values, float amax) {
  KVRowCodec c;
  c.mode = mode;
  c.row_values = row_values;
  if (mode == KVCacheMode::FP8) c.fp8 = quant::fp8_scales(amax);
  if (mode == KVCacheMode::NVFP4) {
    if (row_values % quant::kNvfp4BlockSize != 0)
      throw err("an NVFP4 KV cache needs rows of a multiple of 16 values, got {}", row_values);
    c.nvfp4 = quant::nvfp4_scales(amax);  // the K/V quantizer's own scales
  }
  return c;
}

size_t KVRowCodec::row_bytes() const { return kv_row_bytes(mode, row_values); }

// FP8 re-encoding of an already fake-quantized row y = e4m3(x*s)*inv is exact: y*s lies within
// a few fp32 ulps of the E4M3 value e4m3(x*s), which is far coarser, so it rounds back to the
// same code (and 448 saturates to 448). NVFP4 is not idempotent in general (a block's scale
// can change when its largest value rounded down), so the engine encodes NVFP4 from the rows
// before the quantizer (PagedKVStore::write_unquantized).
void KVRowCodec::encode(const float* row, uint8_t* out) const {
  switch (mode) {
    case KVCacheMode::Auto: std::memcpy(out, row, size_t(row_values) * sizeof(float)); return;
    case KVCacheMode::FP8: quant::encode_fp8_row(row, DType::F32, row_values, fp8, out); return;
    case KVCacheMode::NVFP4:
      quant::encode_nvfp4_row(row, DType::F32, row_values, nvfp4, out,
                              out + row_values / 2);
      return;
  }
}

void KVRowCodec::decode(const uint8_t* in, float* row) const {
  switch (mode) {
    case KVCacheMode::Auto: std::memcpy(row, in, size_t(row_values) * sizeof(float)); return;
    case KVCacheMode::FP8:
      quant::decode_fp8_row(in, row_values, fp8.inv_scale, row, DType::F32);
      return;
    case KVCacheMode::NVFP4:
      quant::decode_nvfp4_row(in, in + row_values / 2, row_values, nvfp4.global_scale, row,
                              DType::F32);
      return;
  }
}

BlockAllocator::BlockAllocator(int num_blocks) : refs_(size_t(num_blocks), 0) {
  free_.reserve(size_t(num_blocks));
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);  // block 0 handed out first
}

int BlockAllocator::allocate() {
  if (free_.empty()) return -1;
  int b = free_.back();
  free_.pop_back();
  refs_[size_t(b)] = 1;
  return b;
}

void BlockAllocator::incref(int block) {
  QARL_ASSERT(refs_[size_t(block)] > 0, "incref of free block {}", block);
  ++refs_[size_t(block)];
}

void BlockAllocator::decref(int block) {
  QARL_ASSERT(refs_[size_t(block)] > 0, "decref of free block {}", block);
  if (--refs_[size_t(block)] == 0) free_.push_back(block);
}

void KVCache::FreeDeleter::operator()(uint8_t* p) const { std::free(p); }

KVCache::KVCache(KVCacheShape shape, int num_blocks)
    : shape_(shape), row_bytes_(kv_row_bytes(shape.mode, shape.row_values)), alloc_(num_blocks) {
  if (shape.block_size < 1) throw usage_err("KV block size must be >= 1, got {}", shape.block_size);
  if (num_blocks < 1)
    throw usage_err("the KV cache budget holds no block (one block of {} tokens needs {} bytes)",
                    shape.block_size, bytes_per_token() * size_t(shape.block_size));
  if (shape.mode == KVCacheMode::NVFP4 && shape.row_values % quant::kNvfp4BlockSize != 0)
    throw err("an NVFP4 KV cache needs rows of a multiple of 16 values, got {}", shape.row_values);
  size_t per_layer = size_t(num_blocks) * size_t(shape.block_size) * row_bytes_;
  size_t alloc_bytes = (per_layer + 63) / 64 * 64;
  for (int l = 0; l < shape.n_layers; ++l) {
    // Untouched pages are not committed by the OS: a large budget costs what is used.
    auto* k = static_cast<uint8_t*>(std::aligned_alloc(64, alloc_bytes));
    auto* v = static_cast<uint8_t*>(std::aligned_alloc(64, alloc_bytes));
    if (!k || !v) {
      std::free(k);
      std::free(v);
      throw runtime_err("cannot allocate the KV cache ({} bytes per layer)", 2 * alloc_bytes);
    }
    k_.emplace_back(k);
    v_.emplace_back(v);
  }
  k_codec_.assign(size_t(shape.n_layers), KVRowCodec::make(KVCacheMode::Auto, shape.row_values, 0));
  v_codec_ = k_codec_;
  if (shape.mode != KVCacheMode::Auto) {  // must be set before use
    for (auto& c : k_codec_) c.mode = shape.mode;
    for (auto& c : v_codec_) c.mode = shape.mode;
  }
}

int KVCache::blocks_for_bytes(const KVCacheShape& shape, uint64_t bytes) {
  uint64_t per_block = kv_bytes_per_token(shape.mode, shape.n_layers, shape.row_values) *
                       uint64_t(shape.block_size);
  uint64_t n = per_block ? bytes / per_block : 0;
  return int(std::min<uint64_t>(n, uint64_t(1) << 30));
}

uint64_t KVCache::bytes_for_fraction(double fraction) {
  if (!(fraction > 0 && fraction <= 1))
    throw usage_err("--kv-cache-fraction must be in (0, 1], got {}", fraction);
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) throw runtime_err("cannot read the physical memory size");
  return uint64_t(double(pages) * double(page) * fraction);
}

void KVCache::set_codecs(std::vector<KVRowCodec> k, std::vector<KVRowCodec> v) {
  QARL_ASSERT(k.size() == size_t(shape_.n_layers) && v.size() == k.size(), "codec count {}",
              k.size());
  for (size_t i = 0; i < k.size(); ++i)
    QARL_ASSERT(k[i].mode == shape_.mode && v[i].mode == shape_.mode &&
                    k[i].row_values == shape_.row_values && v[i].row_values == shape_.row_values,
                "codec of layer {} does not match the cache", i);
  k_codec_ = std::move(k);
  v_codec_ = std::move(v);
}

void KVCache::copy_block_rows(int src, int dst, int n_rows) {
  size_t n = size_t(n_rows) * row_bytes_;
  for (int l = 0; l < shape_.n_layers; ++l) {
    std::memcpy(k_row(l, dst, 0), k_row(l, src, 0), n);
    std::memcpy(v_row(l, dst, 0), v_row(l, src, 0), n);
  }
}

}  // namespace qarl::rollout
