// launch_qkv_prepare (the GPU model's fused q/k norm + RoPE + bf16 rounding) against the chain
// of kernels it replaces (rmsnorm -> rope -> cast -> row copies), bitwise; those kernels are
// checked against the CPU in cuda_model_ops_test.cpp. Fresh random inputs, head sizes 16 to
// 128, with and without the per-head norms, row counts that are not multiples of anything,
// poisoned outputs. Skips, with the reason, where no CUDA device is usable.
#include <gtest/gtest.h>

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

#endif  // QARL_HAVE_CUDA

}  // namespace
}  // namespace qarl
