// GPU matrix products (kernels/cuda/gemm.h) against a CPU double-precision reference on
// bf16-rounded random inputs, both forward modes and the two backward products, odd shapes,
// strided operands, F32/BF16 outputs, accumulate on/off, poisoned outputs; and the exact
// mode's batch invariance, bitwise. GPU cases skip, with the reason, where no CUDA device is
// usable (CI); the argument checks run everywhere.
//
// Error bound (per element, fp32 accumulation over a length-L dot product `dot`):
//   |got - want| <= L * 2^-22 * sum_l |a_l w_l|  +  u_out * (|want| + |dot|)
// with want = old (if accumulating) + dot (exact), u_out = 2^-7 for a BF16 output and 2^-22
// for F32. 2^-7 |x| is one bf16 ulp of x: cuBLAS's bf16 outputs were seen one ulp off the
// nearest value on the H200 (it may round dot to bf16 before adding old, hence |dot|); the
// exact kernel rounds once, RNE. A rounding-to-nearest fp32 sum is within
// (L-1) * 2^-24 * sum|a_l w_l|; the 4x margin leaves room for the tensor cores' alignment.
// The helpers and check_result are in cuda_gemm_ref.h (shared with cuda_gemm_lt_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "qarl/core/error.h"
#include "qarl/core/half.h"
#include "qarl/kernels/cuda/device.h"
#include "qarl/kernels/cuda/gemm.h"
#ifdef QARL_HAVE_CUDA
#include "qarl/kernels/cuda/gemm_internal.h"
#endif
#include "test_util.h"

#include "cuda_gemm_ref.h"

namespace qarl {
namespace {

namespace gpu = kernels::gpu;
using gpu::Elem;
using gpu::GemmMode;

using namespace gemm_ref;  // the shared helpers (cuda_gemm_ref.h)


const int64_t kMs[] = {1, 4, 7, 133};  // 1 and 4: the fast GEMV and the exact decode tile
const int64_t kNs[] = {1, 77, 1000};
const int64_t kKs[] = {16, 200, 1029};

TEST(CudaGemm, RejectsBadArguments) {
  EXPECT_STREQ(gpu::gemm_mode_name(GemmMode::kExact), "exact");
  EXPECT_STREQ(gpu::gemm_mode_name(GemmMode::kFast), "fast");
  EXPECT_EQ(gpu::parse_gemm_mode("exact"), GemmMode::kExact);
  EXPECT_EQ(gpu::parse_gemm_mode("fast"), GemmMode::kFast);
  EXPECT_THROW(gpu::parse_gemm_mode("cublas"), Error);
  uint16_t a[64] = {};
  float c[64] = {};
  // Row strides shorter than a row, negative shapes, a bad output type: usage errors before
  // anything reaches the device.
  EXPECT_THROW(gpu::gemm_forward(GemmMode::kExact, 2, 2, 8, a, 4, a, 8, Elem::F32, c, 2, false, nullptr), Error);
  EXPECT_THROW(gpu::gemm_forward(GemmMode::kFast, 2, 2, 8, a, 8, a, 8, Elem::F32, c, 1, false, nullptr), Error);
  EXPECT_THROW(gpu::gemm_forward(GemmMode::kFast, -1, 2, 8, a, 8, a, 8, Elem::F32, c, 2, false, nullptr), Error);
  EXPECT_THROW(gpu::gemm_forward(GemmMode::kFast, 2, 2, 8, a, 8, a, 8, Elem::F16, c, 2, false, nullptr), Error);
  EXPECT_THROW(gpu::gemm_backward_data(2, 2, 8, a, 1, a, 8, Elem::F32, c, 8, false, nullptr), Error);
  EXPECT_THROW(gpu::gemm_backward_weight(2, 2, 8, a, 2, a, 8, c, 4, true, nullptr), Error);
  try {
    gpu::gemm_forward(GemmMode::kExact, 2, 2, 8, a, 4, a, 8, Elem::F32, c, 2, false, nullptr);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("stride"), std::string::npos) << e.what();
  }
  // M = 0 is a no-op even without a device.
  EXPECT_NO_THROW(gpu::gemm_forward(GemmMode::kExact, 0, 2, 8, nullptr, 8, a, 8, Elem::F32, nullptr, 2, false, nullptr));
}

TEST(CudaGemm, ForwardMatchesReference) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  uint64_t k = 0;
  double worst = 0;
  for (int64_t M : kMs)
    for (int64_t N : kNs)
      for (int64_t K : kKs) {
        // Row strides: tight, odd (the exact kernel's guarded path), aligned with a gap.
        const int64_t lda = k % 3 == 0 ? K : k % 3 == 1 ? K + 3 : (K + 7) / 8 * 8 + 8;
        const int64_t ldw = k % 2 == 0 ? K : (K + 7) / 8 * 8 + 16;
        const int64_t ldc = k % 2 == 0 ? N : N + 5;
        auto A = random_matrix(M, K, lda, 1.0f, seed + 100 * k + 1);
        auto W = random_matrix(N, K, ldw, 0.1f, seed + 100 * k + 2);
        const Ref ref = dot_ref(M, N, K, A, lda, 1, W, ldw, 1);
        Tensor dA = upload(A), dW = upload(W);
        std::vector<float> fast_f32, exact_f32;
        for (GemmMode mode : {GemmMode::kFast, GemmMode::kExact})
          for (Elem t : {Elem::F32, Elem::BF16})
            for (bool acc : {false, true}) {
              SCOPED_TRACE(fmt::format("{} M {} N {} K {} lda {} ldw {} ldc {} out {} accumulate {}",
                                       gpu::gemm_mode_name(mode), M, N, K, lda, ldw, ldc,
                                       t == Elem::F32 ? "F32" : "BF16", acc));
              std::vector<float> old = old_values(M, N, ldc, acc, seed + 100 * k + 3);
              Tensor dC = upload_out(old, t);
              gpu::gemm_forward(mode, M, N, K, bf(dA), lda, bf(dW), ldw, t, dC.data(), ldc, acc, nullptr);
              std::vector<float> got = download_out(dC, t);
              ASSERT_TRUE(check_result(got, old, t, acc, ref, M, N, ldc, K, &worst));
              if (t == Elem::F32 && !acc) (mode == GemmMode::kFast ? fast_f32 : exact_f32) = got;
            }
        // The two modes agree within twice the accumulation bound.
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < N; ++j) {
            const size_t o = size_t(i * ldc + j);
            const double bound = 2 * double(K) * std::ldexp(1.0, -22) * ref.mag[size_t(i * N + j)] + 1e-30;
            ASSERT_LE(std::fabs(double(fast_f32[o]) - exact_f32[o]), bound)
                << fmt::format("fast vs exact at ({}, {}), M {} N {} K {}", i, j, M, N, K);
          }
        ++k;
      }
  std::printf("forward: worst |err| / bound %.3f\n", worst);
}

TEST(CudaGemm, BackwardDataMatchesReference) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  uint64_t k = 0;
  double worst = 0;
  for (int64_t M : kMs)
    for (int64_t N : kNs)
      for (int64_t K : kKs) {
        const int64_t lddc = k % 2 == 0 ? N : N + 3;
        const int64_t ldw = k % 3 == 0 ? K : K + 5;
        const int64_t ldda = k % 2 == 1 ? K : K + 7;
        auto G = random_matrix(M, N, lddc, 1.0f, seed + 100 * k + 1);
        auto W = random_matrix(N, K, ldw, 0.1f, seed + 100 * k + 2);
        // dA[m][k] = sum_n dC[m][n] W[n][k]
        const Ref ref = dot_ref(M, K, N, G, lddc, 1, W, 1, ldw);
        Tensor dG = upload(G), dW = upload(W);
        for (Elem t : {Elem::F32, Elem::BF16})
          for (bool acc : {false, true}) {
            SCOPED_TRACE(fmt::format("M {} N {} K {} lddc {} ldw {} ldda {} out {} accumulate {}", M, N,
                                     K, lddc, ldw, ldda, t == Elem::F32 ? "F32" : "BF16", acc));
            std::vector<float> old = old_values(M, K, ldda, acc, seed + 100 * k + 3);
            Tensor out = upload_out(old, t);
            gpu::gemm_backward_data(M, N, K, bf(dG), lddc, bf(dW), ldw, t, out.data(), ldda, acc, nullptr);
            ASSERT_TRUE(check_result(download_out(out, t), old, t, acc, ref, M, K, ldda, N, &worst));
          }
        ++k;
      }
  std::printf("backward data: worst |err| / bound %.3f\n", worst);
}

TEST(CudaGemm, BackwardWeightMatchesReference) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  uint64_t k = 0;
  double worst = 0;
  for (int64_t M : kMs)
    for (int64_t N : kNs)
      for (int64_t K : kKs) {
        const int64_t lddc = k % 2 == 0 ? N : N + 3;
        const int64_t lda = k % 3 == 0 ? K : K + 5;
        const int64_t lddw = k % 2 == 1 ? K : K + 7;
        SCOPED_TRACE(fmt::format("M {} N {} K {} lddc {} lda {} lddw {}", M, N, K, lddc, lda, lddw));
        auto G = random_matrix(M, N, lddc, 1.0f, seed + 100 * k + 1);
        auto A = random_matrix(M, K, lda, 1.0f, seed + 100 * k + 2);
        // dW[n][k] += sum_m dC[m][n] A[m][k]
        const Ref ref = dot_ref(N, K, M, G, 1, lddc, A, 1, lda);
        const bool acc = k % 3 != 2;  // mostly +=, sometimes = (a fresh gradient, beta 0)
        std::vector<float> old = old_values(N, K, lddw, acc, seed + 100 * k + 3);
        Tensor dG = upload(G), dA = upload(A), dW = upload(old);
        gpu::gemm_backward_weight(M, N, K, bf(dG), lddc, bf(dA), lda, static_cast<float*>(dW.data()),
                                  lddw, acc, nullptr);
        ASSERT_TRUE(check_result(download<float>(dW), old, Elem::F32, acc, ref, N, K, lddw, M, &worst))
            << "accumulate " << acc;
        ++k;
      }
  std::printf("backward weight: worst |err| / bound %.3f\n", worst);
}

// Row r of C from the exact kernel is the same bits whether row r is computed alone (M = 1)
// or at any position of a 20- to 8192-row A with random other rows, for F32 and BF16 outputs,
// with and without accumulate (the old C row is the same in both). This covers every tile
// configuration (skinny 16/32/64 rows, mid 64x64, big 128x128, large: checked below
// through gemm_exact_config) and both load paths (K = 1024 / 1032 with 16-byte aligned rows;
// K = 1029, odd strides); N = 77 / 300 / 1000 / 2200 and K = 1032 are not tile multiples.
TEST(CudaGemm, ExactIsBatchInvariant) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  constexpr int kRows = 6;
  struct Shape3 { int64_t N, K, lda; };
  const Shape3 shapes[] = {{77, 1024, 1024}, {2200, 1024, 1032}, {1000, 1032, 1040},
                           {300, 1029, 1029}, {2200, 1029, 1031}};
  const int64_t kBatchMs[] = {20, 37, 300, 1000, 4100, 8192};
  struct Out { Elem t; bool acc; };
  const Out outs[] = {{Elem::F32, false}, {Elem::F32, true}, {Elem::BF16, false}, {Elem::BF16, true}};
  // Old C values: cheap uniform junk in [-4, 4) (the GPU adds them; nothing checks them here).
  auto junk = [&](size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = float(int64_t(rng() >> 40) - (int64_t(1) << 23)) * std::ldexp(1.0f, -21);
    return v;
  };
  bool saw_large = false;
  for (const Shape3& s : shapes) {
    const int64_t N = s.N, K = s.K, lda = s.lda;
    auto W = random_matrix(N, K, K, 0.1f, rng());
    Tensor dW = upload(W);
    auto rows = random_matrix(kRows, K, K, 1.0f, rng());
    const std::vector<float> old_rows = junk(size_t(kRows * N));  // old C of each target row
    // Each target row alone, per output kind.
    std::vector<std::vector<float>> alone[4];
    for (int o = 0; o < 4; ++o)
      for (int r = 0; r < kRows; ++r) {
        std::vector<uint16_t> one(rows.begin() + r * K, rows.begin() + (r + 1) * K);
        Tensor dA = upload(one);
        std::vector<float> c(old_rows.begin() + r * N, old_rows.begin() + (r + 1) * N);
        if (!outs[o].acc) std::fill(c.begin(), c.end(), std::nanf(""));
        Tensor dC = upload_out(c, outs[o].t);
        gpu::gemm_forward(GemmMode::kExact, 1, N, K, bf(dA), K, bf(dW), K, outs[o].t, dC.data(), N,
                          outs[o].acc, nullptr);
        alone[o].push_back(download_out(dC, outs[o].t));
      }
    for (int64_t M : kBatchMs) {
      auto A = random_matrix(M, K, lda, 1.0f, rng());
      std::vector<int64_t> pos(static_cast<size_t>(M));
      std::iota(pos.begin(), pos.end(), 0);
      std::shuffle(pos.begin(), pos.end(), rng);
      // One target row is the last row (the ragged edge of the last M tile).
      std::iter_swap(std::find(pos.begin(), pos.end(), M - 1), pos.begin() + (kRows - 1));
      for (int r = 0; r < kRows; ++r)
        std::copy(rows.begin() + r * K, rows.begin() + (r + 1) * K, A.begin() + pos[size_t(r)] * lda);
      Tensor dA = upload(A);
      std::vector<float> old = junk(size_t(M * N));
      for (int r = 0; r < kRows; ++r)
        std::copy(old_rows.begin() + r * N, old_rows.begin() + (r + 1) * N, old.begin() + pos[size_t(r)] * N);
#ifdef QARL_HAVE_CUDA
      const char* cfg = gpu::detail::gemm_exact_config(
          M, N, K, gpu::detail::gemm_exact_aligned(K, bf(dA), lda, bf(dW), K));
      // The large-M tiles: mma.sync "large ..." or the wgmma tile (sm_90a builds).
      saw_large = saw_large || std::strncmp(cfg, "large", 5) == 0 || std::strncmp(cfg, "wgmma", 5) == 0;
#else
      const char* cfg = "?";
#endif
      for (int o = 0; o < 4; ++o) {
        const Elem t = outs[o].t;
        const bool acc = outs[o].acc;
        SCOPED_TRACE(fmt::format("N {} K {} lda {} M {} ({}) out {} accumulate {}", N, K, lda, M, cfg,
                                 t == Elem::F32 ? "F32" : "BF16", acc));
        Tensor dC = acc ? upload_out(old, t) : upload_out(std::vector<float>(old.size(), std::nanf("")), t);
        gpu::gemm_forward(GemmMode::kExact, M, N, K, bf(dA), lda, bf(dW), K, t, dC.data(), N, acc, nullptr);
        std::vector<float> C = download_out(dC, t);
        for (int r = 0; r < kRows; ++r)
          for (int64_t j = 0; j < N; ++j) {
            const float a = alone[o][size_t(r)][size_t(j)], b = C[size_t(pos[size_t(r)] * N + j)];
            ASSERT_EQ(std::memcmp(&a, &b, 4), 0)
                << fmt::format("row {} (at {}) column {}: alone {} vs in batch {}", r, pos[size_t(r)], j, a, b);
          }
      }
    }
  }
#ifdef QARL_HAVE_CUDA
  EXPECT_TRUE(saw_large) << "no case reached the large-M tile";
#endif
}

// Every tile configuration of the exact kernel, forced in turn, gives the same bits as the
// mid 64x64 tile on the same problem (whatever pick() chooses today): F32 / BF16 output, even
// and odd ldc, accumulate on / off; M = 8200 (the persistent large tiles loop over 1-2 tiles
// per CTA), a 2-k-tile K = 72, K = 0 (C = 0 + C), N and K not tile multiples.
TEST(CudaGemm, ExactConfigsAgreeBitwise) {
  SKIP_WITHOUT_GPU();
#ifndef QARL_HAVE_CUDA
  GTEST_SKIP() << "built without CUDA";
#else
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  struct Case { int64_t M, N, K, lda; };
  // M = 1 and 5: the decode tiles' shapes (one real row, a ragged 16-row tile), K = 3080 and
  // 264: several k-tiles plus a partial one.
  const Case cases[] = {{8200, 1000, 1032, 1040}, {300, 2100, 72, 72}, {500, 300, 0, 8},
                        {1, 1001, 3080, 3080}, {5, 203, 264, 272}};
  int mid = -1;
  for (int c = 0; c < gpu::detail::gemm_exact_config_count(); ++c)
    if (std::strncmp(gpu::detail::gemm_exact_config_name(c), "mid", 3) == 0) mid = c;
  ASSERT_GE(mid, 0);
  for (const Case& cs : cases) {
    const int64_t M = cs.M, N = cs.N, K = cs.K;
    auto A = random_matrix(M, std::max<int64_t>(K, 1), cs.lda, 1.0f, rng());
    auto W = random_matrix(N, std::max<int64_t>(K, 1), std::max<int64_t>(K, 8), 0.1f, rng());
    Tensor dA = upload(A), dW = upload(W);
    const int64_t ldw = std::max<int64_t>(K, 8);
    for (Elem t : {Elem::F32, Elem::BF16})
      for (bool acc : {false, true}) {
        const int64_t ldc = t == Elem::F32 ? N : N + 1;
        std::vector<float> old = old_values(M, N, ldc, acc, rng());
        std::vector<float> want;
        for (int c : {mid}) {
          Tensor dC = upload_out(old, t);
          ASSERT_EQ(gpu::detail::launch_gemm_exact_as(c, M, N, K, bf(dA), cs.lda, bf(dW), ldw, t, dC.data(),
                                                      ldc, acc, nullptr), "");
          want = download_out(dC, t);
        }
        for (int c = 0; c < gpu::detail::gemm_exact_config_count(); ++c) {
          SCOPED_TRACE(fmt::format("{} vs mid: M {} N {} K {} ldc {} out {} accumulate {}",
                                   gpu::detail::gemm_exact_config_name(c), M, N, K, ldc,
                                   t == Elem::F32 ? "F32" : "BF16", acc));
          Tensor dC = upload_out(old, t);
          ASSERT_EQ(gpu::detail::launch_gemm_exact_as(c, M, N, K, bf(dA), cs.lda, bf(dW), ldw, t, dC.data(),
                                                      ldc, acc, nullptr), "");
          std::vector<float> got = download_out(dC, t);
          for (size_t e = 0; e < got.size(); ++e)
            ASSERT_EQ(std::memcmp(&got[e], &want[e], 4), 0)
                << fmt::format("element ({}, {}): {} vs mid {}", e / size_t(ldc), e % size_t(ldc), got[e], want[e]);
          if (!acc) continue;
          // The addend from another buffer (the trainer's residual stream): the same bits in
          // C's rows, the addend untouched, C's gaps as they were (NaN poison).
          Tensor dIn = upload_out(old, t);
          Tensor dOut = upload_out(std::vector<float>(old.size(), std::nanf("")), t);
          ASSERT_EQ(gpu::detail::launch_gemm_exact_as(c, M, N, K, bf(dA), cs.lda, bf(dW), ldw, t, dOut.data(),
                                                      ldc, acc, nullptr, dIn.data()), "");
          const std::vector<float> apart = download_out(dOut, t), in_after = download_out(dIn, t),
                                   in_before = download_out(upload_out(old, t), t);
          for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j) {
              const size_t e = size_t(i * ldc + j);
              ASSERT_EQ(std::memcmp(&apart[e], &want[e], 4), 0)
                  << fmt::format("out of place, element ({}, {}): {} vs {}", i, j, apart[e], want[e]);
            }
          ASSERT_EQ(std::memcmp(in_after.data(), in_before.data(), 4 * in_after.size()), 0) << "the addend was written";
        }
      }
  }
#endif
}

// gemm_forward with the addend in another buffer (c_in): exact mode (tile kernels) and the fast
// GEMV give the in-place bits; cuBLAS (legacy, cuBLASLt heuristic and timed) is checked against
// the reference. c_in is never written; C's gaps keep their poison.
TEST(CudaGemm, ForwardAddsAnotherBuffer) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  using gpu::GemmAutotune;
  const GemmAutotune before = gpu::gemm_autotune();
  uint64_t k = 0;
  double worst = 0;
  for (int64_t M : {int64_t(1), int64_t(3), int64_t(64), int64_t(517)})
    for (int64_t N : {int64_t(77), int64_t(300)}) {
      const int64_t K = k % 2 == 0 ? 1024 : 72, ldc = N + 3;
      auto A = random_matrix(M, K, K, 1.0f, seed + 100 * k + 1);
      auto W = random_matrix(N, K, K, 0.1f, seed + 100 * k + 2);
      const Ref ref = dot_ref(M, N, K, A, K, 1, W, K, 1);
      Tensor dA = upload(A), dW = upload(W);
      for (Elem t : {Elem::F32, Elem::BF16}) {
        const std::vector<float> old = old_values(M, N, ldc, true, seed + 100 * k + 3);
        const std::vector<float> poison(old.size(), std::nanf(""));
        for (int v = 0; v < 4; ++v) {  // exact, then fast through each cuBLAS mode
          const GemmMode mode = v == 0 ? GemmMode::kExact : GemmMode::kFast;
          if (v > 0) gpu::set_gemm_autotune(v == 1 ? GemmAutotune::kLegacy : v == 2 ? GemmAutotune::kHeuristic
                                                                           : GemmAutotune::kTimed);
          SCOPED_TRACE(fmt::format("variant {} M {} N {} K {} out {}", v, M, N, K, t == Elem::F32 ? "F32" : "BF16"));
          Tensor dIn = upload_out(old, t), dOut = upload_out(poison, t), dInPlace = upload_out(old, t);
          gpu::gemm_forward(mode, M, N, K, bf(dA), K, bf(dW), K, t, dOut.data(), ldc, true, nullptr, dIn.data());
          gpu::gemm_forward(mode, M, N, K, bf(dA), K, bf(dW), K, t, dInPlace.data(), ldc, true, nullptr);
          const std::vector<float> got = download_out(dOut, t), in_place = download_out(dInPlace, t);
          ASSERT_TRUE(check_result(got, old, t, true, ref, M, N, ldc, K, &worst));
          const std::vector<float> in_after = download_out(dIn, t), in_before = download_out(upload_out(old, t), t);
          EXPECT_EQ(std::memcmp(in_after.data(), in_before.data(), 4 * in_after.size()), 0) << "the addend was written";
          if (v == 0 || M <= 4) {  // exact; the fast GEMV (M <= 4 and aligned operands: both Ks here)
            for (int64_t i = 0; i < M; ++i)
              for (int64_t j = 0; j < N; ++j) {
                const size_t e = size_t(i * ldc + j);
                ASSERT_EQ(std::memcmp(&got[e], &in_place[e], 4), 0) << fmt::format("({}, {})", i, j);
              }
          }
        }
      }
      ++k;
    }
  gpu::set_gemm_autotune(before);
  std::printf("forward with a separate addend: worst |err| / bound %.3f\n", worst);
}

// The large-M tile against the CPU reference (ForwardMatchesReference's sizes stay below
// it): M = 4500 and 8192 rows, N and K not tile multiples, row strides with gaps, even and odd
// ldc (paired and single stores), F32 / BF16 output, accumulate on / off. The reference is
// computed for a sample of rows (random ones, the first and the last of the ragged tiles).
TEST(CudaGemm, ExactLargeMatchesReference) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  struct Case { int64_t M, N, K, lda, ldw, ldc; };
  const Case cases[] = {{4500, 1000, 1032, 1040, 1032, 1006}, {8192, 777, 2056, 2056, 2064, 781}};
  double worst = 0;
  for (const Case& c : cases) {
    auto A = random_matrix(c.M, c.K, c.lda, 1.0f, rng());
    auto W = random_matrix(c.N, c.K, c.ldw, 0.1f, rng());
    Tensor dA = upload(A), dW = upload(W);
    // Sampled rows: random ones plus the edges.
    std::vector<int64_t> sample = {0, 127, 128, c.M - 129, c.M - 128, c.M - 1};
    for (int i = 0; i < 40; ++i) sample.push_back(int64_t(rng() % uint64_t(c.M)));
    const int64_t R = int64_t(sample.size());
    std::vector<uint16_t> As(size_t(R * c.K));
    for (int64_t r = 0; r < R; ++r)
      std::copy(A.begin() + sample[size_t(r)] * c.lda, A.begin() + sample[size_t(r)] * c.lda + c.K,
                As.begin() + r * c.K);
    const Ref ref = dot_ref(R, c.N, c.K, As, c.K, 1, W, c.ldw, 1);
#ifdef QARL_HAVE_CUDA
    EXPECT_STREQ(gpu::detail::gemm_exact_config(c.M, c.N, c.K, gpu::detail::gemm_exact_aligned(c.K, bf(dA), c.lda, bf(dW), c.ldw)),
                 gpu::detail::gemm_exact_config(8192, 4096, 1024, true));
#endif
    for (Elem t : {Elem::F32, Elem::BF16})
      for (bool acc : {false, true}) {
        SCOPED_TRACE(fmt::format("M {} N {} K {} lda {} ldw {} ldc {} out {} accumulate {}", c.M, c.N, c.K,
                                 c.lda, c.ldw, c.ldc, t == Elem::F32 ? "F32" : "BF16", acc));
        std::vector<float> old = old_values(c.M, c.N, c.ldc, acc, rng());
        Tensor dC = upload_out(old, t);
        gpu::gemm_forward(GemmMode::kExact, c.M, c.N, c.K, bf(dA), c.lda, bf(dW), c.ldw, t, dC.data(), c.ldc,
                          acc, nullptr);
        std::vector<float> got = download_out(dC, t);
        std::vector<float> got_s(size_t(R * c.ldc)), old_s(size_t(R * c.ldc));
        for (int64_t r = 0; r < R; ++r) {
          std::copy(got.begin() + sample[size_t(r)] * c.ldc, got.begin() + (sample[size_t(r)] + 1) * c.ldc,
                    got_s.begin() + r * c.ldc);
          std::copy(old.begin() + sample[size_t(r)] * c.ldc, old.begin() + (sample[size_t(r)] + 1) * c.ldc,
                    old_s.begin() + r * c.ldc);
        }
        ASSERT_TRUE(check_result(got_s, old_s, t, acc, ref, R, c.N, c.ldc, c.K, &worst));
      }
  }
  std::printf("exact large: worst |err| / bound %.3f\n", worst);
}

}  // namespace
}  // namespace qarl
