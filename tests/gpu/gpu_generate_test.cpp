// The GPU rollout's decode path: CUDA-graph decode steps and device-side greedy choice change
// no bit (graphs on vs off, exact and fast GEMM mode, greedy and sampled requests, continuous
// batching with batch sizes that change and repeat), and in exact mode a greedy rollout picks
// the argmax of the trainer's logits and reports the trainer's logprobs bit for bit.
#include <gtest/gtest.h>

#include <cstring>

#include "gpu_test_util.h"
#include "test_util.h"

#if QARL_HAVE_CUDA
#include "qarl/core/half.h"
#include "qarl/gpu/generate.h"
#include "qarl/gpu/gpu_model.h"
#include "qarl/gpu/train_state.h"
#include "qarl/rollout/sampling.h"
#endif

namespace qarl {
namespace {

#if QARL_HAVE_CUDA
using gpu::GemmMode;

model::Model small_model(uint64_t seed) {
  return test::bf16_exact_model(test::gpu_test_config(io::ModelFamily::Qwen3, 517, 128, 176), seed);
}

std::vector<int32_t> random_prompt(int n, int vocab, SequentialRng& rng) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(int32_t(rng.below(uint64_t(vocab))));
  return p;
}

TEST(GpuGenerate, CudaGraphsChangeNoBit) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  model::Model host = small_model(seed);
  const int V = host.config().vocab_size;
  SequentialRng rng(seed, 5);
  // 9 requests, greedy and sampled, different prompt and output lengths; 4 slots at a time,
  // so decode batches of 4, 3, 2, 1 repeat (graphs captured) and mix with prefills.
  std::vector<rollout::GenRequest> reqs;
  for (int r = 0; r < 9; ++r) {
    rollout::GenRequest q;
    q.prompt = random_prompt(3 + 11 * r % 40, V, rng);
    q.params.max_new_tokens = 6 + (7 * r) % 19;
    if (r % 3 != 0) {
      q.params.temperature = 0.8f;
      q.params.top_p = 0.9f;
    }
    if (r == 4) q.params.n = 2;
    if (r == 5) q.params.stop_token_ids = {int32_t(rng.below(uint64_t(V)))};
    reqs.push_back(q);
  }
  gpu::GpuModel g(host, GemmMode::kExact);
  for (GemmMode mode : {GemmMode::kExact, GemmMode::kFast}) {
    SCOPED_TRACE(kernels::gpu::gemm_mode_name(mode));
    g.set_gemm_mode(mode);
    gpu::GenerateOptions on, off;
    on.seed = off.seed = seed;
    on.max_active = off.max_active = 4;
    off.cuda_graphs = false;
    gpu::GenerateStats st_on, st_off;
    const auto a = gpu::generate(g, reqs, on, {}, &st_on);
    const auto b = gpu::generate(g, reqs, off, {}, &st_off);
    EXPECT_GT(st_on.graph_steps, 0);
    EXPECT_EQ(st_off.graph_steps, 0);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      SCOPED_TRACE("output " + std::to_string(i));
      ASSERT_EQ(a[i].error, "");
      EXPECT_EQ(a[i].tokens, b[i].tokens);
      ASSERT_EQ(a[i].logprobs.size(), b[i].logprobs.size());
      EXPECT_EQ(0, std::memcmp(a[i].logprobs.data(), b[i].logprobs.data(), 4 * a[i].logprobs.size()));
      EXPECT_EQ(a[i].finish_reason, b[i].finish_reason);
    }
  }
}

TEST(GpuGenerate, CudaExactGreedyIsTheTrainersArgmax) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  model::Model host = small_model(seed);
  const int V = host.config().vocab_size;
  SequentialRng rng(seed, 7);
  std::vector<std::vector<int32_t>> prompts = {random_prompt(9, V, rng), random_prompt(33, V, rng),
                                               random_prompt(70, V, rng)};
  gpu::GpuModel g(host, GemmMode::kExact);
  rollout::SamplingParams p;
  p.temperature = 0.0f;
  p.max_new_tokens = 21;
  gpu::GenerateStats stats;
  const auto out = gpu::generate(g, prompts, p, seed, &stats);
  EXPECT_GT(stats.graph_steps, 0);
  std::vector<std::vector<int32_t>> full;
  for (size_t i = 0; i < prompts.size(); ++i) {
    full.push_back(prompts[i]);
    full.back().insert(full.back().end(), out[i].tokens.begin(), out[i].tokens.end());
  }
  gpu::TrainState st;
  const auto lp = gpu::forward_train(g, full, 1.0f, st);
  const std::vector<float> logits = st.logits.to_f32_vector();
  int mismatched_tokens = 0, mismatched_logprobs = 0, total = 0;
  for (size_t i = 0; i < prompts.size(); ++i)
    for (size_t j = 0; j < out[i].tokens.size(); ++j) {
      const int64_t row = st.seq_offset[i] + int64_t(prompts[i].size()) - 1 + int64_t(j);
      mismatched_tokens += rollout::argmax_token(logits.data() + row * V, V) != out[i].tokens[j];
      const float train = lp[i][prompts[i].size() - 1 + j];
      mismatched_logprobs += std::memcmp(&train, &out[i].logprobs[j], 4) != 0;
      ++total;
    }
  EXPECT_EQ(mismatched_tokens, 0) << "of " << total;
  EXPECT_EQ(mismatched_logprobs, 0) << "of " << total;
}
#else
TEST(GpuGenerate, NotBuilt) { GTEST_SKIP() << "built without CUDA: the GPU model is not compiled"; }
#endif

}  // namespace
}  // namespace qarl
