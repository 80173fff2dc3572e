// The device's greedy choice (argmax_gpu.h) against rollout::argmax_token, the host's: rows of
// random logits with planted ties (the first index wins), NaNs, infinities, signed zeros, a row
// of all NaN (index 0) and all -inf; vocabularies that are not chunk multiples; rows at a
// stride. The value is the logit's bits at the index.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "qarl/kernels/cuda/device.h"
#include "qarl/rollout/sampling.h"
#include "test_util.h"

#if QARL_HAVE_CUDA
#include "qarl/kernels/cuda/argmax_gpu.h"
#include "qarl/kernels/cuda/launch.h"
#endif

namespace qarl {
namespace {

TEST(CudaArgmax, MatchesHostArgmaxToken) {
  SKIP_WITHOUT_GPU();
#if QARL_HAVE_CUDA
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const float nan = std::nanf(""), inf = INFINITY;
  for (int64_t V : {1, 7, 2048, 2049, 151936}) {
    const int64_t rows = 13, ld = V + 3;
    std::vector<float> x(size_t(rows * ld), 123.0f);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    for (int64_t r = 0; r < rows; ++r) {
      float* row = x.data() + r * ld;
      for (int64_t i = 0; i < V; ++i) row[i] = nd(rng);
      auto at = [&] { return int64_t(rng() % uint64_t(V)); };
      switch (r) {
        case 0: row[at()] = 50.0f; row[at()] = 50.0f; row[at()] = 50.0f; break;  // ties
        case 1: for (int64_t i = 0; i < V; ++i) row[i] = nan; break;
        case 2: for (int64_t i = 0; i < V; ++i) row[i] = -inf; break;
        case 3: for (int64_t i = 0; i < V; ++i) row[i] = (rng() & 1) ? 0.0f : -0.0f; break;
        case 4: row[at()] = inf; row[at()] = nan; row[at()] = inf; break;
        case 5: for (int64_t i = 0; i < V; ++i) if (rng() % 3) row[i] = nan; break;
        case 6: for (int64_t i = 0; i < V; ++i) row[i] = float(int(rng() % 4)); break;  // many ties
        case 7: row[V - 1] = 99.0f; break;
        case 8: row[0] = 99.0f; row[V - 1] = 99.0f; break;
        default: break;
      }
    }
    Tensor d = Tensor::borrow(x.data(), {int64_t(x.size())}, DType::F32, nullptr).to_device(Device::CUDA);
    Tensor idx = Tensor::empty({rows}, DType::I32, Device::CUDA), val = Tensor::empty({rows}, DType::F32, Device::CUDA);
    Tensor scratch = Tensor::empty({kernels::gpu::argmax_scratch_bytes(rows, V)}, DType::U8, Device::CUDA);
    kernels::gpu::launch_argmax_rows(d.data_as<float>(), ld, rows, V, scratch.data(), idx.data_as<int32_t>(),
                                     val.data_as<float>(), nullptr);
    kernels::gpu::check_last_launch("argmax");
    const Tensor hi = idx.to_device(Device::CPU);
    const std::vector<float> hv = val.to_f32_vector();
    for (int64_t r = 0; r < rows; ++r) {
      const int32_t want = rollout::argmax_token(x.data() + r * ld, int(V));
      EXPECT_EQ(hi.data_as<int32_t>()[r], want) << "V " << V << " row " << r;
      const float wv = x[size_t(r * ld + want)];
      EXPECT_EQ(0, std::memcmp(&hv[size_t(r)], &wv, 4)) << "V " << V << " row " << r;
    }
  }
#endif
}

}  // namespace
}  // namespace qarl
