// CUDA model ops (qarl/kernels/cuda/model_ops.h) against the CPU references (qarl/kernels/cpu,
// train::AdamW) on fresh random inputs: bitwise where the arithmetic is the same (embedding
// forward, RoPE, AdamW, casts, bias add, copies, masks), otherwise by normalized error
// max|gpu - cpu| / max|cpu| (bounds stated per test: 1e-5 for fp32 outputs, 1e-2 for bf16).
// bf16 inputs are rounded to bf16 before the CPU sees them. Outputs are poisoned (NaN bytes)
// before every launch; strided views check that gap elements stay untouched. The GPU cases
// skip, with the reason, where no CUDA device is usable (CI); the RoPE tables (host code) are
// tested everywhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "kernels/cuda_model_ops_util.h"
#include "qarl/core/half.h"
#include "qarl/kernels/cpu/embedding.h"
#include "qarl/kernels/cpu/log_softmax.h"
#include "qarl/kernels/cpu/rmsnorm.h"
#include "qarl/kernels/cpu/rope.h"
#include "qarl/kernels/cpu/swiglu.h"
#include "qarl/kernels/cuda/device.h"
#include "qarl/kernels/cuda/model_ops.h"
#include "test_util.h"

namespace qarl {
namespace {

using namespace test::gpu_ops;
namespace gpu = kernels::gpu;

// ---- RoPE tables (host code, every build) -------------------------------------------------

// The tables hold exactly the cos/sin the CPU kernel applies: rotating the unit vector
// (1, .., 1, 0, .., 0) gives y_i = 1*c - 0*s = c and y_{i+half} = 0*c + 1*s = s, exactly.
TEST(CudaModelOpsHost, RopeTablesAreTheCpuAngles) {
  kernels::RopeScalingParams llama3;
  llama3.llama3 = true;
  llama3.factor = 8;
  llama3.original_max_position_embeddings = 64;
  for (int hd : {64, 128})
    for (const auto& sc : {kernels::RopeScalingParams{}, llama3}) {
      SCOPED_TRACE(::testing::Message() << "head_dim " << hd << " llama3 " << sc.llama3);
      const std::vector<float> inv = kernels::rope_inv_freq(hd, 1e6, sc);
      const int64_t max_pos = 301;
      const kernels::RopeTables t = kernels::rope_tables(inv, max_pos);
      ASSERT_EQ(t.half, hd / 2);
      ASSERT_EQ(t.max_pos, max_pos);
      ASSERT_EQ(t.cos.size(), size_t(max_pos * hd / 2));
      std::vector<int32_t> pos(static_cast<size_t>(max_pos));
      for (int64_t p = 0; p < max_pos; ++p) pos[size_t(p)] = int32_t(p);
      std::vector<float> x(size_t(max_pos * hd), 0.0f);
      for (int64_t p = 0; p < max_pos; ++p)
        for (int i = 0; i < hd / 2; ++i) x[size_t(p * hd + i)] = 1.0f;
      kernels::rope_forward(x.data(), max_pos, hd, 1, hd, pos.data(), inv.data());
      std::vector<float> want_c, want_s;
      for (int64_t p = 0; p < max_pos; ++p)
        for (int i = 0; i < hd / 2; ++i) {
          want_c.push_back(x[size_t(p * hd + i)]);
          want_s.push_back(x[size_t(p * hd + hd / 2 + i)]);
          // and independently of the kernel: fp32 angle, std::cos/sin of it
          ASSERT_EQ(t.cos[size_t(p * hd / 2 + i)], std::cos(float(p) * inv[size_t(i)]));
        }
      EXPECT_TRUE(same_bits(t.cos, want_c));
      EXPECT_TRUE(same_bits(t.sin, want_s));
    }
}

#ifndef QARL_HAVE_CUDA
TEST(CudaModelOps, NeedCuda) { GTEST_SKIP() << "qarl was built without CUDA"; }
#else


// ---- embedding ------------------------------------------------------------------------------

TEST(CudaModelOps, EmbeddingForwardBitwiseBackwardClose) {
  SKIP_WITHOUT_GPU();
  SEEDED();
  const int64_t vocab = 1531, dim = 200, rows = 37;
  const auto table = rounded(test::random_normal(size_t(vocab * dim), 1.0f, seed), DType::BF16);
  auto tokens = random_ints(size_t(rows), int32_t(vocab), seed + 1);
  tokens[3] = tokens[7] = tokens[20];  // repeated tokens accumulate in the backward
  tokens[0] = 0;
  tokens[1] = int32_t(vocab - 1);
  Tensor td = upload(table, DType::BF16), tok = upload_i32(tokens);
  Tensor out = poisoned(rows * dim, DType::F32);
  gpu::launch_embedding_forward(bf16p(td), dim, i32p(tok), rows, f32p(out), nullptr);
  std::vector<float> want(size_t(rows * dim));
  kernels::embedding_forward(table.data(), dim, tokens.data(), rows, want.data());
  EXPECT_TRUE(same_bits(download(out), want));

  const auto dout = test::random_normal(size_t(rows * dim), 1.0f, seed + 2);
  auto dtable = test::random_normal(size_t(vocab * dim), 1.0f, seed + 3);
  Tensor dd = upload(dout), dt = upload(dtable);
  gpu::launch_embedding_backward(f32p(dd), dim, i32p(tok), rows, f32p(dt), nullptr);
  kernels::embedding_backward(dout.data(), dim, tokens.data(), rows, dtable.data());
  EXPECT_TRUE(close(download(dt), dtable, 1e-6));  // atomics: order of the repeated rows
}

// ---- RMSNorm --------------------------------------------------------------------------------

// warp-per-group (dim <= 1024) and block-per-group paths; per-head grouped norms.
const NormCase kNormCases[] = {{37, 1, 200}, {37, 1, 1000}, {9, 1, 2000}, {37, 3, 64},
                               {37, 5, 128}, {1, 1, 1}};

// CPU reference for the grouped layout: x [rows, stride] (groups*dim used); returns y in the
// same layout, rstd [rows*groups].
void cpu_rmsnorm(const std::vector<float>& x, const std::vector<float>& w, const NormCase& c,
                 int64_t stride, float eps, std::vector<float>& y, std::vector<float>& rstd) {
  y.assign(x.size(), 0.0f);
  rstd.assign(size_t(c.rows * c.groups), 0.0f);
  std::vector<float> rs(size_t(c.rows));
  for (int g = 0; g < c.groups; ++g) {
    kernels::rmsnorm_forward(x.data() + g * c.dim, w.data(), c.rows, c.dim, stride, eps,
                             y.data() + g * c.dim, rs.data());
    for (int64_t r = 0; r < c.rows; ++r) rstd[size_t(r * c.groups + g)] = rs[size_t(r)];
  }
}
// [rows, cols] dense -> [rows, stride] (gap zeros) and back.
std::vector<float> spread(const std::vector<float>& d, int64_t rows, int64_t cols, int64_t stride) {
  std::vector<float> s(size_t(rows * stride), 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    std::copy_n(d.begin() + r * cols, cols, s.begin() + r * stride);
  return s;
}
std::vector<float> gather(const std::vector<float>& s, int64_t rows, int64_t cols, int64_t stride) {
  std::vector<float> d(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    std::copy_n(s.begin() + r * stride, cols, d.begin() + r * cols);
  return d;
}

TEST(CudaModelOps, RmsNormForwardMatchesCpu) {
  SKIP_WITHOUT_GPU();
  SEEDED();
  const float eps = 1e-6f;
  int k = 0;
  for (const NormCase& c : kNormCases)
    for (Elem in_t : kTypes)
      for (Elem out_t : kTypes) {
        SCOPED_TRACE(::testing::Message() << "rows " << c.rows << " groups " << c.groups << " dim "
                                          << c.dim << " " << elem_name(in_t) << "->" << elem_name(out_t));
        const int64_t cols = int64_t(c.groups) * c.dim, xs = cols + 13, ys = cols + 7;
        const auto x = rounded(test::random_normal(size_t(c.rows * cols), 2.0f, seed + k++), dtype_of(in_t));
        const auto w = test::random_normal(size_t(c.dim), 1.0f, seed + k++);
        std::vector<float> y_cpu, rstd_cpu;
        cpu_rmsnorm(spread(x, c.rows, cols, xs), w, c, xs, eps, y_cpu, rstd_cpu);
        const auto want = gather(y_cpu, c.rows, cols, xs);
        Tensor xd = upload(x, c.rows, cols, xs, dtype_of(in_t)), wd = upload(w);
        Tensor yd = upload({}, c.rows, cols, ys, dtype_of(out_t));
        Tensor rd = poisoned(c.rows * c.groups, DType::F32);
        gpu::launch_rmsnorm_forward(in_t, xd.data(), xs, f32p(wd), c.rows, c.groups, c.dim, eps,
                                    out_t, yd.data(), ys, f32p(rd), nullptr);
        EXPECT_TRUE(close(download(rd), rstd_cpu, 1e-6));
        const double bound = out_t == Elem::F32 ? 1e-5 : 1e-2;
        EXPECT_TRUE(close(download(yd, c.rows, cols, ys), rounded(want, dtype_of(out_t)), bound));
        EXPECT_TRUE(gaps_untouched(yd, c.rows, cols, ys));
        {  // x_copy: the input's bits at x's stride; y and rstd unchanged
          Tensor cd = upload({}, c.rows, cols, xs, dtype_of(in_t));
          Tensor y2 = upload({}, c.rows, cols, ys, dtype_of(out_t));
          Tensor r2 = poisoned(c.rows * c.groups, DType::F32);
          gpu::launch_rmsnorm_forward(in_t, xd.data(), xs, f32p(wd), c.rows, c.groups, c.dim, eps,
                                      out_t, y2.data(), ys, f32p(r2), nullptr, cd.data());
          EXPECT_TRUE(same_bits(download_bits(cd, c.rows, cols, xs), download_bits(xd, c.rows, cols, xs)));
          EXPECT_TRUE(gaps_untouched(cd, c.rows, cols, xs));
          EXPECT_TRUE(same_bits(download_bits(y2, c.rows, cols, ys), download_bits(yd, c.rows, cols, ys)));
          EXPECT_TRUE(same_bits(download(r2), download(rd)));
        }
        if (in_t == out_t) {  // in place, rstd not requested
          gpu::launch_rmsnorm_forward(in_t, xd.data(), xs, f32p(wd), c.rows, c.groups, c.dim,
                                      eps, out_t, xd.data(), xs, nullptr, nullptr);
          EXPECT_TRUE(same_bits(download_bits(xd, c.rows, cols, xs), download_bits(yd, c.rows, cols, ys)));
        }
      }
}

TEST(CudaModelOps, RmsNormBackwardMatchesCpu) {
  SKIP_WITHOUT_GPU();
  SEEDED();
  int k = 0;
  for (const NormCase& c : kNormCases)
    for (Elem dy_t : kTypes)
      for (Elem in_t : kTypes)
        for (bool accumulate : {false, true}) {
          SCOPED_TRACE(::testing::Message() << "rows " << c.rows << " groups " << c.groups << " dim "
                                            << c.dim << " dy " << elem_name(dy_t) << " x "
                                            << elem_name(in_t) << " accumulate " << accumulate);
          const int64_t cols = int64_t(c.groups) * c.dim, s = cols + 5;
          const int64_t gs = cols + 3, xs = cols + 11, dxs = cols + 1;  // GPU strides
          const auto x = rounded(test::random_normal(size_t(c.rows * cols), 2.0f, seed + k++), dtype_of(in_t));
          const auto dy = rounded(test::random_normal(size_t(c.rows * cols), 1.0f, seed + k++), dtype_of(dy_t));
          const auto w = test::random_normal(size_t(c.dim), 1.0f, seed + k++);
          const auto dx0 = test::random_normal(size_t(c.rows * cols), 1.0f, seed + k++);
          const auto dw0 = test::random_normal(size_t(c.dim), 1.0f, seed + k++);
          std::vector<float> y_cpu, rstd;
          const auto xs_cpu = spread(x, c.rows, cols, s), dys_cpu = spread(dy, c.rows, cols, s);
          cpu_rmsnorm(xs_cpu, w, c, s, 1e-6f, y_cpu, rstd);
          std::vector<float> dx_cpu(xs_cpu.size()), dw_cpu = dw0, rs(size_t(c.rows));
          for (int g = 0; g < c.groups; ++g) {
            for (int64_t r = 0; r < c.rows; ++r) rs[size_t(r)] = rstd[size_t(r * c.groups + g)];
            kernels::rmsnorm_backward(dys_cpu.data() + g * c.dim, xs_cpu.data() + g * c.dim,
                                      w.data(), rs.data(), c.rows, c.dim, s,
                                      dx_cpu.data() + g * c.dim, dw_cpu.data());
          }
          auto want = gather(dx_cpu, c.rows, cols, s);
          if (accumulate)
            for (size_t i = 0; i < want.size(); ++i) want[i] += dx0[i];
          Tensor xd = upload(x, c.rows, cols, xs, dtype_of(in_t));
          Tensor gd = upload(dy, c.rows, cols, gs, dtype_of(dy_t));
          Tensor wd = upload(w), rd = upload(rstd), dwd = upload(dw0);
          Tensor dxd = accumulate ? upload(dx0, c.rows, cols, dxs, DType::F32)
                                  : upload({}, c.rows, cols, dxs, DType::F32);
          // dx16: dx's final values in bf16, the bits a cast of dx gives.
          Tensor d16 = upload({}, c.rows, cols, dxs, DType::BF16);
          gpu::launch_rmsnorm_backward(dy_t, gd.data(), gs, in_t, xd.data(), xs, f32p(wd),
                                       f32p(rd), c.rows, c.groups, c.dim, f32p(dxd), dxs,
                                       accumulate, f32p(dwd), nullptr, static_cast<uint16_t*>(d16.data()));
          EXPECT_TRUE(close(download(dxd, c.rows, cols, dxs), want, 1e-5));
          EXPECT_TRUE(gaps_untouched(dxd, c.rows, cols, dxs));
          EXPECT_TRUE(same_bits(download_bits(d16, c.rows, cols, dxs),
                                bits_in(download(dxd, c.rows, cols, dxs), DType::BF16)));
          EXPECT_TRUE(gaps_untouched(d16, c.rows, cols, dxs));
          EXPECT_TRUE(close(download(dwd), dw_cpu, 1e-5));
          if (dy_t == Elem::F32 && !accumulate) {  // dx aliasing dy, no dw
            const auto first = download(dxd, c.rows, cols, dxs);
            Tensor g2 = upload(dy, c.rows, cols, gs, DType::F32);
            gpu::launch_rmsnorm_backward(dy_t, g2.data(), gs, in_t, xd.data(), xs, f32p(wd),
                                         f32p(rd), c.rows, c.groups, c.dim, f32p(g2), gs,
                                         false, nullptr, nullptr);
            EXPECT_TRUE(same_bits(download(g2, c.rows, cols, gs), first));
          }
        }
}

// The one-row-per-group backward sums dw inside the dx kernel (rmsnorm_backward_dw_kernel,
// chunks of 8 rows) unless dx aliases dy (then column_sum_add, chunks of 32): dx must be the
// same bits, dw (accumulated onto a nonzero start) the same up to the last bit of a double sum
// rounded once, and the fused dw reproducible bit for bit. Rows over several chunks with a
// short last one, dims not multiples of 32, and the Qwen3 hidden size.
TEST(CudaModelOps, RmsNormBackwardFusedDwMatchesColumnSum) {
  SKIP_WITHOUT_GPU();
  SEEDED();
  int k = 0;
  for (const auto& [rows, dim] : std::vector<std::pair<int64_t, int>>{{1, 7}, {33, 1000}, {300, 1024}, {97, 45}})
    for (bool accumulate : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "rows " << rows << " dim " << dim << " accumulate " << accumulate);
      const int64_t xs = dim + 3;
      const auto x = test::random_normal(size_t(rows * dim), 2.0f, seed + k++);
      const auto dy = test::random_normal(size_t(rows * dim), 1.0f, seed + k++);
      const auto w = test::random_normal(size_t(dim), 1.0f, seed + k++);
      const auto dw0 = test::random_normal(size_t(dim), 1.0f, seed + k++);
      const auto dx0 = test::random_normal(size_t(rows * dim), 1.0f, seed + k++);
      Tensor xd = upload(x, rows, dim, xs, DType::F32), wd = upload(w);
      Tensor yd = upload({}, rows, dim, dim, DType::BF16), rd = poisoned(rows, DType::F32);
      gpu::launch_rmsnorm_forward(Elem::F32, xd.data(), xs, f32p(wd), rows, 1, dim, 1e-6f,
                                  Elem::BF16, yd.data(), dim, f32p(rd), nullptr);
      // Fused: dx apart from dy.
      Tensor gd = upload(dy, rows, dim, dim, DType::F32), dwf = upload(dw0);
      Tensor dxf = accumulate ? upload(dx0, rows, dim, dim, DType::F32) : poisoned(rows * dim, DType::F32);
      gpu::launch_rmsnorm_backward(Elem::F32, gd.data(), dim, Elem::F32, xd.data(), xs, f32p(wd),
                                   f32p(rd), rows, 1, dim, f32p(dxf), dim, accumulate, f32p(dwf), nullptr);
      // Column-sum path: dx aliasing dy (the buffer starts as dy, or as dx0 + ... via accumulate).
      Tensor dwu = upload(dw0);
      Tensor g2 = upload(dy, rows, dim, dim, DType::F32);
      gpu::launch_rmsnorm_backward(Elem::F32, g2.data(), dim, Elem::F32, xd.data(), xs, f32p(wd),
                                   f32p(rd), rows, 1, dim, f32p(g2), dim, false, f32p(dwu), nullptr);
      EXPECT_TRUE(close(download(dwf), download(dwu), 1e-6)) << "dw";
      Tensor dwf2 = upload(dw0), dxf2 = accumulate ? upload(dx0, rows, dim, dim, DType::F32) : poisoned(rows * dim, DType::F32);
      gpu::launch_rmsnorm_backward(Elem::F32, gd.data(), dim, Elem::F32, xd.data(), xs, f32p(wd),
                                   f32p(rd), rows, 1, dim, f32p(dxf2), dim, accumulate, f32p(dwf2), nullptr);
      EXPECT_TRUE(same_bits(download(dwf2), download(dwf))) << "dw must be reproducible";
      auto want = download(g2, rows, dim, dim);
      if (accumulate)
        for (size_t i = 0; i < want.size(); ++i) want[i] = dx0[i] + want[i];
      EXPECT_TRUE(same_bits(download(dxf, rows, dim, dim), want)) << "dx";
    }
}

// ---- RoPE -----------------------------------------------------------------------------------

TEST(CudaModelOps, RopeMatchesCpuBitwise) {
  SKIP_WITHOUT_GPU();
  SEEDED();
  int k = 0;
  for (int hd : {64, 128})
    for (Elem t : {Elem::F32, Elem::BF16, Elem::F16}) {
      SCOPED_TRACE(::testing::Message() << "head_dim " << hd << " " << elem_name(t));
      const int64_t rows = 37, heads = 3, cols = heads * hd, stride = cols + 9, max_pos = 4099;
      const auto inv = kernels::rope_inv_freq(hd, 1e6, {});
      const auto tab = kernels::rope_tables(inv, max_pos);
      auto pos = random_ints(size_t(rows), int32_t(max_pos), seed + k++);
      pos[0] = 0;
      pos[1] = int32_t(max_pos - 1);
      const auto x = rounded(test::random_normal(size_t(rows * cols), 3.0f, seed + k++), dtype_of(t));
      auto want = spread(x, rows, cols, stride);
      kernels::rope_forward(want.data(), rows, stride, int(heads), hd, pos.data(), inv.data());
      Tensor xd = upload(x, rows, cols, stride, dtype_of(t));
      Tensor pd = upload_i32(pos), cd = upload(tab.cos), sd = upload(tab.sin);
      gpu::launch_rope_forward(t, xd.data(), rows, stride, int(heads), hd, i32p(pd), f32p(cd),
                               f32p(sd), nullptr);
      EXPECT_TRUE(same_bits(download_bits(xd, rows, cols, stride),
                            bits_in(gather(want, rows, cols, stride), dtype_of(t))));
      EXPECT_TRUE(gaps_untouched(xd, rows, cols, stride));
      if (t == Elem::F32) {
        const auto g = test::random_normal(size_t(rows * cols), 1.0f, seed + k++);
        auto gwant = spread(g, rows, cols, stride);
        kernels::rope_backward(gwant.data(), rows, stride, int(heads), hd, pos.data(), inv.data());
        Tensor gd = upload(g, rows, cols, stride, DType::F32);
        gpu::launch_rope_backward(f32p(gd), rows, stride, int(heads), hd, i32p(pd), f32p(cd),
                                  f32p(sd), nullptr);
        EXPECT_TRUE(same_bits(download(gd, rows, cols, stride), gather(gwant, rows, cols, stride)));
        EXPECT_TRUE(gaps_untouched(gd, rows, cols, stride));
      }
    }
}

// ---- SwiGLU ---------------------------------------------------------------------------------

TEST(CudaModelOps, SwigluMatchesCpu) {
  SKIP_WITHOUT_GPU();
  SEEDED();
  int k = 0;
  for (int64_t inter : {int64_t(1), int64_t(333), int64_t(1000)}) {
    SCOPED_TRACE(::testing::Message() << "inter " << inter);
    const int64_t rows = 37;
    const auto gu = rounded(test::random_normal(size_t(rows * 2 * inter), 3.0f, seed + k++), DType::BF16);
    const auto dh = rounded(test::random_normal(size_t(rows * inter), 1.0f, seed + k++), DType::BF16);
    std::vector<float> h(size_t(rows * inter)), dgu(gu.size());
    kernels::swiglu_forward(gu.data(), rows, inter, h.data());
    kernels::swiglu_backward(dh.data(), gu.data(), rows, inter, dgu.data());
    Tensor gud = upload(gu, DType::BF16), dhd = upload(dh, DType::BF16);
    Tensor hd = poisoned(rows * inter, DType::BF16), dgud = poisoned(rows * 2 * inter, DType::BF16);
    gpu::launch_swiglu_forward(bf16p(gud), rows, inter, bf16p(hd), nullptr);
    gpu::launch_swiglu_backward(bf16p(dhd), bf16p(gud), rows, inter, bf16p(dgud), nullptr);
    EXPECT_TRUE(close(download(hd), rounded(h, DType::BF16), 1e-2));
    EXPECT_TRUE(close(download(dgud), rounded(dgu, DType::BF16), 1e-2));
    // in place: dgu over gu
    gpu::launch_swiglu_backward(bf16p(dhd), bf16p(gud), rows, inter, bf16p(gud), nullptr);
    EXPECT_TRUE(same_bits(download_bits(gud, 1, gud.numel(), gud.numel()),
                          download_bits(dgud, 1, dgud.numel(), dgud.numel())));
  }
}

// ---- logprobs / cross-entropy ---------------------------------------------------------------

float scaled(float x, float t) { return t == 1.0f ? x : x / t; }

TEST(CudaModelOps, LogprobsForwardBackwardMatchCpu) {
  SKIP_WITHOUT_GPU();
  SEEDED();
  int k = 0;
  for (int64_t vocab : {int64_t(1531), int64_t(32011)})
    for (float T : {1.0f, 0.7f}) {
      SCOPED_TRACE(::testing::Message() << "vocab " << vocab << " T " << T);
      const int64_t rows = 37, ld = vocab + 3, ldo = vocab + 5;
      const auto logits = test::random_normal(size_t(rows * vocab), 4.0f, seed + k++);
      const auto targets = random_ints(size_t(rows), int32_t(vocab), seed + k++);
      const auto g = test::random_normal(size_t(rows), 1.0f, seed + k++);
      Tensor ld_ = upload(logits, rows, vocab, ld, DType::F32), td = upload_i32(targets);
      Tensor lse = poisoned(rows, DType::F32), lp = poisoned(rows, DType::F32);
      gpu::launch_logprobs_forward(f32p(ld_), ld, rows, vocab, T, i32p(td), f32p(lse), f32p(lp),
                                   nullptr);
      const auto lse_g = download(lse), lp_g = download(lp);
      std::vector<float> lse_c, lp_c, lp_exact;
      for (int64_t r = 0; r < rows; ++r) {
        const float* row = logits.data() + r * vocab;
        lse_c.push_back(kernels::log_sum_exp_row(row, vocab, T));
        lp_c.push_back(kernels::token_logprob(row, vocab, T, targets[size_t(r)]));
        lp_exact.push_back(scaled(row[targets[size_t(r)]], T) - lse_g[size_t(r)]);
      }
      EXPECT_TRUE(close(lse_g, lse_c, 1e-6));
      EXPECT_TRUE(close(lp_g, lp_c, 1e-5));
      EXPECT_TRUE(same_bits(lp_g, lp_exact));  // the documented expression, bitwise
      // lse only
      Tensor lse2 = poisoned(rows, DType::F32);
      gpu::launch_logprobs_forward(f32p(ld_), ld, rows, vocab, T, nullptr, f32p(lse2), nullptr, nullptr);
      EXPECT_TRUE(same_bits(download(lse2), lse_g));
      // Rows starting 16-byte aligned (vectorized loads) give the same bits as the rows above
      // (mostly unaligned): a row's result must not depend on where it sits in a batch.
      const int64_t ld_al = (vocab + 3) / 4 * 4;
      Tensor la = upload(logits, rows, vocab, ld_al, DType::F32), lse3 = poisoned(rows, DType::F32);
      gpu::launch_logprobs_forward(f32p(la), ld_al, rows, vocab, T, nullptr, f32p(lse3), nullptr, nullptr);
      EXPECT_TRUE(same_bits(download(lse3), lse_g)) << "aligned rows";

      std::vector<float> want(size_t(rows * vocab));
      for (int64_t r = 0; r < rows; ++r)
        kernels::token_logprob_backward(logits.data() + r * vocab, vocab, T, targets[size_t(r)],
                                        lse_g[size_t(r)], g[size_t(r)], want.data() + r * vocab);
      Tensor gd = upload(g);
      for (Elem out_t : kTypes) {
        SCOPED_TRACE(elem_name(out_t));
        Tensor dd = upload({}, rows, vocab, ldo, dtype_of(out_t));
        gpu::launch_logprobs_backward(f32p(ld_), ld, rows, vocab, T, i32p(td), f32p(lse),
                                      f32p(gd), out_t, dd.data(), ldo, nullptr);
        EXPECT_TRUE(close(download(dd, rows, vocab, ldo), rounded(want, dtype_of(out_t)),
                          out_t == Elem::F32 ? 1e-5 : 1e-2));
        EXPECT_TRUE(gaps_untouched(dd, rows, vocab, ldo));
        {  // rows aligned for the vector loads/stores: the same bits as the rows above
          Tensor da = upload({}, rows, vocab, ld_al, dtype_of(out_t));
          gpu::launch_logprobs_backward(f32p(la), ld_al, rows, vocab, T, i32p(td), f32p(lse),
                                        f32p(gd), out_t, da.data(), ld_al, nullptr);
          EXPECT_TRUE(same_bits(download_bits(da, rows, vocab, ld_al), download_bits(dd, rows, vocab, ldo)))
              << "aligned rows";
          EXPECT_TRUE(gaps_untouched(da, rows, vocab, ld_al));
        }
        if (out_t == Elem::F32) {  // in place over the logits
          const auto first = download(dd, rows, vocab, ldo);
          Tensor inpl = upload(logits, rows, vocab, ld, DType::F32);
          gpu::launch_logprobs_backward(f32p(inpl), ld, rows, vocab, T, i32p(td), f32p(lse),
                                        f32p(gd), out_t, inpl.data(), ld, nullptr);
          EXPECT_TRUE(same_bits(download(inpl, rows, vocab, ld), first));
        }
      }
    }
}
// Masked vocabularies (-inf logits) and NaN: the quad-wise online sum must skip -inf wherever
// it sits in a quad (a quad of only -inf, -inf before the first finite element, the padding
// past the row's end) and let a NaN reach the sum, as the CPU's two-pass sum does.
TEST(CudaModelOps, LogprobsForwardHandlesMaskedAndNaNLogits) {
  SKIP_WITHOUT_GPU();
  SEEDED();
  const int64_t vocab = 4099, rows = 6, ld = vocab + 1;
  auto logits = test::random_normal(size_t(rows * vocab), 3.0f, seed);
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < vocab; ++i)  // row 0: ~30% masked at random
    if (rng() % 10 < 3) logits[size_t(i)] = -INFINITY;
  for (int64_t i = 0; i < 7; ++i) logits[size_t(vocab + i)] = -INFINITY;   // row 1: a masked head
  for (int64_t i = 0; i < vocab; ++i)                                       // row 2: one survivor
    if (i != 2050) logits[size_t(2 * vocab + i)] = -INFINITY;
  for (int64_t i = vocab - 5; i < vocab; ++i) logits[size_t(3 * vocab + i)] = -INFINITY;  // row 3: masked tail
  logits[size_t(4 * vocab + int64_t(rng() % uint64_t(vocab)))] = NAN;      // row 4: a NaN
  // row 5: plain
  for (float T : {1.0f, 0.7f}) {
    SCOPED_TRACE(T);
    Tensor ld_ = upload(logits, rows, vocab, ld, DType::F32), lse = poisoned(rows, DType::F32);
    gpu::launch_logprobs_forward(f32p(ld_), ld, rows, vocab, T, nullptr, f32p(lse), nullptr, nullptr);
    const auto got = download(lse);
    for (int64_t r = 0; r < rows; ++r) {
      SCOPED_TRACE(r);
      const float want = kernels::log_sum_exp_row(logits.data() + r * vocab, vocab, T);
      if (r == 4) {
        EXPECT_TRUE(std::isnan(got[size_t(r)])) << got[size_t(r)];
      } else {
        ASSERT_TRUE(std::isfinite(want));
        EXPECT_NEAR(got[size_t(r)], want, 1e-6 * std::max(1.0f, std::fabs(want)));
      }
    }
    const int64_t ld_al = (vocab + 3) / 4 * 4;
    Tensor la = upload(logits, rows, vocab, ld_al, DType::F32), lse2 = poisoned(rows, DType::F32);
    gpu::launch_logprobs_forward(f32p(la), ld_al, rows, vocab, T, nullptr, f32p(lse2), nullptr, nullptr);
    EXPECT_TRUE(same_bits(download(lse2), got)) << "aligned rows";
  }
}

TEST(CudaModelOps, CrossEntropyMatchesCpu) {
  SKIP_WITHOUT_GPU();
  SEEDED();
  const int64_t rows = 37, vocab = 1531, ld = vocab + 2;
  const auto logits = test::random_normal(size_t(rows * vocab), 3.0f, seed);
  const auto targets = random_ints(size_t(rows), int32_t(vocab), seed + 1);
  Tensor ld_ = upload(logits, rows, vocab, ld, DType::F32), td = upload_i32(targets);
  Tensor lse = poisoned(rows, DType::F32), lp = poisoned(rows, DType::F32), loss = poisoned(1, DType::F32);
  gpu::launch_cross_entropy_forward(f32p(ld_), ld, rows, vocab, i32p(td), f32p(lse), f32p(lp),
                                    f32p(loss), nullptr);
  const float want = kernels::cross_entropy_forward(logits.data(), rows, vocab, targets.data());
  EXPECT_TRUE(close(download(loss), {want}, 1e-6));
}

#endif  // QARL_HAVE_CUDA

}  // namespace
}  // namespace qarl
