// Native FP8 / NVFP4 storage of the GPU KV cache (gpu/paged_cache.h, kernels/cuda/kv_native.h):
// what attention reads from a native cache is bitwise the simulated (bf16 fake-quantized) cache,
// so generation gives the same tokens and bitwise equal logprobs in both GEMM modes; the device
// bytes per token are 1/2 (fp8) and 0.28125 (nvfp4) of bf16; quantizers that cannot give codes
// are refused naming the quantizer / its `_amax`. Skips, with the reason, without a device.
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "qarl/core/error.h"
#include "gpu_test_util.h"
#include "test_util.h"

#if QARL_HAVE_CUDA
#include <cuda_runtime.h>

#include "qarl/core/half.h"
#include "qarl/gpu/generate.h"
#include "qarl/gpu/gpu_model.h"
#include "qarl/gpu/paged_cache.h"
#include "qarl/kernels/cuda/fake_quant.h"
#endif

namespace qarl {
namespace {

#if QARL_HAVE_CUDA
namespace kg = kernels::gpu;
using gpu::KVCacheMode;
using gpu::PagedCache;

quant::TensorQuantizer make_q(quant::Format f, float amax, bool constant = false) {
  quant::QuantizerConfig c;
  c.enable = true;
  c.format = f;
  c.block_size = f == quant::Format::NVFP4 ? 16 : 0;
  c.use_constant_amax = constant;
  quant::TensorQuantizer q(c);
  if (!constant && amax >= 0) q.set_amax(amax);
  return q;
}

std::vector<uint16_t> download_u16(const kg::bf16* p, size_t n) {
  std::vector<uint16_t> h(n);
  cudaMemcpy(h.data(), p, n * 2, cudaMemcpyDeviceToHost);
  return h;
}

// Rows written through the native cache read back (read_view) bitwise as the bf16 cache holds
// them after the fake quantizer, for every live row of sequences whose blocks interleave.
TEST(GpuKvNative, CudaReadViewEqualsSimulatedCacheBitwise) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int L = 2, nkv = 3, hd = 48, D = nkv * hd, bs = 16, seqs = 3;
  const std::vector<int> lens = {37, 5, 70};  // not multiples of the block size
  for (KVCacheMode mode : {KVCacheMode::FP8, KVCacheMode::NVFP4}) {
    SCOPED_TRACE(rollout::kv_cache_mode_name(mode));
    const quant::Format f = mode == KVCacheMode::FP8 ? quant::Format::FP8 : quant::Format::NVFP4;
    std::vector<quant::TensorQuantizer> kq, vq;
    for (int l = 0; l < L; ++l) {
      kq.push_back(make_q(f, 2.5f + l));
      vq.push_back(make_q(f, 1.75f + 0.5f * l));
    }
    PagedCache sim(L, nkv, hd, bs, 20, seqs, 80), nat(L, nkv, hd, bs, 20, seqs, 80, mode);
    nat.set_codecs(kq, vq);
    // Interleaved growth: the sequences' blocks are not contiguous in the pools.
    std::vector<int32_t> row_seq, row_pos;
    for (int t = 0; t < 70; ++t)
      for (int s = 0; s < seqs; ++s)
        if (t < lens[size_t(s)]) {
          sim.reserve(s, t + 1);
          nat.reserve(s, t + 1);
          row_seq.push_back(s);
          row_pos.push_back(t);
        }
    sim.sync_tables();
    nat.sync_tables();
    const int64_t R = int64_t(row_seq.size());
    Tensor d_seq = Tensor::borrow(row_seq.data(), {R}, DType::I32, nullptr).to_device(Device::CUDA);
    Tensor d_pos = Tensor::borrow(row_pos.data(), {R}, DType::I32, nullptr).to_device(Device::CUDA);
    for (int l = 0; l < L; ++l) {
      std::vector<float> kv = test::random_normal(size_t(2 * R * D), 1.5f, seed + uint64_t(l));
      Tensor k = Tensor::from_f32(std::vector<float>(kv.begin(), kv.begin() + R * D), {R, D}, DType::BF16)
                     .to_device(Device::CUDA);
      Tensor v = Tensor::from_f32(std::vector<float>(kv.begin() + R * D, kv.end()), {R, D}, DType::BF16)
                     .to_device(Device::CUDA);
      nat.write_native(l, static_cast<kg::bf16*>(k.data()), static_cast<kg::bf16*>(v.data()), D,
                       d_seq.data_as<int32_t>(), d_pos.data_as<int32_t>(), R);
      Tensor kf = k.clone(), vf = v.clone();
      if (f == quant::Format::FP8) {
        kg::fake_quant_fp8(kf, kq[size_t(l)].effective_amax(), kf);
        kg::fake_quant_fp8(vf, vq[size_t(l)].effective_amax(), vf);
      } else {
        kg::fake_quant_nvfp4(kf, kq[size_t(l)].effective_amax(), kf);
        kg::fake_quant_nvfp4(vf, vq[size_t(l)].effective_amax(), vf);
      }
      kg::launch_kv_write(sim.layer_view(l), static_cast<kg::bf16*>(kf.data()),
                          static_cast<kg::bf16*>(vf.data()), D, d_seq.data_as<int32_t>(),
                          d_pos.data_as<int32_t>(), R, nullptr);
      const kg::PagedKV a = sim.read_view(l), b = nat.read_view(l);
      const size_t pool = size_t(20) * bs * D;
      const auto ak = download_u16(a.k_pool, pool), av = download_u16(a.v_pool, pool);
      const auto bk = download_u16(b.k_pool, pool), bv = download_u16(b.v_pool, pool);
      std::vector<int32_t> table(size_t(seqs) * size_t(a.max_blocks_per_seq));
      cudaMemcpy(table.data(), a.block_table, table.size() * 4, cudaMemcpyDeviceToHost);
      int bad = 0, changed = 0;
      for (int s = 0; s < seqs; ++s)
        for (int t = 0; t < lens[size_t(s)]; ++t) {
          const size_t row = size_t(table[size_t(s) * a.max_blocks_per_seq + t / bs]) * bs + t % bs;
          for (int c = 0; c < D; ++c) {
            const size_t i = row * D + size_t(c);
            bad += ak[i] != bk[i] || av[i] != bv[i];
          }
        }
      EXPECT_EQ(bad, 0) << "layer " << l;
      // The quantizer really changed the rows (the comparison is not of raw copies).
      std::vector<uint16_t> raw = download_u16(static_cast<kg::bf16*>(k.data()), size_t(R * D));
      std::vector<uint16_t> q = download_u16(static_cast<kg::bf16*>(kf.data()), size_t(R * D));
      for (size_t i = 0; i < raw.size(); ++i) changed += raw[i] != q[i];
      EXPECT_GT(changed, int(raw.size()) / 4);
    }
  }
}

TEST(GpuKvNative, CudaBytesPerTokenAreHalfAndQuarter) {
  SKIP_WITHOUT_GPU();
  // The Qwen3-0.6B cache shape: 28 layers, 8 KV heads of 128.
  const int L = 28, nkv = 8, hd = 128, D = nkv * hd;
  PagedCache b16(L, nkv, hd, 16, 7, 2, 50), f8(L, nkv, hd, 16, 7, 2, 50, KVCacheMode::FP8),
      f4(L, nkv, hd, 16, 7, 2, 50, KVCacheMode::NVFP4);
  EXPECT_EQ(b16.bytes_per_token(), int64_t(L) * 2 * D * 2);
  EXPECT_EQ(f8.bytes_per_token() * 2, b16.bytes_per_token());
  EXPECT_EQ(f4.bytes_per_token() * 32, b16.bytes_per_token() * 9);  // (1/2 + 1/16) / 2 = 9/32
  EXPECT_EQ(b16.scratch_bytes(), 0);
  for (const PagedCache* c : {&b16, &f8, &f4}) {
    // bytes() is the allocated tensors' size: storage of every token slot plus the scratch,
    // which is one layer of bf16 blocks.
    EXPECT_EQ(c->bytes(), c->bytes_per_token() * 7 * 16 + c->scratch_bytes());
    if (c->native()) {
      EXPECT_EQ(c->scratch_bytes() * L, b16.bytes());
    }
  }
  std::printf("KV bytes per token (28 layers, D = 1024): bf16 %lld, fp8 %lld, nvfp4 %lld; "
              "device bytes with scratch for 112 tokens: %lld / %lld / %lld\n",
              (long long)b16.bytes_per_token(), (long long)f8.bytes_per_token(),
              (long long)f4.bytes_per_token(), (long long)b16.bytes(), (long long)f8.bytes(),
              (long long)f4.bytes());
  EXPECT_THROW(PagedCache(2, 1, 40, 16, 4, 1, 16, KVCacheMode::NVFP4), Error);  // D % 16 != 0
}

TEST(GpuKvNative, CudaRefusesQuantizersWithoutCodes) {
  SKIP_WITHOUT_GPU();
  const int L = 2;
  PagedCache c(L, 2, 64, 16, 4, 1, 40, KVCacheMode::NVFP4);
  auto expect = [&](std::vector<quant::TensorQuantizer> k, std::vector<quant::TensorQuantizer> v,
                    const std::string& text, const std::string& tensor) {
    try {
      c.set_codecs(k, v);
      ADD_FAILURE() << "accepted; wanted an error with " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
      EXPECT_EQ(e.tensor(), tensor) << e.what();
    }
  };
  const auto nv = make_q(quant::Format::NVFP4, 3.0f);
  // The amax was never received (the -1 sentinel): refused naming the `_amax` tensor.
  expect({nv, nv}, {nv, make_q(quant::Format::NVFP4, -1.0f)}, "has no amax",
         "model.layers.1.self_attn.v_bmm_quantizer._amax");
  // Wrong format or disabled: a usage error naming the quantizer and --kv-cache.
  expect({nv, make_q(quant::Format::FP8, 3.0f)}, {nv, nv}, "model.layers.1.self_attn.k_bmm_quantizer is fp8", "");
  expect({quant::TensorQuantizer(), nv}, {nv, nv}, "model.layers.0.self_attn.k_bmm_quantizer is disabled", "");
  // Nothing was configured by the refused calls: a read has no scales yet.
  c.sync_tables();
  EXPECT_THROW(c.read_view(0), Error);
  c.set_codecs({nv, nv}, {nv, nv});
  EXPECT_NO_THROW(c.read_view(1));
  EXPECT_THROW(c.layer_view(0), Error);  // the bf16 pools do not exist
}

// A random model with bf16-exact weights and K/V quantizers from a recipe.
model::Model kv_model(io::ModelFamily f, uint64_t seed, const char* recipe, float amax) {
  const io::HFConfig c = test::gpu_test_config(f, 301, 96, 136);
  model::Model m = test::bf16_exact_model(c, seed);
  std::map<std::string, Tensor> am;
  for (int l = 0; l < c.num_hidden_layers; ++l)
    for (char w : {'k', 'v'})
      am[model::kv_quantizer_name(l, w) + "._amax"] = Tensor::scalar(amax * (1.0f + 0.25f * float(l)));
  m.configure_kv_quantizers(test::kv_recipe(recipe), am, true);
  return m;
}

std::vector<rollout::GenRequest> requests(int vocab, uint64_t seed) {
  SequentialRng rng(seed, 3);
  std::vector<rollout::GenRequest> reqs;
  for (int n : {5, 17, 70, 33}) {  // prompt lengths not multiples of the block size (16)
    rollout::GenRequest q;
    for (int i = 0; i < n; ++i) q.prompt.push_back(int32_t(rng.below(uint64_t(vocab))));
    q.params.temperature = 0.9f;
    q.params.max_new_tokens = 23;
    q.params.n = n == 17 ? 2 : 1;
    reqs.push_back(std::move(q));
  }
  reqs[3].params.temperature = 0.0f;  // one greedy request (logprobs at T = 1)
  return reqs;
}

// The acceptance property: a rollout with native fp8/nvfp4 storage is the simulated rollout,
// token for token and logprob bit for bit, in both GEMM modes, with slots reused (3 slots for
// 5 samples, so a finished sample's blocks are decoded for the next one).
TEST(GpuKvNative, CudaNativeGenerateEqualsSimulatedBitwise) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  struct Case { KVCacheMode mode; const char* recipe; float amax; io::ModelFamily fam; };
  const Case cases[] = {
      {KVCacheMode::FP8, "{num_bits: e4m3}", 3.5f, io::ModelFamily::Qwen3},
      {KVCacheMode::FP8, "{num_bits: e4m3, use_constant_amax: true}", 0, io::ModelFamily::Llama},
      {KVCacheMode::NVFP4, "{num_bits: e2m1, block_sizes: {-1: 16, type: dynamic, scale_bits: e4m3}}", 4.0f,
       io::ModelFamily::Qwen3},
      {KVCacheMode::NVFP4, "{num_bits: e2m1, block_sizes: {-1: 16, type: dynamic, scale_bits: e4m3}}", 1.5f,
       io::ModelFamily::Qwen2}};
  for (const Case& cs : cases) {
    SCOPED_TRACE(std::string(rollout::kv_cache_mode_name(cs.mode)) + " " + cs.recipe);
    model::Model m = kv_model(cs.fam, seed, cs.recipe, cs.amax);
    for (gpu::GemmMode gm : {gpu::GemmMode::kExact, gpu::GemmMode::kFast}) {
      SCOPED_TRACE(kg::gemm_mode_name(gm));
      gpu::GpuModel g(m, gm);
      gpu::GenerateOptions o;
      o.seed = seed;
      o.max_active = 3;
      gpu::GenerateStats s_sim, s_nat;
      const auto sim = gpu::generate(g, requests(301, seed + 2), o, {}, &s_sim);
      o.kv_mode = cs.mode;
      const auto nat = gpu::generate(g, requests(301, seed + 2), o, {}, &s_nat);
      // Native decode steps run as CUDA graphs too (the decode to scratch reads its count on
      // the device), with the bits of the same steps launched one by one.
      EXPECT_GT(s_nat.graph_steps, 0);
      o.cuda_graphs = false;
      gpu::GenerateStats s_eager;
      const auto eager = gpu::generate(g, requests(301, seed + 2), o, {}, &s_eager);
      EXPECT_EQ(s_eager.graph_steps, 0);
      ASSERT_EQ(eager.size(), nat.size());
      for (size_t i = 0; i < nat.size(); ++i) {
        EXPECT_EQ(eager[i].tokens, nat[i].tokens) << "sample " << i << " (graphs off)";
        ASSERT_EQ(eager[i].logprobs.size(), nat[i].logprobs.size());
        EXPECT_EQ(0, std::memcmp(eager[i].logprobs.data(), nat[i].logprobs.data(), 4 * nat[i].logprobs.size()))
            << "sample " << i << " (graphs off)";
      }
      EXPECT_EQ(s_nat.kv_bytes_per_token * (cs.mode == KVCacheMode::FP8 ? 2 : 32),
                s_sim.kv_bytes_per_token * (cs.mode == KVCacheMode::FP8 ? 1 : 9));
      ASSERT_EQ(sim.size(), nat.size());
      ASSERT_EQ(sim.size(), 5u);
      int64_t tokens = 0;
      for (size_t i = 0; i < sim.size(); ++i) {
        ASSERT_TRUE(sim[i].error.empty()) << sim[i].error;
        EXPECT_EQ(sim[i].tokens, nat[i].tokens) << "sample " << i;
        ASSERT_EQ(sim[i].logprobs.size(), nat[i].logprobs.size());
        EXPECT_EQ(0, std::memcmp(sim[i].logprobs.data(), nat[i].logprobs.data(), 4 * sim[i].logprobs.size()))
            << "sample " << i;
        tokens += int64_t(sim[i].tokens.size());
      }
      EXPECT_GT(tokens, 50);
    }
  }
}

// The native cache is only as exact as its scales: the same cache with another amax changes
// the logprobs (so the equality above is not of two bf16 caches).
TEST(GpuKvNative, CudaNativeScalesMatter) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const char* r = "{num_bits: e4m3}";
  model::Model a = kv_model(io::ModelFamily::Qwen3, seed, r, 3.5f), b = kv_model(io::ModelFamily::Qwen3, seed, r, 0.4f);
  gpu::GpuModel ga(a, gpu::GemmMode::kExact), gb(b, gpu::GemmMode::kExact);
  gpu::GenerateOptions o;
  o.seed = seed;
  o.kv_mode = KVCacheMode::FP8;
  auto reqs = requests(301, seed);
  for (auto& q : reqs) q.params.temperature = 0.0f;
  const auto x = gpu::generate(ga, reqs, o), y = gpu::generate(gb, reqs, o);
  EXPECT_NE(0, std::memcmp(x[0].logprobs.data(), y[0].logprobs.data(), 4 * std::min(x[0].logprobs.size(), y[0].logprobs.size())));
  // And a model without K/V quantizers cannot have a native cache.
  model::Model plain = kv_model(io::ModelFamily::Qwen3, seed, r, 3.5f);
  plain.configure_kv_quantizers(quant::QuantRecipe::none(), {}, false);
  gpu::GpuModel gp(plain, gpu::GemmMode::kExact);
  EXPECT_THROW(gpu::generate(gp, reqs, o), Error);
}

#else
TEST(GpuKvNative, NotBuilt) { GTEST_SKIP() << "built without CUDA: the GPU KV cache is not compiled"; }
#endif

}  // namespace
}  // namespace qarl
