// CUDA model ops, continued (see cuda_model_ops_test.cpp for the conventions): AdamW bitwise
// against train::AdamW, the small elementwise/reduction helpers, and batch invariance (a row
// computed alone equals the same row inside a bigger launch, bit for bit).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>

#include "kernels/cuda_model_ops_util.h"
#include "qarl/kernels/cuda/device.h"
#include "qarl/kernels/cuda/model_ops.h"
#include "qarl/train/adamw.h"
#include "qarl/train/schedule.h"
#include "test_util.h"

namespace qarl {
namespace {

#ifdef QARL_HAVE_CUDA

using namespace test::gpu_ops;
namespace gpu = kernels::gpu;

// ---- AdamW ----------------------------------------------------------------------------------

TEST(CudaModelOps, AdamWBitwiseEqualsTrainAdamWWithClipping) {
  SKIP_WITHOUT_GPU();
  SEEDED();
  train::AdamWOptions o;
  o.beta1 = 0.9;
  o.beta2 = 0.95;
  o.eps = 1e-8;
  o.weight_decay = 0.1;
  train::AdamW cpu(o);
  const std::map<std::string, std::pair<int64_t, bool>> params = {{"a", {1531 * 7, true}},
                                                                  {"b", {200, false}}};
  struct Dev { Tensor master, m, v, working; };
  std::map<std::string, Dev> dev;
  int k = 0;
  for (const auto& [name, p] : params) {
    const auto init = test::random_normal(size_t(p.first), 0.05f, seed + k++);
    cpu.add_param(name, Tensor::from_f32(init, {p.first}), p.second);
    const std::vector<float> zeros(size_t(p.first), 0.0f);
    dev[name] = {upload(init), upload(zeros), upload(zeros), poisoned(p.first, DType::BF16)};
  }
  const double lrs[] = {1e-3, 3e-4, 2e-3, 1e-2};
  for (int step = 1; step <= 4; ++step) {
    SCOPED_TRACE(::testing::Message() << "step " << step);
    const double lr = lrs[step - 1];
    std::map<std::string, Tensor> grads;
    std::map<std::string, Tensor> gdev;
    for (const auto& [name, p] : params) {
      auto gv = test::random_normal(size_t(p.first), step == 2 ? 30.0f : 0.01f, seed + k++);
      gv[0] = 0.0f;
      grads[name] = Tensor::from_f32(gv, {p.first});
      gdev[name] = upload(gv);
    }
    // Steps 2 and 3 clip (step 2's gradients are large): the CPU scales its gradients, the
    // GPU step reads the unscaled ones with the same coefficient (AdamWScalars::grad_scale).
    float coef = 1.0f;
    if (step == 2 || step == 3) {
      const double norm = train::clip_grad_norm(grads, 1.0);
      if (norm > 1.0) coef = float(1.0 / (norm + 1e-6));
      if (step == 2) {
        EXPECT_NE(coef, 1.0f) << "the clip must do something";
      }
    }
    cpu.step(grads, lr);
    // The scalars exactly as train::AdamW::step computes them.
    const double bc1 = 1.0 - std::pow(o.beta1, double(step));
    const double bc2_sqrt = std::sqrt(1.0 - std::pow(o.beta2, double(step)));
    for (const auto& [name, p] : params) {
      gpu::AdamWScalars s{o.beta1, o.beta2, o.eps, p.second ? lr * o.weight_decay : 0.0,
                          lr / bc1, bc2_sqrt, coef};
      Dev& d = dev[name];
      gpu::launch_adamw_step(f32p(d.master), f32p(d.m), f32p(d.v), f32p(gdev[name]), p.first, s,
                             bf16p(d.working), nullptr);
    }
    std::map<std::string, Tensor> state;
    for (auto& [key, t] : cpu.state_tensors()) state[key] = t;
    for (const auto& [name, p] : params) {
      SCOPED_TRACE(name);
      const Dev& d = dev[name];
      const auto master = state[name + ".master"].to_f32_vector();
      EXPECT_TRUE(same_bits(download(d.master), master));
      EXPECT_TRUE(same_bits(download(d.m), state[name + ".exp_avg"].to_f32_vector()));
      EXPECT_TRUE(same_bits(download(d.v), state[name + ".exp_avg_sq"].to_f32_vector()));
      EXPECT_TRUE(same_bits(download_bits(d.working, 1, p.first, p.first), bits_in(master, DType::BF16)));
    }
  }
}

// The multi-tensor step (one launch for every parameter, GpuAdamW's) gives the bits of one
// launch per tensor, across chunk boundaries (sizes around kAdamWChunk), with and without a
// bf16 working copy and with a clip coefficient.
TEST(CudaModelOps, AdamWMultiTensorEqualsOneLaunchPerTensor) {
  SKIP_WITHOUT_GPU();
  SEEDED();
  const int64_t sizes[] = {1, 3, gpu::kAdamWChunk - 1, gpu::kAdamWChunk + 1, 3 * gpu::kAdamWChunk + 77, 1531};
  gpu::AdamWScalars s{0.9, 0.95, 1e-8, 3e-4 * 0.1, 3e-4 / (1 - 0.9 * 0.9), std::sqrt(1 - 0.95 * 0.95), 0.7f};
  struct Set { Tensor master, m, v, grad, working; };
  std::vector<Set> one, multi;
  std::vector<gpu::AdamWTensor> table;
  int k = 0;
  for (int64_t n : sizes) {
    const auto p = test::random_normal(size_t(n), 0.05f, seed + k++);
    const auto m = test::random_normal(size_t(n), 0.01f, seed + k++);
    auto v = test::random_normal(size_t(n), 0.01f, seed + k++);
    for (float& x : v) x = x * x;
    const auto g = test::random_normal(size_t(n), 0.1f, seed + k++);
    const bool with_working = n != 3;
    for (auto* sets : {&one, &multi})
      sets->push_back({upload(p), upload(m), upload(v), upload(g),
                       with_working ? poisoned(n, DType::BF16) : Tensor()});
    Set& d = multi.back();
    table.push_back({f32p(d.master), f32p(d.m), f32p(d.v), f32p(d.grad),
                     with_working ? bf16p(d.working) : nullptr, n});
  }
  for (size_t i = 0; i < one.size(); ++i) {
    Set& d = one[i];
    gpu::launch_adamw_step(f32p(d.master), f32p(d.m), f32p(d.v), f32p(d.grad), sizes[i], s,
                           d.working.defined() ? bf16p(d.working) : nullptr, nullptr);
  }
  const auto chunks = gpu::adamw_chunks(table);
  int64_t covered = 0;
  for (const auto& c : chunks) {
    ASSERT_LE(c.end - c.begin, gpu::kAdamWChunk);
    covered += c.end - c.begin;
  }
  int64_t total = 0;
  for (int64_t n : sizes) total += n;
  EXPECT_EQ(covered, total);
  auto to_dev = [](const void* p, size_t bytes) {
    Tensor t = Tensor::empty({int64_t(bytes)}, DType::U8);
    std::memcpy(t.data(), p, bytes);
    return t.to_device(Device::CUDA);
  };
  Tensor td = to_dev(table.data(), table.size() * sizeof(gpu::AdamWTensor));
  Tensor cd = to_dev(chunks.data(), chunks.size() * sizeof(gpu::AdamWChunk));
  gpu::launch_adamw_step_multi(static_cast<const gpu::AdamWTensor*>(td.data()),
                               static_cast<const gpu::AdamWChunk*>(cd.data()), int64_t(chunks.size()), s,
                               nullptr);
  for (size_t i = 0; i < one.size(); ++i) {
    SCOPED_TRACE(sizes[i]);
    const int64_t n = sizes[i];
    EXPECT_TRUE(same_bits(download(multi[i].master), download(one[i].master)));
    EXPECT_TRUE(same_bits(download(multi[i].m), download(one[i].m)));
    EXPECT_TRUE(same_bits(download(multi[i].v), download(one[i].v)));
    EXPECT_NE(download(multi[i].master), download(multi[i].grad));  // something was written
    if (one[i].working.defined()) {
      EXPECT_TRUE(same_bits(download_bits(multi[i].working, 1, n, n), download_bits(one[i].working, 1, n, n)));
    }
  }
}

// ---- small helpers --------------------------------------------------------------------------

TEST(CudaModelOps, CastIsBitwiseTensorTo) {
  SKIP_WITHOUT_GPU();
  SEEDED();
  auto v = test::random_normal(1001, 100.0f, seed);
  const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 1e30f, -3e38f, 1e-40f,
                            65504.0f, 65520.0f, 6e-8f, 1.00390625f, 1.01171875f};
  for (size_t i = 0; i < std::size(specials); ++i) v[i * 7] = specials[i];
  for (Elem from : {Elem::F32, Elem::BF16, Elem::F16})
    for (Elem to : {Elem::F32, Elem::BF16, Elem::F16}) {
      SCOPED_TRACE(::testing::Message() << elem_name(from) << "->" << elem_name(to));
      Tensor src = Tensor::from_f32(v, {int64_t(v.size())}, dtype_of(from));
      Tensor want = src.to(dtype_of(to));
      Tensor y = poisoned(src.numel(), dtype_of(to)), srcd = src.to_device(Device::CUDA);
      gpu::launch_cast(from, srcd.data(), to, y.data(), src.numel(), nullptr);
      gpu::synchronize();
      EXPECT_TRUE(tensors_bitwise_equal(y.to_device(Device::CPU), want));
    }
}

TEST(CudaModelOps, BiasAddBitwiseBiasBackwardClose) {
  SKIP_WITHOUT_GPU();
  SEEDED();
  const int64_t rows = 37, cols = 1000, stride = 1011;
  for (Elem t : {Elem::F32, Elem::BF16, Elem::F16}) {
    SCOPED_TRACE(elem_name(t));
    const auto y = rounded(test::random_normal(size_t(rows * cols), 1.0f, seed), dtype_of(t));
    const auto b = test::random_normal(size_t(cols), 1.0f, seed + 1);
    std::vector<float> want(y.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) want[size_t(r * cols + c)] = y[size_t(r * cols + c)] + b[size_t(c)];
    Tensor yd = upload(y, rows, cols, stride, dtype_of(t)), bd = upload(b);
    gpu::launch_add_bias(t, yd.data(), rows, cols, stride, f32p(bd), nullptr);
    EXPECT_TRUE(same_bits(download_bits(yd, rows, cols, stride), bits_in(want, dtype_of(t))));
    EXPECT_TRUE(gaps_untouched(yd, rows, cols, stride));

    auto db = test::random_normal(size_t(cols), 1.0f, seed + 2);
    Tensor dbd = upload(db);
    gpu::launch_bias_backward(t, yd.data(), rows, cols, stride, f32p(dbd), nullptr);
    const auto yv = download(yd, rows, cols, stride);
    for (int64_t c = 0; c < cols; ++c) {
      double s = 0;
      for (int64_t r = 0; r < rows; ++r) s += yv[size_t(r * cols + c)];
      db[size_t(c)] += float(s);
    }
    EXPECT_TRUE(close(download(dbd), db, 1e-6));
  }
}

TEST(CudaModelOps, CopyRowsClipMaskScaleSumSquares) {
  SKIP_WITHOUT_GPU();
  SEEDED();
  const int64_t rows = 37, cols = 201;
  for (Elem t : {Elem::F32, Elem::BF16}) {
    SCOPED_TRACE(elem_name(t));
    auto x = rounded(test::random_normal(size_t(rows * cols), 2.0f, seed), dtype_of(t));
    x[5] = NAN;
    x[6] = -INFINITY;
    x[7] = 1.5f;  // exactly amax: kept
    x[8] = -1.5f;
    Tensor src = upload(x, rows, cols, cols + 3, dtype_of(t));
    Tensor dst = upload({}, rows, cols, cols + 8, dtype_of(t));
    gpu::launch_copy_rows(t, src.data(), cols + 3, dst.data(), cols + 8, rows, cols, nullptr);
    EXPECT_TRUE(same_bits(download_bits(dst, rows, cols, cols + 8), download_bits(src, rows, cols, cols + 3)));
    EXPECT_TRUE(gaps_untouched(dst, rows, cols, cols + 8));

    const auto dy = test::random_normal(size_t(rows * cols), 1.0f, seed + 1);
    std::vector<float> want = dy;
    for (size_t i = 0; i < x.size(); ++i) want[i] = std::fabs(x[i]) <= 1.5f ? dy[i] : 0.0f;
    Tensor dyd = upload(dy, rows, cols, cols + 4, DType::F32);
    gpu::launch_clip_mask(f32p(dyd), cols + 4, t, src.data(), cols + 3, rows, cols, 1.5f, nullptr);
    EXPECT_TRUE(same_bits(download(dyd, rows, cols, cols + 4), want));
    EXPECT_TRUE(gaps_untouched(dyd, rows, cols, cols + 4));
  }
  for (int64_t n : {int64_t(1), int64_t(1001), int64_t(3 * 1024 * 1024 + 7)}) {
    SCOPED_TRACE(::testing::Message() << "n " << n);
    const auto v = test::random_normal(size_t(n), 3.0f, seed + 2);
    Tensor vd = upload(v);
    double want = 0.25;
    for (float f : v) want += double(f) * double(f);
    Tensor acc = Tensor::from_f32(std::vector<float>{0.25f}, {1}, DType::F64).to_device(Device::CUDA);
    gpu::launch_sum_squares(f32p(vd), n, static_cast<double*>(acc.data()), nullptr);
    gpu::synchronize();
    const double got = acc.to_device(Device::CPU).item();
    EXPECT_NEAR(got, want, 1e-11 * want);  // double sums in two orders
    Tensor acc2 = Tensor::from_f32(std::vector<float>{0.25f}, {1}, DType::F64).to_device(Device::CUDA);
    gpu::launch_sum_squares(f32p(vd), n, static_cast<double*>(acc2.data()), nullptr);
    gpu::synchronize();
    EXPECT_EQ(acc2.to_device(Device::CPU).item(), got);  // deterministic

    gpu::launch_scale(f32p(vd), n, 0.37f, nullptr);
    std::vector<float> sw(v);
    for (float& f : sw) f *= 0.37f;
    EXPECT_TRUE(same_bits(download(vd), sw));
  }
}

// ---- batch invariance -----------------------------------------------------------------------

// A row computed alone equals, bit for bit, the same row inside a bigger launch.
TEST(CudaModelOps, RowsAreBatchInvariant) {
  SKIP_WITHOUT_GPU();
  SEEDED();
  const int64_t rows = 37;
  const int64_t picks[] = {0, 17, 36};
  {  // logprobs
    const int64_t vocab = 50257, ld = vocab + 1;
    const auto logits = test::random_normal(size_t(rows * vocab), 5.0f, seed);
    const auto targets = random_ints(size_t(rows), int32_t(vocab), seed + 1);
    Tensor ld_ = upload(logits, rows, vocab, ld, DType::F32), td = upload_i32(targets);
    Tensor lse = poisoned(rows, DType::F32), lp = poisoned(rows, DType::F32);
    gpu::launch_logprobs_forward(f32p(ld_), ld, rows, vocab, 0.9f, i32p(td), f32p(lse), f32p(lp), nullptr);
    const auto all_lse = download(lse), all_lp = download(lp);
    for (int64_t r : picks) {
      Tensor l1 = poisoned(1, DType::F32), p1 = poisoned(1, DType::F32);
      gpu::launch_logprobs_forward(static_cast<float*>(at(ld_, r * ld)), ld, 1, vocab, 0.9f,
                                   static_cast<int32_t*>(at(td, r)), f32p(l1), f32p(p1), nullptr);
      EXPECT_TRUE(same_bits(download(l1), {all_lse[size_t(r)]})) << "row " << r;
      EXPECT_TRUE(same_bits(download(p1), {all_lp[size_t(r)]})) << "row " << r;
    }
  }
  for (const NormCase& c : {NormCase{rows, 1, 1000}, NormCase{rows, 1, 2000}, NormCase{rows, 4, 128}}) {
    SCOPED_TRACE(::testing::Message() << "rmsnorm groups " << c.groups << " dim " << c.dim);
    const int64_t cols = int64_t(c.groups) * c.dim;
    const auto x = rounded(test::random_normal(size_t(rows * cols), 2.0f, seed + 2), DType::BF16);
    const auto w = test::random_normal(size_t(c.dim), 1.0f, seed + 3);
    const auto dy = test::random_normal(size_t(rows * cols), 1.0f, seed + 4);
    Tensor xd = upload(x, rows, cols, cols, DType::BF16), wd = upload(w), gd = upload(dy);
    Tensor yd = poisoned(rows * cols, DType::BF16), rd = poisoned(rows * c.groups, DType::F32);
    Tensor dxd = poisoned(rows * cols, DType::F32);
    gpu::launch_rmsnorm_forward(Elem::BF16, xd.data(), cols, f32p(wd), rows, c.groups, c.dim,
                                1e-6f, Elem::BF16, yd.data(), cols, f32p(rd), nullptr);
    gpu::launch_rmsnorm_backward(Elem::F32, gd.data(), cols, Elem::BF16, xd.data(), cols, f32p(wd),
                                 f32p(rd), rows, c.groups, c.dim, f32p(dxd), cols, false, nullptr,
                                 nullptr);
    const auto all_y = download_bits(yd, rows, cols, cols);
    const auto all_r = download(rd), all_dx = download(dxd);
    for (int64_t r : picks) {
      Tensor y1 = poisoned(cols, DType::BF16), r1 = poisoned(c.groups, DType::F32);
      Tensor dx1 = poisoned(cols, DType::F32);
      gpu::launch_rmsnorm_forward(Elem::BF16, at(xd, r * cols), cols, f32p(wd), 1, c.groups,
                                  c.dim, 1e-6f, Elem::BF16, y1.data(), cols, f32p(r1), nullptr);
      gpu::launch_rmsnorm_backward(Elem::F32, at(gd, r * cols), cols, Elem::BF16, at(xd, r * cols),
                                   cols, f32p(wd), static_cast<float*>(at(rd, r * c.groups)), 1,
                                   c.groups, c.dim, f32p(dx1), cols, false, nullptr, nullptr);
      EXPECT_TRUE(same_bits(download_bits(y1, 1, cols, cols),
                            std::vector<uint32_t>(all_y.begin() + r * cols, all_y.begin() + (r + 1) * cols)));
      EXPECT_TRUE(same_bits(download(r1), std::vector<float>(all_r.begin() + r * c.groups,
                                                             all_r.begin() + (r + 1) * c.groups)));
      EXPECT_TRUE(same_bits(download(dx1), std::vector<float>(all_dx.begin() + r * cols,
                                                              all_dx.begin() + (r + 1) * cols)));
    }
    // dw: deterministic (two runs bitwise equal)
    Tensor dw1 = upload(std::vector<float>(size_t(c.dim), 0.0f)), dw2 = upload(std::vector<float>(size_t(c.dim), 0.0f));
    for (Tensor* dw : {&dw1, &dw2})
      gpu::launch_rmsnorm_backward(Elem::F32, gd.data(), cols, Elem::BF16, xd.data(), cols,
                                   f32p(wd), f32p(rd), rows, c.groups, c.dim, f32p(dxd), cols,
                                   false, f32p(*dw), nullptr);
    EXPECT_TRUE(same_bits(download(dw1), download(dw2)));
  }
}

#endif  // QARL_HAVE_CUDA

}  // namespace
}  // namespace qarl
