// `qarl bench` case "gemm" (CUDA): the forward product C = A W^T in both modes (cuBLAS
// "fast", qarl's batch-invariant "exact") on the Qwen3-0.6B projection shapes, M = 1 and
// 64 (decode: W read once, memory-bound) and 8192 (prefill / training: compute-bound).
// bf16 A and W, BF16 C. Bytes = A + W read once + C written once; the note gives TFLOP/s
// (2 M N K flops) and the fraction of the H200's ~790 TFLOP/s dense bf16 peak.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "qarl/core/half.h"
#include "qarl/core/rng.h"
#include "qarl/core/tensor.h"
#include "qarl/kernels/cuda/device.h"
#include "qarl/kernels/cuda/gemm.h"
#include "qarl/perf/registry.h"

namespace qarl::perf {
namespace {

constexpr double kPeakBf16Flops = 790e12;  // H200 dense bf16 (docs/targets.md)

struct Proj { const char* name; int64_t N, K; };
// Qwen3-0.6B: hidden 1024, 16 q heads and 8 kv heads of 128, MLP 3072, vocabulary 151936.
const Proj kProjs[] = {{"qkv", 4096, 1024}, {"o", 1024, 2048}, {"gate_up", 6144, 1024},
                       {"down", 1024, 3072}, {"lm_head", 151936, 1024}};

// A random bf16 device tensor [rows, cols] (2^20 fresh values tiled: cheap to set up).
Tensor random_device_bf16(int64_t rows, int64_t cols, uint64_t stream) {
  const int64_t n = rows * cols, tile = std::min<int64_t>(n, int64_t(1) << 20);
  CounterRng rng(20261129, stream);
  std::vector<uint16_t> v(static_cast<size_t>(tile));
  for (int64_t i = 0; i < tile; ++i) v[size_t(i)] = f32_to_bf16(0.5f * rng.normal(0, uint64_t(i)));
  Tensor x = Tensor::empty({rows, cols}, DType::BF16);
  auto* dst = static_cast<char*>(x.data());
  for (int64_t off = 0; off < n; off += tile)
    std::memcpy(dst + off * 2, v.data(), size_t(std::min(tile, n - off)) * 2);
  return x.to_device(Device::CUDA);
}

std::vector<Result> run_cuda(const Options& opt) {
  namespace gpu = kernels::gpu;
  const int reps = opt.reps ? opt.reps : opt.quick ? 3 : 20;
  std::vector<int64_t> ms = {1, 64, 8192};
  if (opt.rows) ms = {opt.rows};
  if (opt.quick) ms = {1, 64, 512};
  std::vector<Result> out;
  const int64_t max_m = *std::max_element(ms.begin(), ms.end());
  Tensor A = random_device_bf16(max_m, 3072, 1);
  for (const Proj& p : kProjs) {
    const int64_t N = opt.quick ? std::min<int64_t>(p.N, 8192) : p.N;
    Tensor W = random_device_bf16(N, p.K, 2);
    Tensor C = Tensor::empty({max_m, N}, DType::BF16, Device::CUDA);
    for (int64_t M : ms)
      for (gpu::GemmMode mode : {gpu::GemmMode::kFast, gpu::GemmMode::kExact}) {
        auto call = [&] {
          gpu::gemm_forward(mode, M, N, p.K, static_cast<const uint16_t*>(A.data()), p.K,
                            static_cast<const uint16_t*>(W.data()), p.K, gpu::Elem::BF16, C.data(),
                            N, false, nullptr);
        };
        const int r = M * N * p.K > (int64_t(1) << 36) ? std::max(3, reps / 4) : reps;
        const double s = gpu::time_median_s(call, 2, r);
        const double flops = 2.0 * double(M) * double(N) * double(p.K);
        const double bytes = 2.0 * double(M * p.K + N * p.K + M * N);
        out.push_back({fmt::format("gemm_{}_{}", p.name, gpu::gemm_mode_name(mode)), "BF16",
                       fmt::format("[{}x{}x{}]", M, N, p.K), s, bytes, flops,
                       fmt::format("{:.1f} TFLOP/s ({:.1f}% of 790 peak)", flops / s / 1e12,
                                   100.0 * flops / s / kPeakBf16Flops)});
      }
  }
  return out;
}

}  // namespace

void add_gemm_benchmarks(Registry& r) {
  r.add({"gemm", Backend::CUDA,
         "C = A W^T fast (cuBLAS) vs exact (batch-invariant), Qwen3-0.6B shapes, M 1/64/8192",
         run_cuda});
}

}  // namespace qarl::perf
