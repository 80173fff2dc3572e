// `qarl bench` case "gemm" (CUDA): the forward product C = A W^T in both modes (cuBLAS
// "fast", qarl's batch-invariant "exact") on the Qwen3-0.6B projection shapes, M = 1 and
// 64 (decode: W read once, memory-bound) and 8192 (prefill / training: compute-bound).
// bf16 A and W, BF16 C. Bytes = A + W read once + C written once; the note gives TFLOP/s
// (2 M N K flops) and the fraction of the H200's ~790 TFLOP/s dense bf16 peak.
// Case "gemm_train" (CUDA): the 15 products of one training step at M = 8192 tokens (the
// five forward products and the ten backward ones of gpu_forward.cpp / gpu_backward.cpp,
// with their output types and accumulate flags), each through the three cuBLAS paths of
// GemmAutotune in the same process (legacy cublasGemmEx, cuBLASLt heuristic, cuBLASLt timed),
// plus per-mode totals: the 15 once, and a whole step's (28 layers x 12 + the 3 head products).
// Case "gemm_exact_tiles" (CUDA): the exact GEMM's large-M tiles forced in turn (mma.sync
// "large 128x128x64 x2" against "wgmma 128x256x64 tma", plus what pick() chooses) on the five
// forward shapes at M = 256 ... 8192, F32 and BF16 out: where the wgmma tile pays.
#include <algorithm>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "qarl/core/half.h"
#include "qarl/core/log.h"
#include "qarl/core/rng.h"
#include "qarl/core/tensor.h"
#include "qarl/kernels/cuda/device.h"
#include "qarl/kernels/cuda/gemm.h"
#include "qarl/kernels/cuda/gemm_internal.h"
#include "qarl/perf/registry.h"

namespace qarl::perf {
namespace {

namespace gpu = kernels::gpu;
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

// One training product: y = forward / backward data / backward weight on [M x N x K]
// (gemm.h's M, N, K), its output type and whether it accumulates; `layer`: once per layer.
struct TrainGemm { const char* name; char kind; int64_t N, K; gpu::Elem c_t; bool accumulate; bool layer; };
constexpr int kLayers = 28;  // Qwen3-0.6B

std::vector<Result> run_train(const Options& opt) {
  const int reps = opt.reps ? opt.reps : opt.quick ? 3 : 10;
  const int64_t M = opt.rows ? opt.rows : opt.quick ? 512 : 8192;
  const int64_t V = opt.quick ? 8192 : 151936, H = 1024, Q = 2048, Wd = 4096, I = 3072;
  using gpu::Elem;
  const TrainGemm prods[] = {
      {"fwd_qkv", 'f', Wd, H, Elem::F32, false, true},     {"fwd_o", 'f', H, Q, Elem::F32, true, true},
      {"fwd_gate_up", 'f', 2 * I, H, Elem::BF16, false, true}, {"fwd_down", 'f', H, I, Elem::F32, true, true},
      {"fwd_lm_head", 'f', V, H, Elem::F32, false, false},
      {"bwd_data_lm_head", 'd', V, H, Elem::F32, false, false}, {"bwd_weight_lm_head", 'w', V, H, Elem::F32, true, false},
      {"bwd_data_down", 'd', H, I, Elem::BF16, false, true},   {"bwd_weight_down", 'w', H, I, Elem::F32, true, true},
      {"bwd_data_gate_up", 'd', 2 * I, H, Elem::F32, false, true}, {"bwd_weight_gate_up", 'w', 2 * I, H, Elem::F32, true, true},
      {"bwd_data_o", 'd', H, Q, Elem::BF16, false, true},      {"bwd_weight_o", 'w', H, Q, Elem::F32, true, true},
      {"bwd_data_qkv", 'd', Wd, H, Elem::F32, false, true},    {"bwd_weight_qkv", 'w', Wd, H, Elem::F32, true, true}};
  // Shared buffers, each product using their leading part with tight strides: activations
  // [M, I], output gradients [M, V], weights [V, H] (>= every N x K), outputs [M, V] in fp32
  // (>= every C and dW), zeroed so that accumulating products add to finite values.
  Tensor X = random_device_bf16(M, I, 1), G = random_device_bf16(M, V, 3), Wt = random_device_bf16(V, H, 2);
  Tensor C = Tensor::zeros({M, V}, DType::F32, Device::CUDA);
  auto bf = [](const Tensor& t) { return static_cast<const uint16_t*>(t.data()); };
  struct Restore {  // the process's mode again when done (or thrown out)
    gpu::GemmAutotune was = gpu::gemm_autotune();
    ~Restore() { gpu::set_gemm_autotune(was); }
  } restore;
  const gpu::GemmAutotune modes[] = {gpu::GemmAutotune::kLegacy, gpu::GemmAutotune::kHeuristic,
                                     gpu::GemmAutotune::kTimed};
  const char* mode_names[] = {"legacy", "lt_heuristic", "lt_timed"};
  double total_s[3] = {}, step_s[3] = {}, total_flops = 0, step_flops = 0;
  std::vector<Result> out;
  for (const TrainGemm& p : prods) {
    const int64_t N = p.N, K = p.K;
    auto call = [&] {
      if (p.kind == 'f')
        gpu::gemm_forward(gpu::GemmMode::kFast, M, N, K, bf(X), K, bf(Wt), K, p.c_t, C.data(), N, p.accumulate, nullptr);
      else if (p.kind == 'd')
        gpu::gemm_backward_data(M, N, K, bf(G), N, bf(Wt), K, p.c_t, C.data(), K, p.accumulate, nullptr);
      else
        gpu::gemm_backward_weight(M, N, K, bf(G), N, bf(X), K, static_cast<float*>(C.data()), K, true, nullptr);
    };
    const double flops = 2.0 * double(M) * double(N) * double(K);
    const double out_bytes = double(p.kind == 'w' ? N * K : M * (p.kind == 'f' ? N : K)) * (p.c_t == Elem::F32 ? 4 : 2);
    // bf16 operands read once (dW's read is in out_bytes), the output written (and read if accumulating)
    const double in_bytes = 2.0 * double(p.kind == 'w' ? M * (N + K) : M * (p.kind == 'f' ? K : N) + N * K);
    const double bytes = in_bytes + out_bytes * (p.accumulate ? 2 : 1);
    total_flops += flops;
    step_flops += flops * (p.layer ? kLayers : 1);
    for (int m = 0; m < 3; ++m) {
      gpu::set_gemm_autotune(modes[m]);
      const size_t known = gpu::gemm_algo_choices().size();
      call();  // the first call chooses (and, timed, times) the algorithm
      gpu::synchronize();
      const std::vector<std::string> lines = gpu::gemm_algo_choices();
      const double s = gpu::time_median_s(call, 2, reps);
      total_s[m] += s;
      step_s[m] += s * (p.layer ? kLayers : 1);
      std::string note = fmt::format("{:.1f} TFLOP/s ({:.1f}% of 790 peak)", flops / s / 1e12,
                                     100.0 * flops / s / kPeakBf16Flops);
      if (lines.size() > known) note += "; " + lines.back().substr(lines.back().find(": ") + 2);
      out.push_back({fmt::format("gemm_train_{}_{}", p.name, mode_names[m]), p.c_t == Elem::F32 ? "F32" : "BF16",
                     fmt::format("[{}x{}x{}]", M, N, K), s, bytes, flops, note});
    }
  }
  for (int m = 0; m < 3; ++m)
    out.push_back({fmt::format("gemm_train_total_{}", mode_names[m]), "-", "15 products", total_s[m], 0, total_flops,
                   fmt::format("{:.1f} TFLOP/s ({:.1f}% of 790 peak); one step ({} layers): {:.2f} ms, {:+.2f}% vs legacy",
                               total_flops / total_s[m] / 1e12, 100.0 * total_flops / total_s[m] / kPeakBf16Flops,
                               kLayers, 1e3 * step_s[m], 100.0 * (step_s[m] / step_s[0] - 1.0)),
                   {{"step_ms", 1e3 * step_s[m]}, {"step_tflops", step_flops / step_s[m] / 1e12}}});
  for (const std::string& l : gpu::gemm_algo_choices()) log_info("gemm_train: cuBLASLt {}", l);
  return out;
}

std::vector<Result> run_exact_tiles(const Options& opt) {
#ifndef QARL_HAVE_CUDA  // the tile launchers (gemm_internal.h) exist in CUDA builds only
  (void)opt;
  throw std::runtime_error("gemm_exact_tiles: built without CUDA");
#else
  const int reps = opt.reps ? opt.reps : opt.quick ? 3 : 10;
  std::vector<int64_t> ms = {256, 1024, 2048, 8192};
  if (opt.rows) ms = {opt.rows};
  if (opt.quick) ms = {256, 512};
  const int64_t max_m = *std::max_element(ms.begin(), ms.end());
  int large = -1, wg = -1;
  for (int c = 0; c < gpu::detail::gemm_exact_config_count(); ++c) {
    const std::string name = gpu::detail::gemm_exact_config_name(c);
    if (name.rfind("large 128x128x64 x2", 0) == 0 && name.find("persistent") == std::string::npos) large = c;
    if (name.rfind("wgmma", 0) == 0) wg = c;
  }
  std::vector<Result> out;
  if (large < 0 || wg < 0) throw std::runtime_error("gemm_exact_tiles: the large or wgmma configuration is missing");
  Tensor A = random_device_bf16(max_m, 3072, 1);
  for (const Proj& p : kProjs) {
    const int64_t N = opt.quick ? std::min<int64_t>(p.N, 8192) : p.N;
    Tensor W = random_device_bf16(N, p.K, 2);
    Tensor C = Tensor::zeros({max_m, N}, DType::F32, Device::CUDA);
    for (int64_t M : ms)
      for (gpu::Elem t : {gpu::Elem::BF16, gpu::Elem::F32}) {
        const double flops = 2.0 * double(M) * double(N) * double(p.K);
        const double bytes = 2.0 * double(M * p.K + N * p.K) + double(M * N) * (t == gpu::Elem::F32 ? 4 : 2);
        const std::string picked = gpu::detail::gemm_exact_config(M, N, p.K, true);
        std::vector<int> configs = {large, wg};
        for (int c = 0; c < gpu::detail::gemm_exact_config_count(); ++c)  // and pick()'s, if another
          if (picked == gpu::detail::gemm_exact_config_name(c) && c != large && c != wg) configs.push_back(c);
        for (int c : configs) {
          std::string err;
          auto call = [&] {
            err = gpu::detail::launch_gemm_exact_as(c, M, N, p.K, static_cast<const uint16_t*>(A.data()), p.K,
                                                    static_cast<const uint16_t*>(W.data()), p.K, t, C.data(), N,
                                                    false, nullptr);
          };
          const int r = M * N * p.K > (int64_t(1) << 36) ? std::max(3, reps / 2) : reps;
          const double s = gpu::time_median_s(call, 2, r);
          if (!err.empty()) throw std::runtime_error("gemm_exact_tiles: " + err);
          const std::string cname = gpu::detail::gemm_exact_config_name(c);
          const char* kind = c == wg ? "wgmma" : c == large ? "mma" : "picked";
          out.push_back({fmt::format("gemm_exact_{}_{}_{}", p.name, kind, M),
                         t == gpu::Elem::F32 ? "F32" : "BF16", fmt::format("[{}x{}x{}]", M, N, p.K), s, bytes, flops,
                         fmt::format("{:.1f} TFLOP/s ({:.1f}% of 790){}", flops / s / 1e12,
                                     100.0 * flops / s / kPeakBf16Flops, cname == picked ? "; picked: " + cname : "")});
        }
      }
  }
  return out;
#endif
}

}  // namespace

void add_gemm_benchmarks(Registry& r) {
  r.add({"gemm_exact_tiles", Backend::CUDA,
         "the exact GEMM's large tiles forced in turn (mma.sync 128x128 vs wgmma 128x256), "
         "Qwen3-0.6B forward shapes, M 256 .. 8192",
         run_exact_tiles});
  r.add({"gemm", Backend::CUDA,
         "C = A W^T fast (cuBLAS) vs exact (batch-invariant), Qwen3-0.6B shapes, M 1/64/8192",
         run_cuda});
  r.add({"gemm_train", Backend::CUDA,
         "the 15 training-step GEMMs at 8192 tokens (Qwen3-0.6B): legacy cublasGemmEx vs cuBLASLt "
         "heuristic vs cuBLASLt timed (QARL_GEMM_AUTOTUNE)",
         run_train});
}

}  // namespace qarl::perf
