// launch_qkv_prepare and launch_qkv_prepare_backward (the GPU model's fused q/k norm, RoPE and
// bf16 rounding) against the chains of kernels they replace (rmsnorm -> rope -> cast -> row
// copies; clip mask -> rope backward -> rmsnorm backward -> cast), bitwise; those kernels are
// checked against the CPU in cuda_model_ops_test.cpp. Fresh random inputs, head sizes 16 to
// 128, with and without the per-head norms and clip masks, row counts that are not multiples
// of anything, poisoned outputs. Skips, with the reason, where no CUDA device is usable.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cuda_model_ops_util.h"
#include "qarl/kernels/cpu/rope.h"
#include "test_util.h"

namespace qarl {
namespace {

using namespace test::gpu_ops;
namespace gpu = kernels::gpu;

#ifndef QARL_HAVE_CUDA
TEST(CudaQkvPrepare, NeedsCuda) { GTEST_SKIP() << "qarl was built without CUDA"; }
#else

TEST(CudaQkvPrepare, EqualsNormRopeCastChainBitwise) {
  SKIP_WITHOUT_GPU();
  SEEDED();
  uint64_t k = 0;
  struct Shape { int nh, nkv, hd; int64_t rows; bool norm; };
  for (const Shape& s : {Shape{4, 2, 16, 37, true}, Shape{6, 2, 32, 5, false}, Shape{3, 1, 64, 101, true},
                         Shape{16, 8, 128, 300, true}, Shape{4, 4, 128, 1, false}}) {
    SCOPED_TRACE(::testing::Message() << "heads " << s.nh << "/" << s.nkv << " hd " << s.hd << " rows "
                                      << s.rows << " norm " << s.norm);
    const int64_t R = s.rows, qd = int64_t(s.nh) * s.hd, kd = int64_t(s.nkv) * s.hd, W = qd + 2 * kd;
    const int64_t max_pos = 2 * R + 3;
    const auto inv = kernels::rope_inv_freq(s.hd, 1e6, {});
    const auto tab = kernels::rope_tables(inv, max_pos);
    std::vector<int32_t> pos(static_cast<size_t>(R), 0);
    for (int64_t r = 0; r < R; ++r) pos[size_t(r)] = int32_t((r * 7 + 3) % max_pos);
    const auto x = test::random_normal(size_t(R * W), 2.0f, seed + k++);
    const auto qw = test::random_normal(size_t(s.hd), 1.0f, seed + k++);
    const auto kw = test::random_normal(size_t(s.hd), 1.0f, seed + k++);
    Tensor pd = upload_i32(pos), cd = upload(tab.cos), sd = upload(tab.sin), qwd = upload(qw), kwd = upload(kw);
    const float eps = 1e-6f;

    // The chain (what gpu_forward.cpp did before the fused kernel).
    Tensor ref = upload(x, R, W, W, DType::F32);
    Tensor ref_qr = poisoned(R * s.nh, DType::F32), ref_kr = poisoned(R * s.nkv, DType::F32);
    auto* rp = static_cast<float*>(ref.data());
    if (s.norm) {
      gpu::launch_rmsnorm_forward(Elem::F32, rp, W, static_cast<float*>(qwd.data()), R, s.nh, s.hd, eps,
                                  Elem::F32, rp, W, static_cast<float*>(ref_qr.data()), nullptr);
      gpu::launch_rmsnorm_forward(Elem::F32, rp + qd, W, static_cast<float*>(kwd.data()), R, s.nkv, s.hd, eps,
                                  Elem::F32, rp + qd, W, static_cast<float*>(ref_kr.data()), nullptr);
    }
    const auto* pp = static_cast<const int32_t*>(pd.data());
    const auto* cp = static_cast<const float*>(cd.data());
    const auto* sp = static_cast<const float*>(sd.data());
    gpu::launch_rope_forward(Elem::F32, rp, R, W, s.nh, s.hd, pp, cp, sp, nullptr);
    gpu::launch_rope_forward(Elem::F32, rp + qd, R, W, s.nkv, s.hd, pp, cp, sp, nullptr);
    Tensor ref16 = poisoned(R * W, DType::BF16);
    gpu::launch_cast(Elem::F32, rp, Elem::BF16, ref16.data(), R * W, nullptr);

    // The fused kernel.
    Tensor in = upload(x, R, W, W, DType::F32);
    Tensor out = poisoned(R * W, DType::BF16), ko = poisoned(R * kd, DType::BF16), vo = poisoned(R * kd, DType::BF16);
    Tensor qr = poisoned(R * s.nh, DType::F32), kr = poisoned(R * s.nkv, DType::F32);
    gpu::launch_qkv_prepare(static_cast<const float*>(in.data()), R, s.nh, s.nkv, s.hd,
                            s.norm ? static_cast<float*>(qwd.data()) : nullptr,
                            s.norm ? static_cast<float*>(kwd.data()) : nullptr, eps, pp, cp, sp,
                            static_cast<gpu::bf16*>(out.data()), static_cast<gpu::bf16*>(ko.data()),
                            static_cast<gpu::bf16*>(vo.data()), s.norm ? static_cast<float*>(qr.data()) : nullptr,
                            s.norm ? static_cast<float*>(kr.data()) : nullptr, nullptr);
    const auto want = download_bits(ref16, R, W, W);
    EXPECT_TRUE(same_bits(download_bits(out, R, W, W), want));
    std::vector<uint32_t> want_k, want_v;
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < kd; ++c) {
        want_k.push_back(want[size_t(r * W + qd + c)]);
        want_v.push_back(want[size_t(r * W + qd + kd + c)]);
      }
    EXPECT_TRUE(same_bits(download_bits(ko, R, kd, kd), want_k));
    EXPECT_TRUE(same_bits(download_bits(vo, R, kd, kd), want_v));
    EXPECT_TRUE(same_bits(download_bits(in, R, W, W), bits_in(x, DType::F32))) << "the input must stay";
    if (s.norm) {
      EXPECT_TRUE(same_bits(download(qr), download(ref_qr)));
      EXPECT_TRUE(same_bits(download(kr), download(ref_kr)));
    }
  }
}

TEST(CudaQkvPrepare, BackwardEqualsMaskRopeNormCastChainBitwise) {
  SKIP_WITHOUT_GPU();
  SEEDED();
  uint64_t k = 0;
  struct Shape { int nh, nkv, hd; int64_t rows; bool norm, clip; };
  for (const Shape& s : {Shape{4, 2, 16, 37, true, true}, Shape{6, 2, 32, 5, false, true},
                         Shape{3, 1, 64, 101, true, false}, Shape{16, 8, 128, 300, true, true},
                         Shape{4, 4, 128, 1, false, false},
                         // Qwen3-0.6B heads over many column-sum chunks, the last block short;
                         // 40/8 heads (Qwen3-14B: > 48 KB of shared memory per block);
                         // 64/8 at hd 256 (too much shared memory: the unfused fallback).
                         Shape{16, 8, 128, 1031, true, true}, Shape{40, 8, 128, 67, true, false},
                         Shape{64, 8, 256, 9, true, true}}) {
    SCOPED_TRACE(::testing::Message() << "heads " << s.nh << "/" << s.nkv << " hd " << s.hd << " rows "
                                      << s.rows << " norm " << s.norm << " clip " << s.clip);
    const int64_t R = s.rows, qd = int64_t(s.nh) * s.hd, kd = int64_t(s.nkv) * s.hd, W = qd + 2 * kd;
    const int64_t max_pos = 2 * R + 3;
    const auto inv = kernels::rope_inv_freq(s.hd, 1e6, {});
    const auto tab = kernels::rope_tables(inv, max_pos);
    std::vector<int32_t> pos(static_cast<size_t>(R), 0);
    for (int64_t r = 0; r < R; ++r) pos[size_t(r)] = int32_t((r * 5 + 1) % max_pos);
    const auto g = test::random_normal(size_t(R * W), 1.0f, seed + k++);
    const auto x = test::random_normal(size_t(R * W), 2.0f, seed + k++);
    const auto qw = test::random_normal(size_t(s.hd), 1.0f, seed + k++);
    const auto kw = test::random_normal(size_t(s.hd), 1.0f, seed + k++);
    auto kpre = rounded(test::random_normal(size_t(R * kd), 1.5f, seed + k++), DType::BF16);
    auto vpre = rounded(test::random_normal(size_t(R * kd), 1.5f, seed + k++), DType::BF16);
    kpre[0] = std::nanf("");  // a NaN pre-quantizer value clips too
    const float k_amax = 1.25f, v_amax = 2.0f;
    Tensor pd = upload_i32(pos), cd = upload(tab.cos), sd = upload(tab.sin), qwd = upload(qw), kwd = upload(kw);
    Tensor xd = upload(x, R, W, W, DType::F32);
    Tensor kp = upload(kpre, R, kd, kd, DType::BF16), vp = upload(vpre, R, kd, kd, DType::BF16);
    const auto* pp = static_cast<const int32_t*>(pd.data());
    const auto* cp = static_cast<const float*>(cd.data());
    const auto* sp = static_cast<const float*>(sd.data());
    auto* xp = static_cast<float*>(xd.data());
    // rstds of the forward norms of x (into a scratch copy: x itself stays the norms' input).
    Tensor xs = upload(x, R, W, W, DType::F32), qr = poisoned(R * s.nh, DType::F32), kr = poisoned(R * s.nkv, DType::F32);
    auto* xsp = static_cast<float*>(xs.data());
    gpu::launch_rmsnorm_forward(Elem::F32, xsp, W, static_cast<float*>(qwd.data()), R, s.nh, s.hd, 1e-6f,
                                Elem::F32, xsp, W, static_cast<float*>(qr.data()), nullptr);
    gpu::launch_rmsnorm_forward(Elem::F32, xsp + qd, W, static_cast<float*>(kwd.data()), R, s.nkv, s.hd, 1e-6f,
                                Elem::F32, xsp + qd, W, static_cast<float*>(kr.data()), nullptr);
    auto* qrp = static_cast<float*>(qr.data());
    auto* krp = static_cast<float*>(kr.data());

    // The chain (what gpu_backward.cpp did before the fused kernel).
    Tensor ref = upload(g, R, W, W, DType::F32);
    auto* rp = static_cast<float*>(ref.data());
    Tensor ref_dq = upload(std::vector<float>(size_t(s.hd), 0.5f)), ref_dk = upload(std::vector<float>(size_t(s.hd), -0.25f));
    if (s.clip) {
      gpu::launch_clip_mask(rp + qd, W, Elem::BF16, kp.data(), kd, R, kd, k_amax, nullptr);
      gpu::launch_clip_mask(rp + qd + kd, W, Elem::BF16, vp.data(), kd, R, kd, v_amax, nullptr);
    }
    gpu::launch_rope_backward(rp, R, W, s.nh, s.hd, pp, cp, sp, nullptr);
    gpu::launch_rope_backward(rp + qd, R, W, s.nkv, s.hd, pp, cp, sp, nullptr);
    const std::vector<float> ref_dy = download(ref, R, W, W);
    if (s.norm) {
      gpu::launch_rmsnorm_backward(Elem::F32, rp, W, Elem::F32, xp, W, static_cast<float*>(qwd.data()), qrp, R,
                                   s.nh, s.hd, rp, W, false, static_cast<float*>(ref_dq.data()), nullptr);
      gpu::launch_rmsnorm_backward(Elem::F32, rp + qd, W, Elem::F32, xp + qd, W, static_cast<float*>(kwd.data()),
                                   krp, R, s.nkv, s.hd, rp + qd, W, false, static_cast<float*>(ref_dk.data()),
                                   nullptr);
    }
    Tensor ref16 = poisoned(R * W, DType::BF16);
    gpu::launch_cast(Elem::F32, rp, Elem::BF16, ref16.data(), R * W, nullptr);

    // The fused kernel.
    Tensor dd = upload(g, R, W, W, DType::F32), out = poisoned(R * W, DType::BF16);
    Tensor dq = upload(std::vector<float>(size_t(s.hd), 0.5f)), dk = upload(std::vector<float>(size_t(s.hd), -0.25f));
    gpu::launch_qkv_prepare_backward(
        static_cast<float*>(dd.data()), s.norm ? xp : nullptr, R, s.nh, s.nkv, s.hd,
        s.norm ? static_cast<float*>(qwd.data()) : nullptr, s.norm ? static_cast<float*>(kwd.data()) : nullptr,
        s.norm ? qrp : nullptr, s.norm ? krp : nullptr, s.clip ? static_cast<gpu::bf16*>(kp.data()) : nullptr,
        s.clip ? static_cast<gpu::bf16*>(vp.data()) : nullptr, k_amax, v_amax, pp, cp, sp,
        static_cast<gpu::bf16*>(out.data()), s.norm ? static_cast<float*>(dq.data()) : nullptr,
        s.norm ? static_cast<float*>(dk.data()) : nullptr, nullptr);
    EXPECT_TRUE(same_bits(download_bits(out, R, W, W), download_bits(ref16, R, W, W))) << "bf16 gradient";
    // Without norms dqkv ends as the projection's fp32 gradient, which the bias's gradient
    // reads; with norms its contents are unspecified (the fused kernel leaves it unchanged).
    if (!s.norm) {
      EXPECT_TRUE(same_bits(download(dd, R, W, W), ref_dy)) << "fp32 gradient left in place";
    }
    // The fused norm path sums dw in its own fixed order (per warp, then warps in order), the
    // chain by column_sum_add's chunks: equal up to the last bit of a double sum rounded once,
    // and reproducible bit for bit.
    EXPECT_TRUE(close(download(dq), download(ref_dq), 1e-6)) << "q norm weight gradient";
    EXPECT_TRUE(close(download(dk), download(ref_dk), 1e-6)) << "k norm weight gradient";
    if (s.norm) {
      Tensor dd2 = upload(g, R, W, W, DType::F32), out2 = poisoned(R * W, DType::BF16);
      Tensor dq2 = upload(std::vector<float>(size_t(s.hd), 0.5f)), dk2 = upload(std::vector<float>(size_t(s.hd), -0.25f));
      gpu::launch_qkv_prepare_backward(
          static_cast<float*>(dd2.data()), xp, R, s.nh, s.nkv, s.hd, static_cast<float*>(qwd.data()),
          static_cast<float*>(kwd.data()), qrp, krp, s.clip ? static_cast<gpu::bf16*>(kp.data()) : nullptr,
          s.clip ? static_cast<gpu::bf16*>(vp.data()) : nullptr, k_amax, v_amax, pp, cp, sp,
          static_cast<gpu::bf16*>(out2.data()), static_cast<float*>(dq2.data()), static_cast<float*>(dk2.data()),
          nullptr);
      EXPECT_TRUE(same_bits(download(dq2), download(dq))) << "q norm dw must be reproducible";
      EXPECT_TRUE(same_bits(download(dk2), download(dk))) << "k norm dw must be reproducible";
    }
    if (s.clip) {  // the masks did something
      size_t zeros = 0;
      for (int64_t r = 0; r < R; ++r)
        for (int64_t c = qd; c < W; ++c) zeros += ref_dy[size_t(r * W + c)] == 0.0f;
      EXPECT_GT(zeros, size_t(0));
    }
  }
}

#endif  // QARL_HAVE_CUDA

}  // namespace
}  // namespace qarl
