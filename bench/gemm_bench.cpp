// GFLOP/s of qarl's deterministic, batch-invariant GEMM (kernels/cpu/gemm.h) against OpenBLAS
// sgemm on the same shapes: 1024^3 and model-like linear layers (C[M,N] = A[M,K] W[N,K]^T),
// with 1 and 2 threads. qarl's packing of W is done once outside the timed loop (the model
// packs weights when they change); OpenBLAS gets the unpacked row-major W (CblasTrans).
//
//   build/bench/gemm_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>
#include <omp.h>

#include <vector>

#include "qarl/kernels/cpu/gemm.h"
#ifdef QARL_HAVE_OPENBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
#endif

namespace {

using namespace qarl::kernels;

std::vector<float> filled(size_t n, float s) {
  std::vector<float> v(n);
  uint32_t x = 12345;
  for (auto& e : v) {
    x = x * 1664525u + 1013904223u;
    e = s * (float(x >> 8) / float(1 << 24) - 0.5f);
  }
  return v;
}

void set_counters(benchmark::State& st, int64_t M, int64_t N, int64_t K) {
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(M) * double(N) * double(K),
                                              benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}

void BM_qarl(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  const int threads = int(st.range(3));
  auto A = filled(size_t(M * K), 1.0f), W = filled(size_t(N * K), 1.0f);
  std::vector<float> C(size_t(M * N));
  PackedB P;
  pack_b_from_nk(W.data(), N, K, P);
  omp_set_num_threads(threads);
  for (auto _ : st) {
    gemm(GemmA{A.data(), K, 1}, M, P, C.data(), N);
    benchmark::DoNotOptimize(C.data());
  }
  set_counters(st, M, N, K);
  st.SetLabel(gemm_isa());
}

#ifdef QARL_HAVE_OPENBLAS
void BM_openblas(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  auto A = filled(size_t(M * K), 1.0f), W = filled(size_t(N * K), 1.0f);
  std::vector<float> C(size_t(M * N));
  openblas_set_num_threads(int(st.range(3)));
  for (auto _ : st) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(N), int(K), 1.0f, A.data(), int(K),
                W.data(), int(K), 0.0f, C.data(), int(N));
    benchmark::DoNotOptimize(C.data());
  }
  set_counters(st, M, N, K);
}
#endif

// {M, N, K, threads}: square 1024; prefill-like (512 tokens) and decode-like (16 tokens) rows of
// a 1024-hidden model's projections (qkv 1024->1536, MLP 1024->5632 gate/up, 2816->1024 down).
void shapes(benchmark::internal::Benchmark* b) {
  for (int t : {1, 2}) {
    b->Args({1024, 1024, 1024, t});
    b->Args({512, 1536, 1024, t});
    b->Args({512, 5632, 1024, t});
    b->Args({512, 1024, 2816, t});
    b->Args({16, 5632, 1024, t});
  }
  b->ArgNames({"M", "N", "K", "threads"})->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK(BM_qarl)->Apply(shapes);
#ifdef QARL_HAVE_OPENBLAS
BENCHMARK(BM_openblas)->Apply(shapes);
#endif

}  // namespace

BENCHMARK_MAIN();
