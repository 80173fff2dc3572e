// Paged KV cache: block accounting, bytes per token per mode, native codecs that decode to
// exactly the K/V fake quantizer's output, and the paged KVStore's views.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "qarl/core/error.h"
#include "qarl/core/rng.h"
#include "qarl/quant/fake_quant.h"
#include "qarl/rollout/kv_cache.h"
#include "qarl/rollout/paged_store.h"
#include "test_util.h"

namespace qarl::rollout {
namespace {

std::vector<float> fake_quant_rows(KVCacheMode mode, const std::vector<float>& x, int cols, float amax) {
  Tensor t = Tensor::from_f32(x, {int64_t(x.size()) / cols, cols});
  Tensor q = quant::fake_quant(t, mode == KVCacheMode::FP8 ? quant::Format::FP8 : quant::Format::NVFP4, amax);
  return q.to_f32_vector();
}

// Rows with a spread of magnitudes: tiny, normal, beyond amax, exact zeros and negative zeros.
std::vector<float> kv_rows(size_t n, uint64_t seed) {
  std::vector<float> x = test::random_normal(n, 1.0f, seed);
  SequentialRng r(seed, 11);
  for (auto& v : x) {
    uint64_t k = r.below(10);
    if (k == 0) v *= 1e-4f;
    if (k == 1) v *= 30.0f;
    if (k == 2) v = 0.0f;
    if (k == 3) v = -0.0f;
  }
  return x;
}

TEST(KVCache, BytesPerTokenPerMode) {
  // 3 layers, 2 KV heads of 48: K and V rows of 96 values.
  EXPECT_EQ(kv_bytes_per_token(KVCacheMode::Auto, 3, 96), 2u * 3 * 96 * 4);
  EXPECT_EQ(kv_bytes_per_token(KVCacheMode::FP8, 3, 96), 2u * 3 * 96);
  EXPECT_EQ(kv_bytes_per_token(KVCacheMode::NVFP4, 3, 96), 2u * 3 * (48 + 6));
  KVCache c({3, 96, 5, KVCacheMode::NVFP4}, 7);
  EXPECT_EQ(c.bytes_per_token(), 2u * 3 * 54);
  EXPECT_EQ(c.total_bytes(), 2u * 3 * 54 * 5 * 7);
  EXPECT_EQ(KVCache::blocks_for_bytes({3, 96, 5, KVCacheMode::NVFP4}, 2u * 3 * 54 * 5 * 7 + 100), 7);
  EXPECT_EQ(KVCache::blocks_for_bytes({3, 96, 5, KVCacheMode::Auto}, 100), 0);
  EXPECT_THROW(KVCache({3, 96, 5, KVCacheMode::Auto}, 0), Error);
  EXPECT_THROW(KVCache({3, 40, 5, KVCacheMode::NVFP4}, 2), Error);  // not a multiple of 16
  EXPECT_THROW(parse_kv_cache_mode("int8"), Error);
}

TEST(KVCache, AllocatorRefcountsAndReuse) {
  BlockAllocator a(5);
  std::vector<int> got;
  for (int i = 0; i < 5; ++i) got.push_back(a.allocate());
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(a.allocate(), -1);
  EXPECT_EQ(a.num_free(), 0);
  a.incref(2);
  a.decref(2);
  EXPECT_EQ(a.num_free(), 0);  // still held once
  EXPECT_EQ(a.refcount(2), 1);
  a.decref(2);
  EXPECT_EQ(a.num_free(), 1);
  EXPECT_EQ(a.allocate(), 2);
  EXPECT_THROW(BlockAllocator(1).decref(0), Error);  // freeing a free block is a bug
}

TEST(KVCache, NativeCodecsDecodeToTheFakeQuantizerBitwise) {
  for (int trial = 0; trial < 40; ++trial) {
    uint64_t seed = test::fresh_seed();
    SCOPED_TRACE(seed);
    SequentialRng r(seed, 3);
    const int cols = 16 * int(1 + r.below(6));
    const int rows = 1 + int(r.below(9));
    const float amax = trial % 4 == 0 ? 448.0f : std::exp(6.0f * r.uniform() - 3.0f);
    auto x = kv_rows(size_t(rows * cols), seed);
    for (KVCacheMode mode : {KVCacheMode::FP8, KVCacheMode::NVFP4}) {
      SCOPED_TRACE(kv_cache_mode_name(mode));
      auto want = fake_quant_rows(mode, x, cols, amax);
      KVRowCodec c = KVRowCodec::make(mode, cols, amax);
      std::vector<uint8_t> codes(c.row_bytes());
      std::vector<float> got(static_cast<size_t>(cols));
      for (int i = 0; i < rows; ++i) {
        c.encode(x.data() + i * cols, codes.data());
        c.decode(codes.data(), got.data());
        EXPECT_EQ(std::memcmp(got.data(), want.data() + i * cols, sizeof(float) * size_t(cols)), 0)
            << "row " << i;
        if (mode == KVCacheMode::FP8) {
          // Re-encoding the quantized row gives the same values (what write() relies on
          // when no unquantized rows are passed).
          c.encode(want.data() + i * cols, codes.data());
          c.decode(codes.data(), got.data());
          EXPECT_EQ(std::memcmp(got.data(), want.data() + i * cols, sizeof(float) * size_t(cols)), 0)
              << "re-encoded row " << i;
        }
      }
    }
  }
}

// Writes tokens of two sequences through PagedKVStore and reads them back through views.
TEST(KVCache, PagedStoreViewsReturnWhatWasWritten) {
  for (KVCacheMode mode : {KVCacheMode::Auto, KVCacheMode::FP8, KVCacheMode::NVFP4}) {
    uint64_t seed = test::fresh_seed();
    SCOPED_TRACE(fmt::format("{} seed {}", kv_cache_mode_name(mode), seed));
    const int L = 2, cols = 32, bs = 3;
    const float amax = 2.5f;
    KVCache cache({L, cols, bs, mode}, 10);
    if (mode != KVCacheMode::Auto) {
      std::vector<KVRowCodec> k, v;
      for (int l = 0; l < L; ++l) {
        k.push_back(KVRowCodec::make(mode, cols, amax));
        v.push_back(KVRowCodec::make(mode, cols, amax * 2));
      }
      cache.set_codecs(k, v);
    }
    std::vector<int32_t> t0, t1;  // 7 and 4 tokens
    for (int i = 0; i < 3; ++i) t0.push_back(cache.blocks().allocate());
    for (int i = 0; i < 2; ++i) t1.push_back(cache.blocks().allocate());
    auto k_raw = kv_rows(size_t(11 * cols), seed), v_raw = kv_rows(size_t(11 * cols), seed + 1);
    std::vector<float> kq = k_raw, vq = v_raw;
    if (mode != KVCacheMode::Auto) {
      kq = fake_quant_rows(mode, k_raw, cols, amax);
      vq = fake_quant_rows(mode, v_raw, cols, amax * 2);
    }
    for (int l = 0; l < L; ++l) {
      PagedKVStore store(cache, {&t0, &t1});
      // seq 0 in two chunks (5 then 2 tokens), seq 1 in one chunk of 4.
      auto put = [&](int seq, int pos, int n, int row0) {
        if (store.wants_unquantized())
          store.write_unquantized(l, seq, pos, n, k_raw.data() + row0 * cols, v_raw.data() + row0 * cols);
        store.write(l, seq, pos, n, kq.data() + row0 * cols, vq.data() + row0 * cols);
      };
      put(0, 0, 5, 0);
      put(1, 0, 4, 7);
      put(0, 5, 2, 5);
      for (int seq = 0; seq < 2; ++seq) {
        int n = seq == 0 ? 7 : 4, row0 = seq == 0 ? 0 : 7;
        model::KVView v = store.view(l, seq, n);
        ASSERT_EQ(v.n_tokens, n);
        for (int t = 0; t < n; ++t) {
          EXPECT_EQ(std::memcmp(v.k_row(t), kq.data() + (row0 + t) * cols, sizeof(float) * cols), 0);
          EXPECT_EQ(std::memcmp(v.v_row(t), vq.data() + (row0 + t) * cols, sizeof(float) * cols), 0);
        }
      }
    }
    // A write of rows that are not the quantizer's output is caught in native modes.
    if (mode != KVCacheMode::Auto) {
      PagedKVStore store(cache, {&t0});
      std::vector<float> junk(size_t(cols), 0.123456f);
      if (store.wants_unquantized()) store.write_unquantized(0, 0, 0, 1, k_raw.data(), v_raw.data());
      EXPECT_THROW(store.write(0, 0, 0, 1, junk.data(), junk.data()), Error);
    }
    // Copy-on-write copies every layer's rows.
    int nb = cache.blocks().allocate();
    cache.copy_block_rows(t0[1], nb, 2);
    for (int l = 0; l < L; ++l)
      EXPECT_EQ(std::memcmp(cache.k_row(l, nb, 0), cache.k_row(l, t0[1], 0), 2 * cache.row_bytes()), 0);
  }
}

}  // namespace
}  // namespace qarl::rollout
