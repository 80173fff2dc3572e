// The three ways the cuBLAS products are issued (gemm.h: GemmAutotune: legacy cublasGemmEx,
// cuBLASLt with the heuristic's first algorithm, cuBLASLt with the fastest by timing) against
// the CPU reference (cuda_gemm_ref.h: same bound as cuda_gemm_test.cpp) on odd shapes, M = 1,
// 3, 64, 513, beta 0 and 1, F32 and BF16 outputs, operands and outputs aligned or offset by one
// element; the timed choice giving the same bits call after call (and its timing never
// touching the real output); an uncached key under CUDA graph capture; QARL_GEMM_AUTOTUNE's
// parsing. GPU cases skip, with the reason, where no CUDA device is usable.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "qarl/core/error.h"
#include "qarl/kernels/cuda/device.h"
#include "qarl/kernels/cuda/gemm.h"
#include "test_util.h"

#include "cuda_gemm_ref.h"

#ifdef QARL_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace qarl {
namespace {

namespace gpu = kernels::gpu;
using gpu::Elem;
using gpu::GemmAutotune;
using gpu::GemmMode;
using namespace gemm_ref;  // the shared helpers (cuda_gemm_ref.h)

const GemmAutotune kModes[] = {GemmAutotune::kLegacy, GemmAutotune::kHeuristic, GemmAutotune::kTimed};

// Sets the mode for a scope, then puts the process's back.
class ModeScope {
 public:
  explicit ModeScope(GemmAutotune a) : was_(gpu::gemm_autotune()) { gpu::set_gemm_autotune(a); }
  ~ModeScope() { gpu::set_gemm_autotune(was_); }
  ModeScope(const ModeScope&) = delete;
  ModeScope& operator=(const ModeScope&) = delete;

 private:
  GemmAutotune was_;
};

// v behind `off` pad elements: once uploaded, data() + off is v misaligned by `off` elements.
template <class T>
std::vector<T> behind(const std::vector<T>& v, int off, T pad) {
  std::vector<T> s(v.size() + size_t(off), pad);
  std::copy(v.begin(), v.end(), s.begin() + off);
  return s;
}

// Runs call(C) on an output of type t holding `old`, placed behind `off` NaN elements; returns
// the output (without the pad), after checking that the pad kept its poison.
template <class Fn>
std::vector<float> run_out(const std::vector<float>& old, Elem t, int off, Fn call) {
  Tensor d = upload_out(behind(old, off, std::nanf("")), t);
  call(static_cast<void*>(static_cast<char*>(d.data()) + off * (t == Elem::F32 ? 4 : 2)));
  std::vector<float> got = download_out(d, t);
  for (int i = 0; i < off; ++i) EXPECT_TRUE(std::isnan(got[size_t(i)])) << "the element before the output was written";
  return std::vector<float>(got.begin() + off, got.end());
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(CudaGemmAutotune, ParsesTheSwitch) {
  EXPECT_EQ(gpu::parse_gemm_autotune(nullptr), GemmAutotune::kTimed);  // unset: the default
  EXPECT_EQ(gpu::parse_gemm_autotune("1"), GemmAutotune::kTimed);
  EXPECT_EQ(gpu::parse_gemm_autotune("0"), GemmAutotune::kHeuristic);
  EXPECT_EQ(gpu::parse_gemm_autotune("legacy"), GemmAutotune::kLegacy);
  for (GemmAutotune a : kModes) EXPECT_EQ(gpu::parse_gemm_autotune(gpu::gemm_autotune_name(a)), a);
  for (const char* bad : {"", "2", "true", "LEGACY", " 1", "01"}) {
    try {
      gpu::parse_gemm_autotune(bad);
      ADD_FAILURE() << "'" << bad << "' was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage) << bad;
      EXPECT_NE(std::string(e.what()).find("QARL_GEMM_AUTOTUNE"), std::string::npos) << e.what();
    }
  }
  // Through the environment (what gemm_autotune() reads on first use).
  const char* env = std::getenv("QARL_GEMM_AUTOTUNE");
  const std::string saved = env ? env : "";
  const bool had = env != nullptr;
  setenv("QARL_GEMM_AUTOTUNE", "fast", 1);
  EXPECT_THROW(gpu::gemm_autotune_from_env(), Error);
  setenv("QARL_GEMM_AUTOTUNE", "legacy", 1);
  EXPECT_EQ(gpu::gemm_autotune_from_env(), GemmAutotune::kLegacy);
  if (had)
    setenv("QARL_GEMM_AUTOTUNE", saved.c_str(), 1);
  else
    unsetenv("QARL_GEMM_AUTOTUNE");
  // The setter wins over the environment.
  {
    ModeScope scope(GemmAutotune::kHeuristic);
    EXPECT_EQ(gpu::gemm_autotune(), GemmAutotune::kHeuristic);
  }
}

// Forward, backward data and backward weight in every mode; M = 1 and 3 with aligned operands
// take the GEMV in the forward (not cuBLAS), misaligned ones cuBLAS.
TEST(CudaGemmAutotune, EveryModeMatchesReference) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  struct NK { int64_t N, K; };
  const int64_t kMs[] = {1, 3, 64, 513};
  const NK kNKs[] = {{77, 200}, {300, 1029}};
  double worst = 0;
  uint64_t k = 0;
  for (int64_t M : kMs)
    for (const NK& nk : kNKs) {
      const int64_t N = nk.N, K = nk.K;
      const uint64_t s = seed + 100 * k++;
      auto A = random_matrix(M, K, K, 1.0f, s + 1);
      auto W = random_matrix(N, K, K, 0.1f, s + 2);
      auto G = random_matrix(M, N, N, 1.0f, s + 3);
      const Ref fwd = dot_ref(M, N, K, A, K, 1, W, K, 1);  // C[m][n] = sum_k A[m][k] W[n][k]
      const Ref dat = dot_ref(M, K, N, G, N, 1, W, 1, K);  // dA[m][k] = sum_n dC[m][n] W[n][k]
      const Ref wgt = dot_ref(N, K, M, G, 1, N, A, 1, K);  // dW[n][k] += sum_m dC[m][n] A[m][k]
      for (int off : {0, 1}) {
        Tensor dA = upload(behind(A, off, uint16_t(0))), dW = upload(behind(W, off, uint16_t(0))),
               dG = upload(behind(G, off, uint16_t(0)));
        const uint16_t *a = bf(dA) + off, *w = bf(dW) + off, *g = bf(dG) + off;
        for (GemmAutotune mode : kModes) {
          ModeScope scope(mode);
          for (Elem t : {Elem::F32, Elem::BF16})
            for (bool acc : {false, true}) {
              SCOPED_TRACE(fmt::format("mode {} M {} N {} K {} offset {} out {} accumulate {}",
                                       gpu::gemm_autotune_name(mode), M, N, K, off,
                                       t == Elem::F32 ? "F32" : "BF16", acc));
              std::vector<float> old = old_values(M, N, N, acc, s + 4);
              std::vector<float> got = run_out(old, t, off, [&](void* c) {
                gpu::gemm_forward(GemmMode::kFast, M, N, K, a, K, w, K, t, c, N, acc, nullptr);
              });
              ASSERT_TRUE(check_result(got, old, t, acc, fwd, M, N, N, K, &worst)) << "forward";
              old = old_values(M, K, K, acc, s + 5);
              got = run_out(old, t, off, [&](void* c) {
                gpu::gemm_backward_data(M, N, K, g, N, w, K, t, c, K, acc, nullptr);
              });
              ASSERT_TRUE(check_result(got, old, t, acc, dat, M, K, K, N, &worst)) << "backward data";
            }
          SCOPED_TRACE(fmt::format("mode {} M {} N {} K {} offset {}", gpu::gemm_autotune_name(mode), M, N, K, off));
          for (bool wacc : {true, false}) {  // += (accumulating) and = (a fresh gradient)
            const std::vector<float> old = old_values(N, K, K, wacc, s + 6);
            const std::vector<float> got = run_out(old, Elem::F32, off, [&](void* c) {
              gpu::gemm_backward_weight(M, N, K, g, N, a, K, static_cast<float*>(c), K, wacc, nullptr);
            });
            ASSERT_TRUE(check_result(got, old, Elem::F32, wacc, wgt, N, K, K, M, &worst))
                << "backward weight, accumulate " << wacc;
          }
        }
      }
    }
  std::printf("every mode: worst |err| / bound %.3f\n", worst);
}

// Timed mode: each product's first call (which times the candidates, on shapes no other test
// uses) and its second give the same bits, accumulating outputs included, which also shows
// that the timing runs never wrote into the real output.
TEST(CudaGemmAutotune, TimedChoiceGivesTheSameBits) {
  SKIP_WITHOUT_GPU();
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  ModeScope scope(GemmAutotune::kTimed);
  struct S { int64_t M, N, K; };
  // Odd; a decode-sized down projection; few outputs, long K (split-K candidates).
  const S shapes[] = {{517, 1001, 1031}, {64, 1024, 3072}, {1024, 128, 4096}};
  for (size_t i = 0; i < std::size(shapes); ++i) {
    const int64_t M = shapes[i].M, N = shapes[i].N, K = shapes[i].K;
    const uint64_t s = seed + 100 * i;
    auto A = random_matrix(M, K, K, 1.0f, s + 1);
    auto W = random_matrix(N, K, K, 0.1f, s + 2);
    auto G = random_matrix(M, N, N, 1.0f, s + 3);
    Tensor dA = upload(A), dW = upload(W), dG = upload(G);
    for (Elem t : {Elem::F32, Elem::BF16})
      for (bool acc : {false, true}) {
        SCOPED_TRACE(fmt::format("M {} N {} K {} out {} accumulate {}", M, N, K, t == Elem::F32 ? "F32" : "BF16", acc));
        const std::vector<float> old_f = old_values(M, N, N, acc, s + 4), old_d = old_values(M, K, K, acc, s + 5);
        auto fwd = [&](void* c) { gpu::gemm_forward(GemmMode::kFast, M, N, K, bf(dA), K, bf(dW), K, t, c, N, acc, nullptr); };
        auto dat = [&](void* c) { gpu::gemm_backward_data(M, N, K, bf(dG), N, bf(dW), K, t, c, K, acc, nullptr); };
        const std::vector<float> f1 = run_out(old_f, t, 0, fwd), f2 = run_out(old_f, t, 0, fwd);
        EXPECT_TRUE(same_bits(f1, f2)) << "forward: the first (timing) call and the second differ";
        const std::vector<float> d1 = run_out(old_d, t, 0, dat), d2 = run_out(old_d, t, 0, dat);
        EXPECT_TRUE(same_bits(d1, d2)) << "backward data: the first (timing) call and the second differ";
        if (i == 0 && t == Elem::F32 && acc) {  // and right (one reference: they are slow on 2 cores)
          double worst = 0;
          EXPECT_TRUE(check_result(f1, old_f, t, acc, dot_ref(M, N, K, A, K, 1, W, K, 1), M, N, N, K, &worst));
        }
      }
    const std::vector<float> old_w = old_values(N, K, K, true, s + 6);
    auto wgt = [&](void* c) {
      gpu::gemm_backward_weight(M, N, K, bf(dG), N, bf(dA), K, static_cast<float*>(c), K, true, nullptr);
    };
    EXPECT_TRUE(same_bits(run_out(old_w, Elem::F32, 0, wgt), run_out(old_w, Elem::F32, 0, wgt)))
        << "backward weight: the first (timing) call and the second differ, M " << M << " N " << N << " K " << K;
  }
  // The choices are listed (the forward of the first shape: column-major m = N, n = M).
  bool listed = false;
  for (const std::string& l : gpu::gemm_algo_choices())
    listed = listed || (l.find("forward m=1001 n=517 k=1031 ") != std::string::npos &&
                        l.find(" timed: ") != std::string::npos);
  EXPECT_TRUE(listed) << "no timed cuBLASLt choice listed for the forward [517 x 1001 x 1031]";
}

// Under CUDA graph capture a key not yet chosen runs the heuristic's first algorithm (nothing
// can be timed, allocated or synchronized there) and is not cached: the graph's result is
// right, equals the heuristic mode's bits, and no timed choice was recorded for the key.
TEST(CudaGemmAutotune, CaptureTakesTheHeuristicsFirstUncached) {
  SKIP_WITHOUT_GPU();
#ifndef QARL_HAVE_CUDA
  GTEST_SKIP() << "built without CUDA";
#else
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  const int64_t M = 64, N = 333, K = 520;  // a key no other test uses
  auto A = random_matrix(M, K, K, 1.0f, seed + 1);
  auto W = random_matrix(N, K, K, 0.1f, seed + 2);
  const Ref ref = dot_ref(M, N, K, A, K, 1, W, K, 1);
  Tensor dA = upload(A), dW = upload(W);
  const std::vector<float> old = old_values(M, N, N, false, seed + 3);
  Tensor dC = upload_out(old, Elem::F32), warm = upload_out(old, Elem::F32);
  struct Stream {
    cudaStream_t s = nullptr;
    ~Stream() { if (s) cudaStreamDestroy(s); }
  } st;
  ASSERT_EQ(cudaStreamCreateWithFlags(&st.s, cudaStreamNonBlocking), cudaSuccess);
  {
    ModeScope scope(GemmAutotune::kTimed);
    // An eager product on the stream first, as decode's eager step does: it makes the
    // stream's cuBLAS workspace (another key: K = 512 of the same operands).
    gpu::gemm_forward(GemmMode::kFast, M, N, 512, bf(dA), K, bf(dW), K, Elem::F32, warm.data(), N, false, st.s);
    ASSERT_EQ(cudaStreamSynchronize(st.s), cudaSuccess);
    cudaGraph_t graph = nullptr;
    ASSERT_EQ(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeRelaxed), cudaSuccess);
    std::string failed;
    try {
      gpu::gemm_forward(GemmMode::kFast, M, N, K, bf(dA), K, bf(dW), K, Elem::F32, dC.data(), N, false, st.s);
    } catch (const std::exception& e) {
      failed = e.what();
    }
    const cudaError_t e = cudaStreamEndCapture(st.s, &graph);
    ASSERT_TRUE(failed.empty()) << "during capture: " << failed;
    ASSERT_EQ(e, cudaSuccess) << cudaGetErrorString(e);
    cudaGraphExec_t exec = nullptr;
    const cudaError_t ie = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    ASSERT_EQ(ie, cudaSuccess) << cudaGetErrorString(ie);
    // C still holds its NaN poison: only the graph's launch writes it.
    const cudaError_t le = cudaGraphLaunch(exec, st.s);
    const cudaError_t se = cudaStreamSynchronize(st.s);
    cudaGraphExecDestroy(exec);
    ASSERT_EQ(le, cudaSuccess) << cudaGetErrorString(le);
    ASSERT_EQ(se, cudaSuccess) << cudaGetErrorString(se);
  }
  const std::vector<float> captured = download_out(dC, Elem::F32);
  double worst = 0;
  ASSERT_TRUE(check_result(captured, old, Elem::F32, false, ref, M, N, N, K, &worst));
  for (const std::string& l : gpu::gemm_algo_choices())
    EXPECT_FALSE(l.find("forward m=333 n=64 k=520 ") != std::string::npos && l.find(" timed: ") != std::string::npos)
        << "a key first seen under capture was cached: " << l;
  // The heuristic mode's first algorithm, eagerly: the same bits.
  ModeScope scope(GemmAutotune::kHeuristic);
  std::vector<float> eager = run_out(old, Elem::F32, 0, [&](void* c) {
    gpu::gemm_forward(GemmMode::kFast, M, N, K, bf(dA), K, bf(dW), K, Elem::F32, c, N, false, nullptr);
  });
  EXPECT_TRUE(same_bits(captured, eager)) << "the captured product differs from the heuristic's first";
#endif
}

}  // namespace
}  // namespace qarl
