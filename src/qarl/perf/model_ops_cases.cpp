// `qarl bench` cases for the GPU model's memory-bound ops at the training shape (8 x 1024
// rows, Qwen3-0.6B: hidden 1024, 16/8 heads of 128, intermediate 3072), each launcher alone,
// in GB/s of the bytes it must move (each input read once, each output written once) against
// the copy bandwidth measured in the same run. The model bench's section table says how much
// of a step each op takes; this says how far each is from the memory limit.
#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "qarl/core/tensor.h"
#include "qarl/kernels/cpu/rope.h"
#include "qarl/kernels/cuda/device.h"
#include "qarl/kernels/cuda/model_ops.h"
#include "qarl/perf/registry.h"

namespace qarl::perf {
namespace {

#ifdef QARL_HAVE_CUDA
namespace gpu = kernels::gpu;
using kernels::gpu::Elem;

float* F(const Tensor& t) { return const_cast<float*>(t.data_as<float>()); }
gpu::bf16* B(const Tensor& t) { return reinterpret_cast<gpu::bf16*>(const_cast<void*>(t.data())); }

std::vector<Result> run_cuda(const Options& opt) {
  const int reps = opt.reps ? opt.reps : opt.quick ? 3 : 20;
  const int64_t R = opt.rows ? opt.rows : opt.quick ? 512 : 8192;
  const int64_t H = 1024, nh = 16, nkv = 8, hd = 128, I = 3072;
  const int64_t qd = nh * hd, kd = nkv * hd, W = qd + 2 * kd;
  const std::string rows = fmt::format("[{}x", R);
  std::vector<Result> out;
  auto add = [&](const char* name, const std::string& shape, double bytes, const std::function<void()>& fn,
                 const char* note) {
    const double sec = gpu::time_median_s(fn, 2, reps);
    out.push_back({name, "F32", shape, sec, bytes, 0, note});
  };
  {  // hidden RMSNorm forward (fp32 residual in, bf16 out, rstd) and backward (dx accumulated, dw)
    Tensor x = random_uniform_device(R * H, DType::F32, 2.0f, 1), w = random_uniform_device(H, DType::F32, 1.0f, 2);
    Tensor y = Tensor::empty({R * H}, DType::BF16, Device::CUDA), rs = Tensor::empty({R}, DType::F32, Device::CUDA);
    add("norm_fwd", rows + "1024]", R * H * (4.0 + 2.0) + R * 4.0, [&] {
      gpu::launch_rmsnorm_forward(Elem::F32, x.data(), H, F(w), R, 1, int(H), 1e-6f, Elem::BF16, y.data(), H, F(rs), nullptr);
    }, "fp32 -> bf16 + rstd");
    Tensor dy = random_uniform_device(R * H, DType::F32, 1.0f, 3), dx = random_uniform_device(R * H, DType::F32, 1.0f, 4);
    Tensor xc = Tensor::empty({R * H}, DType::F32, Device::CUDA);
    Tensor dw = random_uniform_device(H, DType::F32, 1.0f, 5);
    add("norm_bwd", rows + "1024]", R * H * (4.0 * 4), [&] {
      gpu::launch_rmsnorm_backward(Elem::F32, dy.data(), H, Elem::F32, x.data(), H, F(w), F(rs), R, 1, int(H),
                                   F(dx), H, true, F(dw), nullptr);
    }, "dy, x read; dx += (read + write); dw");
    add("norm_bwd_no_dw", rows + "1024]", R * H * (4.0 * 4), [&] {
      gpu::launch_rmsnorm_backward(Elem::F32, dy.data(), H, Elem::F32, x.data(), H, F(w), F(rs), R, 1, int(H),
                                   F(dx), H, true, nullptr, nullptr);
    }, "the same without dw (the dx kernel alone)");
    add("norm_fwd_keep_input", rows + "1024]", R * H * (4.0 + 2.0 + 4.0) + R * 4.0, [&] {
      gpu::launch_rmsnorm_forward(Elem::F32, x.data(), H, F(w), R, 1, int(H), 1e-6f, Elem::BF16, y.data(), H, F(rs),
                                  nullptr, xc.data());
    }, "the trainer's: also copies x (replaces a separate clone, copy_residual)");
    add("copy_residual", rows + "1024]", R * H * 8.0, [&] {
      gpu::copy_async(xc, x);
    }, "what the forward's x.clone() per norm cost");
    Tensor dx16 = Tensor::empty({R * H}, DType::BF16, Device::CUDA);
    add("norm_bwd_dx16", rows + "1024]", R * H * (4.0 * 4 + 2.0), [&] {
      gpu::launch_rmsnorm_backward(Elem::F32, dy.data(), H, Elem::F32, x.data(), H, F(w), F(rs), R, 1, int(H),
                                   F(dx), H, true, F(dw), nullptr, B(dx16));
    }, "the trainer's: norm_bwd + dx in bf16 (replaces a cast of dx)");
  }
  {  // q/k norm + RoPE + bf16 (forward) and its backward with the norm weights' dw
    Tensor qkv = random_uniform_device(R * W, DType::F32, 2.0f, 6);
    Tensor qn = random_uniform_device(hd, DType::F32, 1.0f, 7), kn = random_uniform_device(hd, DType::F32, 1.0f, 8);
    const auto tab = kernels::rope_tables(kernels::rope_inv_freq(int(hd), 1e6, {}), 1024);
    Tensor cs = Tensor::from_f32(tab.cos, {int64_t(tab.cos.size())}).to_device(Device::CUDA);
    Tensor sn = Tensor::from_f32(tab.sin, {int64_t(tab.sin.size())}).to_device(Device::CUDA);
    Tensor pos = Tensor::empty({R}, DType::I32);
    for (int64_t r = 0; r < R; ++r) pos.data_as<int32_t>()[r] = int32_t(r % 1024);
    pos = pos.to_device(Device::CUDA);
    Tensor o16 = Tensor::empty({R * W}, DType::BF16, Device::CUDA);
    Tensor k16 = Tensor::empty({R * kd}, DType::BF16, Device::CUDA), v16 = Tensor::empty({R * kd}, DType::BF16, Device::CUDA);
    Tensor qr = Tensor::empty({R * nh}, DType::F32, Device::CUDA), kr = Tensor::empty({R * nkv}, DType::F32, Device::CUDA);
    const int32_t* pp = pos.data_as<int32_t>();
    add("qk_prep_fwd", rows + "4096]", R * W * (4.0 + 2.0) + R * kd * 4.0, [&] {
      gpu::launch_qkv_prepare(F(qkv), R, int(nh), int(nkv), int(hd), F(qn), F(kn), 1e-6f, pp, F(cs), F(sn), B(o16),
                              B(k16), B(v16), F(qr), F(kr), nullptr);
    }, "fp32 projection -> bf16 q,k,v + k,v copies");
    Tensor dqkv = random_uniform_device(R * W, DType::F32, 1.0f, 9);
    Tensor dqn = random_uniform_device(hd, DType::F32, 1.0f, 10), dkn = random_uniform_device(hd, DType::F32, 1.0f, 11);
    add("qk_prep_bwd", rows + "4096]", R * W * (4.0 + 2.0) + R * (qd + kd) * 4.0 + R * kd * 4.0, [&] {
      gpu::launch_qkv_prepare_backward(F(dqkv), F(qkv), R, int(nh), int(nkv), int(hd), F(qn), F(kn), F(qr), F(kr),
                                       B(k16), B(v16), 4.0f, 4.0f, pp, F(cs), F(sn), B(o16), F(dqn), F(dkn), nullptr);
    }, "grad + projection read, clip masks, bf16 out, norm dw");
    add("qk_prep_bwd_no_dw", rows + "4096]", R * W * (4.0 + 2.0) + R * (qd + kd) * 4.0 + R * kd * 4.0, [&] {
      gpu::launch_qkv_prepare_backward(F(dqkv), F(qkv), R, int(nh), int(nkv), int(hd), F(qn), F(kn), F(qr), F(kr),
                                       B(k16), B(v16), 4.0f, 4.0f, pp, F(cs), F(sn), B(o16), nullptr, nullptr, nullptr);
    }, "the same without the norm weights' dw");
  }
  {  // SwiGLU forward and backward
    Tensor gu = random_uniform_device(R * 2 * I, DType::BF16, 2.0f, 12), h = Tensor::empty({R * I}, DType::BF16, Device::CUDA);
    add("swiglu_fwd", rows + "2x3072]", R * I * 2.0 * 3, [&] { gpu::launch_swiglu_forward(B(gu), R, I, B(h), nullptr); },
        "bf16");
    Tensor dgu = Tensor::empty({R * 2 * I}, DType::BF16, Device::CUDA);
    add("swiglu_bwd", rows + "2x3072]", R * I * 2.0 * 5, [&] {
      gpu::launch_swiglu_backward(B(h), B(gu), R, I, B(dgu), nullptr);
    }, "bf16");
  }
  {  // logprobs over the vocabulary: forward (lse + target logprob) and backward (bf16 dlogits)
    const int64_t V = opt.quick ? 1531 : 151936;
    Tensor logits = random_uniform_device(R * V, DType::F32, 8.0f, 17);
    Tensor tg = Tensor::empty({R}, DType::I32);
    for (int64_t r = 0; r < R; ++r) tg.data_as<int32_t>()[r] = int32_t((r * 7919) % V);
    tg = tg.to_device(Device::CUDA);
    Tensor lse = Tensor::empty({R}, DType::F32, Device::CUDA), lp = Tensor::empty({R}, DType::F32, Device::CUDA);
    const std::string shape = fmt::format("[{}x{}]", R, V);
    add("logprobs_fwd", shape, R * V * 4.0, [&] {
      gpu::launch_logprobs_forward(F(logits), V, R, V, 1.0f, tg.data_as<int32_t>(), F(lse), F(lp), nullptr);
    }, "fp32 logits read once: online log-sum-exp");
    Tensor g = random_uniform_device(R, DType::F32, 1.0f, 18), dl = Tensor::empty({R * V}, DType::BF16, Device::CUDA);
    add("logprobs_bwd", shape, R * V * (4.0 + 2.0), [&] {
      gpu::launch_logprobs_backward(F(logits), V, R, V, 1.0f, tg.data_as<int32_t>(), F(lse), F(g), Elem::BF16,
                                    dl.data(), V, nullptr);
    }, "fp32 logits read, bf16 dlogits written");
  }
  {  // AdamW over the tied embedding's size (155 M parameters)
    const int64_t n = opt.quick ? (1 << 20) : 151936 * H;
    Tensor p = random_uniform_device(n, DType::F32, 0.05f, 13), m = random_uniform_device(n, DType::F32, 0.01f, 14);
    Tensor v = random_uniform_device(n, DType::F32, 0.01f, 15), g = random_uniform_device(n, DType::F32, 0.01f, 16);
    for (float* q : {F(v)}) gpu::launch_scale(q, n, 0.0f, nullptr);  // v >= 0
    Tensor wk = Tensor::empty({n}, DType::BF16, Device::CUDA);
    gpu::AdamWScalars s{0.9, 0.95, 1e-8, 1e-6 * 0.1, 1e-6 / 0.1, std::sqrt(0.05), 0.5f};
    add("adamw", fmt::format("[{}]", n), n * (4.0 * 4 + 4.0 * 3 + 2.0), [&] {
      gpu::launch_adamw_step(F(p), F(m), F(v), F(g), n, s, B(wk), nullptr);
    }, "double arithmetic (bitwise the CPU), bf16 working copy");
  }
  return out;
}
#endif

}  // namespace

void add_model_ops_benchmarks(Registry& r) {
#ifdef QARL_HAVE_CUDA
  r.add({"model_ops", Backend::CUDA,
         "the GPU model's memory-bound ops alone at 8x1024 (Qwen3-0.6B): norms, q/k prep, "
         "SwiGLU, logprobs, AdamW",
         run_cuda});
#else
  (void)r;
#endif
}

}  // namespace qarl::perf
