// `qarl bench` cases for the CUDA paged attention (kernels/cuda/attention_gpu.h): the forward
// at the training shape (8 x 1024 tokens, Qwen3-0.6B heads 16/8, hd 128) in TFLOP/s of causal
// work (4 * T^2/2 * hd * heads per sequence), the fused backward at the same shape (counted
// as 2.5x the forward's FLOPs, the usual convention: its 5 products), and decode steps (one
// row per sequence at context 1024, batch 1 and 64) in GB/s of K/V read. The bench table's GB/s column is the
// case's `bytes` (q, K/V and out once) per second; the note carries TFLOP/s. The training
// cases time 5 calls back to back (the host plan of one overlaps the kernels of the last) and
// also run the layouts the drivers do not choose by default (attn::tuning()), for comparison.
#include <algorithm>
#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "qarl/core/error.h"
#include "qarl/core/tensor.h"
#include "qarl/kernels/cuda/attention_gpu.h"
#include "qarl/kernels/cuda/device.h"
#include "qarl/perf/registry.h"

#ifdef QARL_HAVE_CUDA
#include "qarl/kernels/cuda/attention_internal.h"
#endif

namespace qarl::perf {
namespace {

#ifdef QARL_HAVE_CUDA
namespace gpu = kernels::gpu;

constexpr int kHeads = 16, kKvHeads = 8, kHd = 128, kBlock = 16;

Tensor random_bf16_device(int64_t n, uint64_t seed) {
  return random_uniform_device(n, DType::BF16, 1.0f, seed);
}

// n_seqs sequences of ctx tokens each in a pool with an identity block table.
struct Setup {
  Tensor k, v, table;
  gpu::PagedKV kv;
  Setup(int n_seqs, int ctx) {
    const int mbps = (ctx + kBlock - 1) / kBlock;
    const int64_t rows = int64_t(n_seqs) * mbps * kBlock;
    k = random_bf16_device(rows * kKvHeads * kHd, 1);
    v = random_bf16_device(rows * kKvHeads * kHd, 2);
    Tensor t = Tensor::empty({int64_t(n_seqs) * mbps}, DType::I32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data_as<int32_t>()[i] = int32_t(i);
    table = t.to_device(Device::CUDA);
    kv.k_pool = k.data_as<gpu::bf16>();
    kv.v_pool = v.data_as<gpu::bf16>();
    kv.block_table = table.data_as<int32_t>();
    kv.block_size = kBlock;
    kv.max_blocks_per_seq = mbps;
    kv.n_kv_heads = kKvHeads;
    kv.head_dim = kHd;
  }
};

std::vector<Result> run_cuda(const Options& opt) {
  const int reps = opt.reps ? opt.reps : opt.quick ? 3 : 20;
  const int n_train = opt.quick ? 2 : 8, T = 1024;
  const float scale = 1.0f / std::sqrt(float(kHd));
  const int64_t w = int64_t(kHeads) * kHd, kw = int64_t(kKvHeads) * kHd;
  std::vector<Result> out;
  gpu::AttentionWorkspace ws;
  {  // training forward and backward
    Setup s(n_train, T);
    const int64_t R = int64_t(n_train) * T;
    Tensor q = random_bf16_device(R * w, 3), o = Tensor::empty({R * w}, DType::BF16, Device::CUDA);
    Tensor lse = Tensor::empty({R * kHeads}, DType::F32, Device::CUDA);
    std::vector<gpu::AttnSegment> segs;
    for (int i = 0; i < n_train; ++i) segs.push_back({i, i * T, T, 0});
    constexpr int kCalls = 5;
    auto fwd = [&] {
      for (int c = 0; c < kCalls; ++c)
        gpu::attention_forward(q.data_as<gpu::bf16>(), w, segs, s.kv, kHeads, scale,
                               o.data_as<gpu::bf16>(), w, lse.data_as<float>(), ws, nullptr);
    };
    const double flops = double(n_train) * 4.0 * (double(T) * T / 2) * kHd * kHeads;
    const double bytes = 2.0 * (2.0 * R * w + 2.0 * R * kw);
    const std::string shape = fmt::format("[{}x{}] 16/8 hd128", n_train, T);
    struct FwdVariant {
      const char* suffix;
      int warps, pipe, wide, wgmma;
    };
    const bool fwd_wgmma = gpu::attn::forward_wgmma_usable(kHd);
    for (const FwdVariant& v :
         {FwdVariant{"", 0, -1, -1, -1}, FwdVariant{"_w8_32rows_mma", 0, -1, -1, 0},
          FwdVariant{"_w8_16rows", 0, -1, 0, -1}, FwdVariant{"_w8_16rows_nopipe", 0, 0, 0, -1},
          FwdVariant{"_w4", 4, -1, -1, -1}}) {
      gpu::attn::tuning().fwd_warps = v.warps;  // "": the drivers' choice
      gpu::attn::tuning().fwd_pipe = v.pipe;
      gpu::attn::tuning().fwd_wide = v.wide;
      gpu::attn::tuning().fwd_wgmma = v.wgmma;
      const bool on_wgmma = fwd_wgmma && v.warps != 4 && v.wide != 0 && v.wgmma != 0;
      const double sec = gpu::time_median_s(fwd, 2, reps) / kCalls;
      out.push_back({fmt::format("attn_fwd_train{}", v.suffix), "BF16", shape, sec, bytes, flops,
                     fmt::format("{:.1f} TFLOP/s causal ({})", flops / sec / 1e12,
                                 on_wgmma ? "wgmma" : "mma.sync")});
    }
    gpu::attn::tuning() = gpu::attn::Tuning{};
    fwd();
    // Backward on the pool viewed as contiguous K/V (identity table: sequence i at row i*T).
    Tensor dout = random_bf16_device(R * w, 4);
    Tensor dq = Tensor::empty({R * w}, DType::F32, Device::CUDA);
    Tensor dk = Tensor::empty({R * kw}, DType::F32, Device::CUDA);
    Tensor dv = Tensor::empty({R * kw}, DType::F32, Device::CUDA);
    std::vector<int64_t> kv_rows;
    for (int i = 0; i < n_train; ++i) kv_rows.push_back(int64_t(i) * T);
    auto bwd = [&] {
      for (int c = 0; c < kCalls; ++c)
        gpu::attention_backward(segs, kv_rows, q.data_as<gpu::bf16>(), w, s.kv.k_pool,
                                s.kv.v_pool, kw, o.data_as<gpu::bf16>(),
                                dout.data_as<gpu::bf16>(), w, lse.data_as<float>(), kHeads,
                                kKvHeads, kHd, scale, dq.data_as<float>(), w,
                                dk.data_as<float>(), dv.data_as<float>(), kw, ws, nullptr);
    };
    const double bwd_bytes = 2.0 * (3.0 * R * w + 2.0 * R * kw) + 4.0 * (R * w + 2.0 * R * kw);
    struct BwdVariant {
      const char* suffix;
      int dkdv_warps, dq_warps, dkdv_wgmma, dq_wgmma;
      bool skip_dq;
    };
    const bool wgmma = gpu::attn::backward_dkdv_wgmma_usable(kHd);
    for (const BwdVariant& v :
         {BwdVariant{"", 0, 0, -1, -1, false}, BwdVariant{"_mma", 0, 0, 0, 0, false},
          BwdVariant{"_mma_dq", 0, 0, -1, 0, false}, BwdVariant{"_dkdv_w8", 8, 0, -1, -1, false},
          BwdVariant{"_dq_w8", 0, 8, -1, -1, false}, BwdVariant{"_no_dq", 0, 0, -1, -1, true},
          BwdVariant{"_mma_no_dq", 0, 0, 0, 0, true}}) {
      gpu::attn::tuning().dkdv_warps = v.dkdv_warps;
      gpu::attn::tuning().dq_warps = v.dq_warps;
      gpu::attn::tuning().dkdv_wgmma = v.dkdv_wgmma;
      gpu::attn::tuning().dq_wgmma = v.dq_wgmma;
      gpu::attn::tuning().bwd_skip_dq = v.skip_dq;
      const bool dkdv_on_wgmma = wgmma && v.dkdv_wgmma != 0 && v.dkdv_warps != 8;
      const bool dq_on_wgmma = wgmma && v.dq_wgmma != 0 && v.dq_warps != 8;
      const double sec = gpu::time_median_s(bwd, 1, std::max(3, reps / 4)) / kCalls;
      out.push_back({fmt::format("attn_bwd_train{}", v.suffix), "BF16", shape, sec, bwd_bytes,
                     2.5 * flops,
                     fmt::format("{:.1f} TFLOP/s (2.5x causal fwd; {} dk/dv + dS, {} dq){}",
                                 2.5 * flops / sec / 1e12, dkdv_on_wgmma ? "wgmma" : "mma.sync",
                                 dq_on_wgmma ? "wgmma" : "mma.sync",
                                 v.skip_dq ? "; without the dq kernel" : "")});
    }
    gpu::attn::tuning() = gpu::attn::Tuning{};
  }
  for (int batch : {1, 64}) {  // decode: one row per sequence at position T-1
    Setup s(batch, T);
    Tensor q = random_bf16_device(int64_t(batch) * w, 5);
    Tensor o = Tensor::empty({int64_t(batch) * w}, DType::BF16, Device::CUDA);
    Tensor lse = Tensor::empty({int64_t(batch) * kHeads}, DType::F32, Device::CUDA);
    std::vector<gpu::AttnSegment> segs;
    for (int i = 0; i < batch; ++i) segs.push_back({i, i, 1, T - 1});
    auto dec = [&] {
      gpu::attention_forward(q.data_as<gpu::bf16>(), w, segs, s.kv, kHeads, scale,
                             o.data_as<gpu::bf16>(), w, lse.data_as<float>(), ws, nullptr);
    };
    const double sec = gpu::time_median_s(dec, 3, opt.quick ? 5 : 50);
    const double kv_bytes = double(batch) * 2.0 * T * kw * 2;
    out.push_back({fmt::format("attn_decode_b{}", batch), "BF16",
                   fmt::format("[{}x1] ctx {}", batch, T), sec, kv_bytes, 0,
                   "bytes = K/V read; includes the host tile plan + upload"});
  }
  return out;
}
#endif

}  // namespace

void add_attention_benchmarks(Registry& r) {
#ifdef QARL_HAVE_CUDA
  r.add({"attention", Backend::CUDA,
         "paged causal GQA: training forward/backward 8x1024 (16/8 heads, hd 128), decode "
         "at context 1024 (batch 1, 64)",
         run_cuda});
#else
  (void)r;
#endif
}

}  // namespace qarl::perf
