#include "qarl/kernels/cpu/gemm.h"

#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>

#include <gtest/gtest.h>

#include "qarl/core/error.h"
#include "test_util.h"

namespace qarl::kernels {
namespace {

std::vector<std::string> available_isas() {
  std::vector<std::string> out{"scalar"};
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) out.push_back("avx2");
  if (__builtin_cpu_supports("avx512f")) out.push_back("avx512");
  return out;
}

struct IsaGuard {
  ~IsaGuard() { set_gemm_isa(""); }
};

TEST(Gemm, MatchesFmaChainReferenceBitwiseOnEveryIsa) {
  IsaGuard guard;
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t shapes[][3] = {{1, 1, 1}, {7, 45, 33}, {13, 70, 301}, {50, 97, 600}, {3, 300, 5}, {5, 33, 0}};
  for (const auto& s : shapes) {
    const int64_t M = s[0], N = s[1], K = s[2];
    auto A = test::random_normal(static_cast<size_t>(M * std::max<int64_t>(K, 1)), 1.0f, seed + 1);
    auto W = test::random_normal(static_cast<size_t>(N * std::max<int64_t>(K, 1)), 1.0f, seed + 2);
    // Reference over B = W^T.
    std::vector<float> B(static_cast<size_t>(K * N));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) B[size_t(k * N + n)] = W[size_t(n * K + k)];
    std::vector<float> ref(static_cast<size_t>(M * N));
    gemm_reference(GemmA{A.data(), K, 1}, M, B.data(), K, N, N, ref.data(), N);
    PackedB P;
    pack_b_from_nk(W.data(), N, K, P);
    for (const auto& isa : available_isas()) {
      SCOPED_TRACE("isa " + isa + " M " + std::to_string(M) + " N " + std::to_string(N) +
                   " K " + std::to_string(K));
      set_gemm_isa(isa);
      std::vector<float> C(static_cast<size_t>(M * N), std::numeric_limits<float>::quiet_NaN());
      gemm(GemmA{A.data(), K, 1}, M, P, C.data(), N);
      ASSERT_EQ(0, std::memcmp(C.data(), ref.data(), C.size() * sizeof(float)));
      // Accumulate: continues the chain from C's value.
      std::vector<float> C2 = ref, ref2 = ref;
      gemm(GemmA{A.data(), K, 1}, M, P, C2.data(), N, true);
      gemm_reference(GemmA{A.data(), K, 1}, M, B.data(), K, N, N, ref2.data(), N, true);
      ASSERT_EQ(0, std::memcmp(C2.data(), ref2.data(), C2.size() * sizeof(float)));
    }
  }
}

TEST(Gemm, StridedAndTransposedA) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t M = 19, N = 41, K = 37;
  auto At = test::random_normal(static_cast<size_t>(K * M), 1.0f, seed);  // A^T stored [K, M]
  auto B = test::random_normal(static_cast<size_t>(K * N), 1.0f, seed + 7);
  PackedB P;
  pack_b_from_kn(B.data(), K, N, N, P);
  std::vector<float> C(static_cast<size_t>(M * N)), ref(static_cast<size_t>(M * N));
  gemm(GemmA{At.data(), 1, M}, M, P, C.data(), N);
  gemm_reference(GemmA{At.data(), 1, M}, M, B.data(), K, N, N, ref.data(), N);
  EXPECT_EQ(0, std::memcmp(C.data(), ref.data(), C.size() * sizeof(float)));
  // And the values are a real product (double check of the reference itself).
  for (int64_t i = 0; i < M; i += 5)
    for (int64_t j = 0; j < N; j += 7) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(At[size_t(k * M + i)]) * B[size_t(k * N + j)];
      EXPECT_NEAR(C[size_t(i * N + j)], s, 1e-4);
    }
}

TEST(Gemm, RowsAreBatchAndThreadInvariant) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t N = 333, K = 517, M = 61;
  auto A = test::random_normal(static_cast<size_t>(M * K), 1.0f, seed);
  auto W = test::random_normal(static_cast<size_t>(N * K), 1.0f, seed + 3);
  PackedB P;
  pack_b_from_nk(W.data(), N, K, P);
  const int saved = omp_get_max_threads();
  std::vector<float> full(static_cast<size_t>(M * N));
  omp_set_num_threads(2);
  gemm(GemmA{A.data(), K, 1}, M, P, full.data(), N);
  omp_set_num_threads(1);
  std::vector<float> one(static_cast<size_t>(M * N));
  gemm(GemmA{A.data(), K, 1}, M, P, one.data(), N);
  EXPECT_EQ(0, std::memcmp(full.data(), one.data(), full.size() * sizeof(float)));
  for (int64_t i : {0L, 5L, 47L, 60L}) {
    std::vector<float> row(static_cast<size_t>(N));
    gemm(GemmA{A.data() + i * K, K, 1}, 1, P, row.data(), N);
    EXPECT_EQ(0, std::memcmp(row.data(), full.data() + i * N, size_t(N) * sizeof(float))) << "row " << i;
    std::vector<float> part(static_cast<size_t>(3 * N));
    const int64_t i0 = std::min<int64_t>(i, M - 3);
    gemm(GemmA{A.data() + i0 * K, K, 1}, 3, P, part.data(), N);
    EXPECT_EQ(0, std::memcmp(part.data() + (i - i0) * N, full.data() + i * N, size_t(N) * sizeof(float)));
  }
  omp_set_num_threads(saved);
}

TEST(Gemm, FusedPackingEqualsSeparateProjections) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t K = 70, N1 = 33, N2 = 17, M = 9;
  auto A = test::random_normal(static_cast<size_t>(M * K), 1.0f, seed);
  auto W1 = test::random_normal(static_cast<size_t>(N1 * K), 1.0f, seed + 1);
  auto W2 = test::random_normal(static_cast<size_t>(N2 * K), 1.0f, seed + 2);
  PackedB F, P1, P2;
  pack_b_from_nk_multi({W1.data(), W2.data()}, {N1, N2}, K, F);
  pack_b_from_nk(W1.data(), N1, K, P1);
  pack_b_from_nk(W2.data(), N2, K, P2);
  std::vector<float> CF(static_cast<size_t>(M * (N1 + N2))), C1(static_cast<size_t>(M * N1)), C2(static_cast<size_t>(M * N2));
  gemm(GemmA{A.data(), K, 1}, M, F, CF.data(), N1 + N2);
  gemm(GemmA{A.data(), K, 1}, M, P1, C1.data(), N1);
  gemm(GemmA{A.data(), K, 1}, M, P2, C2.data(), N2);
  for (int64_t i = 0; i < M; ++i) {
    EXPECT_EQ(0, std::memcmp(CF.data() + i * (N1 + N2), C1.data() + i * N1, size_t(N1) * 4));
    EXPECT_EQ(0, std::memcmp(CF.data() + i * (N1 + N2) + N1, C2.data() + i * N2, size_t(N2) * 4));
  }
}

TEST(Gemm, UnknownIsaIsAnError) {
  IsaGuard guard;
  EXPECT_THROW(set_gemm_isa("neon"), Error);
}

}  // namespace
}  // namespace qarl::kernels
