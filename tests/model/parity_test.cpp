// Batch invariance, bitwise: a token's logprob must not depend on the batch, padding,
// chunking (prefill chunks + decode steps through a paged store), or the thread count, with
// and without K/V quantization; forward_train must give the same logprobs as scoring.
#include <omp.h>

#include <cstring>

#include <gtest/gtest.h>

#include "model/model_test_util.h"
#include "qarl/core/rng.h"
#include "qarl/model/train.h"
#include "test_util.h"

namespace qarl::model {
namespace {

struct Case {
  io::ModelFamily family;
  std::string quant;  // "", "fp8", "fp8const", "nvfp4"
};

Model make_model(const Case& c, uint64_t seed) {
  Model m = Model::random_init(test::tiny_config(c.family), seed);
  test::perturb_all(m, seed + 1);
  std::map<std::string, Tensor> amax;
  for (int l = 0; l < m.config().num_hidden_layers; ++l) {
    amax[kv_quantizer_name(l, 'k') + "._amax"] = Tensor::scalar(0.05f + 0.02f * float(l));
    amax[kv_quantizer_name(l, 'v') + "._amax"] = Tensor::scalar(0.04f);
  }
  if (c.quant == "fp8") m.configure_kv_quantizers(test::kv_recipe("{num_bits: e4m3}"), amax, true);
  if (c.quant == "fp8const")
    m.configure_kv_quantizers(test::kv_recipe("{num_bits: e4m3, use_constant_amax: true}"), {}, true);
  if (c.quant == "nvfp4")
    m.configure_kv_quantizers(
        test::kv_recipe("{num_bits: e2m1, block_sizes: {-1: 16, type: dynamic, scale_bits: e4m3}}"), amax, true);
  return m;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  static const char* const kFamily[] = {"Llama", "Qwen2", "Qwen3"};
  return std::string(kFamily[int(info.param.family)]) +
         (info.param.quant.empty() ? "_none" : "_" + info.param.quant);
}

class Parity : public ::testing::TestWithParam<Case> {};

TEST_P(Parity, LogprobsAreBitwiseBatchChunkAndThreadInvariant) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Model m = make_model(GetParam(), seed);
  const int V = m.config().vocab_size;
  SequentialRng rng(seed, 3);
  std::vector<int> lens = {1, 6, 17, 34, 2, 23};
  std::vector<std::vector<int32_t>> seqs;
  for (int n : lens) {
    std::vector<int32_t> s;
    for (int i = 0; i < n; ++i) s.push_back(int32_t(rng.below(uint64_t(V))));
    seqs.push_back(s);
  }
  const int saved = omp_get_max_threads();
  omp_set_num_threads(2);
  const auto batched = score_sequences(m, seqs);
  // Quantization must actually change something (else the quantized cases test nothing new).
  if (!GetParam().quant.empty()) {
    Model plain = Model::random_init(test::tiny_config(GetParam().family), seed);
    test::perturb_all(plain, seed + 1);
    EXPECT_FALSE(same_bits(score_sequences(plain, {seqs[3]})[0], batched[3]));
  }
  // Alone, and padded with trailing tokens.
  for (size_t s = 0; s < seqs.size(); ++s) {
    EXPECT_TRUE(same_bits(score_sequences(m, {seqs[s]})[0], batched[s])) << "alone " << s;
    auto padded = seqs[s];
    for (int i = 0; i < 5; ++i) padded.push_back(int32_t(rng.below(uint64_t(V))));
    auto lp = score_sequences(m, {seqs[(s + 1) % seqs.size()], padded})[1];
    lp.resize(batched[s].size());
    EXPECT_TRUE(same_bits(lp, batched[s])) << "padded " << s;
  }
  // One thread.
  omp_set_num_threads(1);
  const auto one = score_sequences(m, seqs);
  for (size_t s = 0; s < seqs.size(); ++s) EXPECT_TRUE(same_bits(one[s], batched[s])) << "1 thread " << s;
  omp_set_num_threads(2);
  // Training forward.
  const auto tf = forward_train(m, seqs);
  for (size_t s = 0; s < seqs.size(); ++s) EXPECT_TRUE(same_bits(tf.logprobs[s], batched[s])) << "train " << s;

  // Rollout-like: every sequence is fed in random chunks (prefill pieces, then decode steps of
  // one token), many sequences per forward_tokens call, through a paged store.
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    test::PagedStore store(m.config().num_hidden_layers, int(seqs.size()), m.kv_dim(), 3, 16);
    std::vector<int> done(seqs.size(), 0);
    std::vector<std::vector<float>> got(seqs.size());
    for (int step = 0; step < 100; ++step) {
      std::vector<SeqChunk> chunks;
      store.seq_of.clear();
      for (size_t s = 0; s < seqs.size(); ++s) {
        const int left = int(seqs[s].size()) - done[s];
        if (left == 0 || rng.below(4) == 0) continue;  // some sequences skip a step
        const int n = done[s] < 8 ? std::min(left, 1 + int(rng.below(7))) : 1;
        chunks.push_back(SeqChunk{seqs[s].data() + done[s], n, done[s], n});
        store.seq_of.push_back(int(s));
      }
      if (chunks.empty()) continue;
      auto logits = forward_tokens(m, chunks, store);
      int64_t row = 0;
      for (size_t c = 0; c < chunks.size(); ++c) {
        const size_t s = size_t(store.seq_of[c]);
        for (int i = 0; i < chunks[c].n_new; ++i, ++row) {
          const int pos = chunks[c].start_pos + i;
          if (pos + 1 < int(seqs[s].size()))
            got[s].push_back(token_logprob(logits.data() + row * V, V, 1.0f, seqs[s][size_t(pos + 1)]));
        }
        done[s] += chunks[c].n_new;
      }
    }
    for (size_t s = 0; s < seqs.size(); ++s) {
      ASSERT_EQ(done[s], int(seqs[s].size()));
      EXPECT_TRUE(same_bits(got[s], batched[s])) << "chunked/paged seq " << s << " threads " << threads;
    }
  }
  omp_set_num_threads(saved);
}

INSTANTIATE_TEST_SUITE_P(
    Families, Parity,
    ::testing::Values(Case{io::ModelFamily::Llama, ""}, Case{io::ModelFamily::Qwen2, ""},
                      Case{io::ModelFamily::Qwen3, ""}, Case{io::ModelFamily::Llama, "fp8"},
                      Case{io::ModelFamily::Qwen2, "fp8const"}, Case{io::ModelFamily::Qwen3, "nvfp4"},
                      Case{io::ModelFamily::Llama, "nvfp4"}),
    case_name);

TEST(Parity, LastLogitsOnlyEqualFullLogits) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Model m = Model::random_init(test::tiny_config(io::ModelFamily::Qwen3), seed);
  std::vector<int32_t> a = {1, 2, 3, 4, 5, 6, 7}, b = {9, 8, 7};
  test::PagedStore st(2, 2, m.kv_dim(), 4, 4);
  SeqChunk c[2] = {{a.data(), 7, 0, 1}, {b.data(), 3, 0, 3}};
  auto lg = forward_tokens(m, c, st);
  ASSERT_EQ(lg.size(), size_t(4 * m.config().vocab_size));
  test::PagedStore st2(2, 1, m.kv_dim(), 4, 4);
  SeqChunk c2[1] = {{a.data(), 7, 0, 7}};
  auto full = forward_tokens(m, c2, st2);
  const int V = m.config().vocab_size;
  EXPECT_EQ(0, std::memcmp(lg.data(), full.data() + 6 * V, size_t(V) * 4));
}

}  // namespace
}  // namespace qarl::model
