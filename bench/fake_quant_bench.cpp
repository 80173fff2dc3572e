// CPU fake-quant throughput: FP8 and NVFP4 on BF16 and F32, 1 and 2 threads, for each SIMD
// path this CPU has. GB/s counts bytes read + written (2 * tensor bytes).
// Run: build/bench/fake_quant_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>
#include <omp.h>

#include <random>
#include <vector>

#include "qarl/core/error.h"
#include "qarl/quant/fake_quant.h"

namespace {

using qarl::DType;
using qarl::Tensor;
using qarl::quant::Format;

Tensor make_input(DType dt) {
  // 4096 tokens x 1024 (8 KV heads x 128): 4M elements, 8 MiB (bf16) / 16 MiB (f32).
  const int64_t rows = 4096, cols = 1024;
  std::vector<float> v(size_t(rows * cols));
  std::mt19937 g(1234);
  std::normal_distribution<float> n(0.0f, 1.0f);
  for (float& x : v) x = n(g);
  return Tensor::from_f32(v, {rows, cols}, dt);
}

void BM_FakeQuant(benchmark::State& st, Format format, DType dt, int threads, const char* isa) {
  try {
    qarl::quant::set_fake_quant_isa(isa);
  } catch (const qarl::Error&) {
    st.SkipWithError("ISA not supported on this CPU");
    return;
  }
  omp_set_num_threads(threads);
  Tensor x = make_input(dt);
  Tensor y = x.clone();
  for (auto _ : st) {
    // In place on the same buffer: reads and writes every element. Re-quantizing already
    // quantized values costs the same (the vector paths have no data-dependent branches).
    qarl::quant::fake_quant_(y, format, 3.5f);
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(2 * x.nbytes()));
  qarl::quant::set_fake_quant_isa("auto");
}

void register_all() {
  for (const char* isa : {"avx512", "avx2", "scalar"})
    for (Format f : {Format::FP8, Format::NVFP4})
      for (DType dt : {DType::BF16, DType::F32})
        for (int threads : {1, 2}) {
          std::string name = std::string("FakeQuant/") + qarl::quant::format_name(f) + "/" +
                             std::string(qarl::dtype_name(dt)) + "/" + isa + "/threads:" +
                             std::to_string(threads);
          benchmark::RegisterBenchmark(name.c_str(), BM_FakeQuant, f, dt, threads, isa)
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime();
        }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
