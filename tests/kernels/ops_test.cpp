// Forward references and finite-difference gradient checks for the CPU ops.
#include <cmath>
#include <cstring>
#include <limits>

#include <gtest/gtest.h>

#include "kernels/fd_util.h"
#include "qarl/kernels/cpu/attention.h"
#include "qarl/kernels/cpu/embedding.h"
#include "qarl/kernels/cpu/linear.h"
#include "qarl/kernels/cpu/log_softmax.h"
#include "qarl/kernels/cpu/rmsnorm.h"
#include "qarl/kernels/cpu/rope.h"
#include "qarl/kernels/cpu/swiglu.h"
#include "test_util.h"

namespace qarl::kernels {
namespace {

using test::random_normal;

TEST(RMSNorm, ForwardMatchesDoubleReferenceAndGradients) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t rows = 5, dim = 37;
  auto x = random_normal(static_cast<size_t>(rows * dim), 1.0f, seed);
  auto w = random_normal(static_cast<size_t>(dim), 1.0f, seed + 1);
  std::vector<float> y(x.size(), NAN), rstd(static_cast<size_t>(rows), NAN);
  rmsnorm_forward(x.data(), w.data(), rows, dim, dim, 1e-6f, y.data(), rstd.data());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(x[size_t(r * dim + i)]) * x[size_t(r * dim + i)];
    const double rs = 1.0 / std::sqrt(ss / dim + 1e-6);
    for (int64_t i = 0; i < dim; ++i)
      EXPECT_NEAR(y[size_t(r * dim + i)], w[size_t(i)] * x[size_t(r * dim + i)] * rs, 1e-5);
  }
  auto g = random_normal(x.size(), 1.0f, seed + 2);
  std::vector<float> dx(x.size(), NAN), dw(static_cast<size_t>(dim), 0.0f);
  rmsnorm_backward(g.data(), x.data(), w.data(), rstd.data(), rows, dim, dim, dx.data(), dw.data());
  auto f_x = [&](const std::vector<float>& xx) {
    std::vector<float> yy(xx.size());
    rmsnorm_forward(xx.data(), w.data(), rows, dim, dim, 1e-6f, yy.data(), nullptr);
    return test::dot(yy, g);
  };
  test::expect_directional_derivative(f_x, x, dx, random_normal(x.size(), 1.0f, seed + 3), 1e-2, 2e-3);
  auto f_w = [&](const std::vector<float>& ww) {
    std::vector<float> yy(x.size());
    rmsnorm_forward(x.data(), ww.data(), rows, dim, dim, 1e-6f, yy.data(), nullptr);
    return test::dot(yy, g);
  };
  test::expect_directional_derivative(f_w, w, dw, random_normal(w.size(), 1.0f, seed + 4), 1e-2, 2e-3);
}

TEST(Linear, ForwardAndGradients) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t rows = 6, in = 29, out = 35;
  auto x = random_normal(static_cast<size_t>(rows * in), 1.0f, seed);
  auto W = random_normal(static_cast<size_t>(out * in), 0.3f, seed + 1);
  auto b = random_normal(static_cast<size_t>(out), 1.0f, seed + 2);
  auto fwd = [&](const std::vector<float>& xx, const std::vector<float>& WW, const std::vector<float>& bb) {
    PackedB P;
    pack_b_from_nk(WW.data(), out, in, P);
    std::vector<float> y(static_cast<size_t>(rows * out), NAN);
    linear_forward(xx.data(), in, rows, P, bb.data(), y.data(), out);
    return y;
  };
  auto y = fwd(x, W, b);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < out; ++j) {
      double s = b[size_t(j)];
      for (int64_t k = 0; k < in; ++k) s += double(x[size_t(r * in + k)]) * W[size_t(j * in + k)];
      EXPECT_NEAR(y[size_t(r * out + j)], s, 1e-4);
    }
  auto g = random_normal(y.size(), 1.0f, seed + 3);
  std::vector<float> dx(x.size(), NAN), dW(W.size(), 0.0f), db(b.size(), 0.0f);
  linear_backward(g.data(), out, x.data(), in, rows, W.data(), out, in, dx.data(), in, dW.data(), db.data());
  test::expect_directional_derivative([&](const std::vector<float>& v) { return test::dot(fwd(v, W, b), g); },
                                      x, dx, random_normal(x.size(), 1.0f, seed + 4), 1e-2, 1e-3);
  test::expect_directional_derivative([&](const std::vector<float>& v) { return test::dot(fwd(x, v, b), g); },
                                      W, dW, random_normal(W.size(), 1.0f, seed + 5), 1e-2, 1e-3);
  test::expect_directional_derivative([&](const std::vector<float>& v) { return test::dot(fwd(x, W, v), g); },
                                      b, db, random_normal(b.size(), 1.0f, seed + 6), 1e-2, 1e-3);
}

TEST(Rope, RotatesHalvesAndBackwardIsTheAdjoint) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int rows = 4, heads = 3, hd = 10;
  auto inv = rope_inv_freq(hd, 10000.0, {});
  EXPECT_FLOAT_EQ(inv[0], 1.0f);
  EXPECT_NEAR(inv[1], 1.0 / std::pow(10000.0, 0.2), 1e-7);
  std::vector<int32_t> pos = {0, 3, 17, 100};
  auto x = random_normal(static_cast<size_t>(rows * heads * hd), 1.0f, seed);
  auto y = x;
  rope_forward(y.data(), rows, heads * hd, heads, hd, pos.data(), inv.data());
  for (int r = 0; r < rows; ++r)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < hd / 2; ++i) {
        const double a = double(float(pos[size_t(r)]) * inv[size_t(i)]);
        const size_t o = size_t(r * heads * hd + h * hd);
        const double x1 = x[o + size_t(i)], x2 = x[o + size_t(i + hd / 2)];
        EXPECT_NEAR(y[o + size_t(i)], x1 * std::cos(a) - x2 * std::sin(a), 1e-5);
        EXPECT_NEAR(y[o + size_t(i + hd / 2)], x2 * std::cos(a) + x1 * std::sin(a), 1e-5);
      }
  auto g = random_normal(x.size(), 1.0f, seed + 1);
  auto dx = g;
  rope_backward(dx.data(), rows, heads * hd, heads, hd, pos.data(), inv.data());
  EXPECT_NEAR(test::dot(y, g), test::dot(x, dx), 1e-4);
}

TEST(Rope, Llama3ScalingFollowsTransformers) {
  // Values transformers 5.17 computed for head_dim 16, theta 1e4, factor 8, low 1, high 4,
  // original context 16 (tests/data/model/reference.json, llama inv_freq).
  RopeScalingParams s;
  s.llama3 = true;
  s.factor = 8;
  s.low_freq_factor = 1;
  s.high_freq_factor = 4;
  s.original_max_position_embeddings = 16;
  auto inv = rope_inv_freq(16, 10000.0, s);
  const double want[8] = {0.5760563611984253, 0.03952847048640251, 0.012500000186264515,
                          0.0039528473280370235, 0.0012499999720603228, 0.00039528473280370235,
                          0.0001250000059371814, 3.9528473280370235e-05};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(inv[size_t(i)], want[i], 1e-7 * want[i] + 1e-12) << i;
}

TEST(SwiGLU, ForwardAndGradient) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t rows = 3, inter = 23;
  auto gu = random_normal(static_cast<size_t>(rows * 2 * inter), 2.0f, seed);
  std::vector<float> h(static_cast<size_t>(rows * inter), NAN);
  swiglu_forward(gu.data(), rows, inter, h.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < inter; ++i) {
      const double g = gu[size_t(r * 2 * inter + i)], u = gu[size_t(r * 2 * inter + inter + i)];
      EXPECT_NEAR(h[size_t(r * inter + i)], g / (1 + std::exp(-g)) * u, 1e-5);
    }
  auto dh = random_normal(h.size(), 1.0f, seed + 1);
  std::vector<float> dgu(gu.size(), NAN);
  swiglu_backward(dh.data(), gu.data(), rows, inter, dgu.data());
  test::expect_directional_derivative(
      [&](const std::vector<float>& v) {
        std::vector<float> hh(h.size());
        swiglu_forward(v.data(), rows, inter, hh.data());
        return test::dot(hh, dh);
      },
      gu, dgu, random_normal(gu.size(), 1.0f, seed + 2), 1e-2, 2e-3);
}

TEST(LogSoftmax, TokenLogprobTemperatureAndGradients) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t V = 301;
  auto z = random_normal(static_cast<size_t>(V), 3.0f, seed);
  for (float T : {1.0f, 0.7f, 1.5f}) {
    double m = -1e30, s = 0;
    for (auto v : z) m = std::max(m, double(v) / T);
    for (auto v : z) s += std::exp(double(v) / T - m);
    const double lse = m + std::log(s);
    EXPECT_NEAR(token_logprob(z.data(), V, T, 17), double(z[17]) / T - lse, 1e-5);
    std::vector<float> row(static_cast<size_t>(V));
    log_softmax_row(z.data(), V, T, row.data());
    EXPECT_EQ(row[17], token_logprob(z.data(), V, T, 17));  // one definition
    std::vector<float> dz(static_cast<size_t>(V), NAN);
    token_logprob_backward(z.data(), V, T, 17, log_sum_exp_row(z.data(), V, T), 0.8f, dz.data());
    test::expect_directional_derivative(
        [&](const std::vector<float>& v) { return 0.8 * token_logprob(v.data(), V, T, 17); }, z, dz,
        random_normal(z.size(), 1.0f, seed + 1), 1e-2, 2e-3);
  }
  // Cross-entropy over rows.
  const int64_t rows = 4;
  auto L = random_normal(static_cast<size_t>(rows * V), 2.0f, seed + 2);
  std::vector<int32_t> tg = {0, 5, 300, 77};
  std::vector<float> dL(L.size(), NAN);
  cross_entropy_backward(L.data(), rows, V, tg.data(), 1.3f, dL.data());
  test::expect_directional_derivative(
      [&](const std::vector<float>& v) { return 1.3 * cross_entropy_forward(v.data(), rows, V, tg.data()); },
      L, dL, random_normal(L.size(), 1.0f, seed + 3), 1e-2, 2e-3);
}

TEST(Embedding, LookupAndScatterBackward) {
  const int64_t V = 11, dim = 6;
  auto table = random_normal(static_cast<size_t>(V * dim), 1.0f, test::fresh_seed());
  std::vector<int32_t> tok = {3, 0, 3, 10};
  std::vector<float> out(tok.size() * size_t(dim), NAN);
  embedding_forward(table.data(), dim, tok.data(), 4, out.data());
  for (size_t r = 0; r < tok.size(); ++r)
    for (int64_t i = 0; i < dim; ++i) EXPECT_EQ(out[r * size_t(dim) + size_t(i)], table[size_t(tok[r] * dim + i)]);
  std::vector<float> g(out.size());
  for (size_t i = 0; i < g.size(); ++i) g[i] = float(i);
  std::vector<float> dt(table.size(), 0.0f);
  embedding_backward(g.data(), dim, tok.data(), 4, dt.data());
  EXPECT_EQ(dt[size_t(3 * dim + 1)], g[1] + g[size_t(2 * dim + 1)]);
  EXPECT_EQ(dt[size_t(10 * dim + 5)], g[size_t(3 * dim + 5)]);
  EXPECT_EQ(dt[size_t(1 * dim)], 0.0f);
}

// Naive causal GQA attention in double.
std::vector<double> attention_naive(const std::vector<float>& q, const std::vector<float>& k,
                                    const std::vector<float>& v, int T, int nh, int nkv, int hd) {
  std::vector<double> out(static_cast<size_t>(T * nh * hd));
  const double scale = 1.0 / std::sqrt(double(hd));
  for (int i = 0; i < T; ++i)
    for (int h = 0; h < nh; ++h) {
      const int g = h / (nh / nkv);
      std::vector<double> s(static_cast<size_t>(i + 1));
      double m = -1e300;
      for (int j = 0; j <= i; ++j) {
        double d = 0;
        for (int e = 0; e < hd; ++e) d += double(q[size_t((i * nh + h) * hd + e)]) * k[size_t((j * nkv + g) * hd + e)];
        s[size_t(j)] = d * scale;
        m = std::max(m, s[size_t(j)]);
      }
      double l = 0;
      for (auto& x : s) l += (x = std::exp(x - m));
      for (int e = 0; e < hd; ++e) {
        double acc = 0;
        for (int j = 0; j <= i; ++j) acc += s[size_t(j)] * v[size_t((j * nkv + g) * hd + e)];
        out[size_t((i * nh + h) * hd + e)] = acc / l;
      }
    }
  return out;
}

struct Contig {
  const float* kp;
  const float* vp;
  model::KVView view(int T, int64_t stride) const {
    model::KVView w;
    w.block_size = T;
    w.n_tokens = T;
    w.row_stride = stride;
    w.k_blocks = &kp;
    w.v_blocks = &vp;
    return w;
  }
};

TEST(Attention, MatchesNaiveAndPagedViewsAreBitwiseEqual) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int T = 37, nh = 6, nkv = 2, hd = 12;
  auto q = random_normal(static_cast<size_t>(T * nh * hd), 1.0f, seed);
  auto k = random_normal(static_cast<size_t>(T * nkv * hd), 1.0f, seed + 1);
  auto v = random_normal(static_cast<size_t>(T * nkv * hd), 1.0f, seed + 2);
  const float scale = 1.0f / std::sqrt(float(hd));
  Contig c{k.data(), v.data()};
  auto view = c.view(T, nkv * hd);
  std::vector<float> out(q.size(), NAN), lse(static_cast<size_t>(T * nh), NAN);
  attention_forward(q.data(), nh * hd, T, 0, view, nh, nkv, hd, scale, out.data(), nh * hd, lse.data());
  auto ref = attention_naive(q, k, v, T, nh, nkv, hd);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 2e-5) << i;
  // Paged: blocks of 5 tokens scattered in a pool, and decode one query at a time.
  const int bs = 5, nb = (T + bs - 1) / bs;
  std::vector<float> pool_k(static_cast<size_t>(nb * bs * nkv * hd) * 2, NAN), pool_v(pool_k.size(), NAN);
  std::vector<const float*> kb(static_cast<size_t>(nb)), vb(static_cast<size_t>(nb));
  for (int b = 0; b < nb; ++b) {
    const int slot = (b * 7) % (2 * nb);  // permuted block placement
    kb[size_t(b)] = pool_k.data() + size_t(slot * bs * nkv * hd);
    vb[size_t(b)] = pool_v.data() + size_t(slot * bs * nkv * hd);
  }
  for (int t = 0; t < T; ++t) {
    std::memcpy(const_cast<float*>(kb[size_t(t / bs)]) + (t % bs) * nkv * hd, k.data() + t * nkv * hd, sizeof(float) * nkv * hd);
    std::memcpy(const_cast<float*>(vb[size_t(t / bs)]) + (t % bs) * nkv * hd, v.data() + t * nkv * hd, sizeof(float) * nkv * hd);
  }
  for (int t = 0; t < T; ++t) {
    model::KVView pv;
    pv.block_size = bs;
    pv.n_tokens = t + 1;
    pv.row_stride = nkv * hd;
    pv.k_blocks = kb.data();
    pv.v_blocks = vb.data();
    std::vector<float> o1(static_cast<size_t>(nh * hd), NAN);
    attention_forward(q.data() + t * nh * hd, nh * hd, 1, t, pv, nh, nkv, hd, scale, o1.data(), nh * hd, nullptr);
    ASSERT_EQ(0, std::memcmp(o1.data(), out.data() + t * nh * hd, o1.size() * sizeof(float))) << "token " << t;
  }
}

TEST(Attention, BackwardFiniteDifferences) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int T = 21, nh = 4, nkv = 2, hd = 8;
  const float scale = 1.0f / std::sqrt(float(hd));
  auto q = random_normal(static_cast<size_t>(T * nh * hd), 1.0f, seed);
  auto k = random_normal(static_cast<size_t>(T * nkv * hd), 1.0f, seed + 1);
  auto v = random_normal(static_cast<size_t>(T * nkv * hd), 1.0f, seed + 2);
  auto g = random_normal(q.size(), 1.0f, seed + 3);
  auto run = [&](const std::vector<float>& qq, const std::vector<float>& kk, const std::vector<float>& vv,
                 std::vector<float>* lse) {
    Contig c{kk.data(), vv.data()};
    std::vector<float> o(qq.size());
    if (lse) lse->resize(static_cast<size_t>(T * nh));
    attention_forward(qq.data(), nh * hd, T, 0, c.view(T, nkv * hd), nh, nkv, hd, scale, o.data(), nh * hd,
                      lse ? lse->data() : nullptr);
    return o;
  };
  std::vector<float> lse;
  auto o = run(q, k, v, &lse);
  std::vector<float> dq(q.size(), NAN), dk(k.size(), NAN), dv(v.size(), NAN);
  attention_backward(q.data(), k.data(), v.data(), o.data(), g.data(), lse.data(), T, nh, nkv, hd, scale,
                     dq.data(), dk.data(), dv.data());
  test::expect_directional_derivative([&](const std::vector<float>& x) { return test::dot(run(x, k, v, nullptr), g); },
                                      q, dq, random_normal(q.size(), 1.0f, seed + 4), 1e-2, 3e-3);
  test::expect_directional_derivative([&](const std::vector<float>& x) { return test::dot(run(q, x, v, nullptr), g); },
                                      k, dk, random_normal(k.size(), 1.0f, seed + 5), 1e-2, 3e-3);
  test::expect_directional_derivative([&](const std::vector<float>& x) { return test::dot(run(q, k, x, nullptr), g); },
                                      v, dv, random_normal(v.size(), 1.0f, seed + 6), 1e-2, 3e-3);
}

}  // namespace
}  // namespace qarl::kernels
