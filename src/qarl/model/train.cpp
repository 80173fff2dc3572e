// Training forward (the shared forward, keeping activations) and the hand-written backward.
// Each layer's activations are freed as soon as its backward is done.
#include "qarl/model/train.h"

#include <cmath>
#include <cstring>

#include "qarl/core/error.h"
#include "qarl/kernels/cpu/attention.h"
#include "qarl/kernels/cpu/embedding.h"
#include "qarl/kernels/cpu/linear.h"
#include "qarl/kernels/cpu/log_softmax.h"
#include "qarl/kernels/cpu/rmsnorm.h"
#include "qarl/kernels/cpu/rope.h"
#include "qarl/kernels/cpu/swiglu.h"
#include "qarl/model/forward_impl.h"

namespace qarl::model {

struct TrainActivations {
  detail::Activations a;
  float temperature = 1.0f;
};

TrainForward forward_train(const Model& m, const std::vector<std::vector<int32_t>>& seqs,
                           float temperature) {
  if (!(temperature > 0.0f) || !std::isfinite(temperature))
    throw usage_err("temperature must be a positive number, got {}", temperature);
  auto acts = std::make_shared<TrainActivations>();
  acts->temperature = temperature;
  std::vector<SeqChunk> chunks;
  for (const auto& s : seqs) chunks.push_back(SeqChunk{s.data(), int(s.size()), 0, int(s.size())});
  detail::SelfKV kv(int(chunks.size()));
  kv.set_row_stride(m.kv_dim());
  acts->a.logits = detail::run_forward(m, chunks, kv, &acts->a);
  TrainForward out;
  const int V = m.config().vocab_size;
  out.logprobs.resize(seqs.size());
  for (size_t s = 0; s < seqs.size(); ++s) {
    const int64_t off = acts->a.seq_offset[s];
    for (size_t i = 0; i + 1 < seqs[s].size(); ++i)
      out.logprobs[s].push_back(kernels::token_logprob(acts->a.logits.data() + (off + int64_t(i)) * V,
                                                       V, temperature, seqs[s][i + 1]));
  }
  out.acts = std::move(acts);
  return out;
}

Grads zero_grads(const Model& m) {
  Grads g;
  for (const auto& n : m.param_names()) g[n] = Tensor::zeros(m.param(n).shape(), DType::F32);
  return g;
}

namespace {

float* G(Grads& g, const std::string& name) {
  auto it = g.find(name);
  if (it == g.end()) throw err("gradient map has no '{}' (use zero_grads)", name).tensor(name);
  return it->second.data_as<float>();
}

// STE for a K/V quantizer: pass-through, or zero where |x| > amax.
void quantizer_backward(const quant::TensorQuantizer& q, const float* x, float* g, int64_t n) {
  if (!q.enabled() || q.calibrating() || q.config().pass_through_bwd) return;
  const float amax = q.effective_amax();
  for (int64_t i = 0; i < n; ++i)
    if (!(std::fabs(x[i]) <= amax)) g[i] = 0.0f;
}

void add_into(std::vector<float>& dst, const std::vector<float>& src) {
  for (size_t i = 0; i < dst.size(); ++i) dst[i] += src[i];
}

}  // namespace

const float* train_logits_row(const TrainForward& fwd, int seq, int t) {
  if (!fwd.acts) throw err("train_logits_row(): the activations were already consumed");
  const detail::Activations& A = fwd.acts->a;
  if (seq < 0 || size_t(seq) >= A.seq_len.size() || t < 0 || t + 1 >= A.seq_len[size_t(seq)])
    throw err("train_logits_row(): no position {} in sequence {}", t, seq);
  return A.logits.data() + (A.seq_offset[size_t(seq)] + t) * int64_t(A.logits.size() / A.tokens.size());
}

void backward(const Model& m, TrainForward& fwd, const std::vector<std::vector<float>>& d_logprobs,
              Grads& grads, const std::vector<std::vector<float>>* d_logits) {
  if (!fwd.acts) throw err("backward(): the activations were already consumed");
  detail::Activations& A = fwd.acts->a;
  const float temperature = fwd.acts->temperature;
  const auto& c = m.config();
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int nh = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.head_dim;
  const int64_t qd = m.q_dim(), kd = m.kv_dim(), W = qd + 2 * kd;
  const int64_t R = int64_t(A.tokens.size());
  const float scale = 1.0f / std::sqrt(float(hd));
  if (d_logprobs.size() != A.seq_len.size())
    throw err("backward(): {} gradient rows for {} sequences", d_logprobs.size(), A.seq_len.size());

  // d logits (rows without a target get zero).
  std::vector<float> dlogits(static_cast<size_t>(R * V), 0.0f);
  for (size_t s = 0; s < A.seq_len.size(); ++s) {
    const int T = A.seq_len[s];
    const size_t want = T > 0 ? size_t(T - 1) : 0;
    if (d_logprobs[s].size() != want)
      throw err("backward(): sequence {} has {} logprobs but {} gradients", s, want,
                d_logprobs[s].size());
    for (int i = 0; i + 1 < T; ++i) {
      const int64_t r = A.seq_offset[s] + i;
      const float* lg = A.logits.data() + r * V;
      const float lse = kernels::log_sum_exp_row(lg, V, temperature);
      kernels::token_logprob_backward(lg, V, temperature, A.tokens[size_t(r + 1)], lse,
                                      d_logprobs[s][size_t(i)], dlogits.data() + r * V);
    }
    if (d_logits && s < d_logits->size() && !(*d_logits)[s].empty()) {
      const auto& dl = (*d_logits)[s];
      if (dl.size() != want * size_t(V))
        throw err("backward(): sequence {} has {} logit gradients, expected {}", s, dl.size(),
                  want * size_t(V));
      float* dst = dlogits.data() + A.seq_offset[s] * V;
      for (size_t k = 0; k < dl.size(); ++k) dst[k] += dl[k];
    }
  }
  std::vector<float>().swap(A.logits);
  const std::string head = c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  std::vector<float> dh(static_cast<size_t>(R * H));
  kernels::linear_backward(dlogits.data(), V, A.h_final.data(), H, R, m.param(head).data_as<float>(),
                           V, H, dh.data(), H, G(grads, head), nullptr);
  std::vector<float>().swap(dlogits);
  std::vector<float> dx(static_cast<size_t>(R * H));
  kernels::rmsnorm_backward(dh.data(), A.x_final.data(), m.final_norm(), A.rstd_f.data(), R, H, H,
                            dx.data(), G(grads, "model.norm.weight"));
  std::vector<float>().swap(A.x_final);
  std::vector<float>().swap(A.h_final);

  for (int l = c.num_hidden_layers - 1; l >= 0; --l) {
    detail::LayerActs& L = A.layers[size_t(l)];
    const std::string p = fmt::format("model.layers.{}.", l);
    auto P = [&](const std::string& n) { return m.param(p + n).data_as<float>(); };
    auto Gp = [&](const std::string& n) { return G(grads, p + n); };
    auto Gb = [&](const std::string& n) { return m.has_param(p + n) ? G(grads, p + n) : nullptr; };
    // MLP: x = x_mid + down(swiglu(gate_up(norm(x_mid))))
    std::vector<float> dact(static_cast<size_t>(R * I));
    kernels::linear_backward(dx.data(), H, L.act.data(), I, R, P("mlp.down_proj.weight"), H, I,
                             dact.data(), I, Gp("mlp.down_proj.weight"), nullptr);
    std::vector<float> dgu(static_cast<size_t>(R * 2 * I));
    kernels::swiglu_backward(dact.data(), L.gu.data(), R, I, dgu.data());
    std::vector<float>().swap(dact);
    std::vector<float> dh2(static_cast<size_t>(R * H)), tmp(static_cast<size_t>(R * H));
    kernels::linear_backward(dgu.data(), 2 * I, L.h2.data(), H, R, P("mlp.gate_proj.weight"), I, H,
                             dh2.data(), H, Gp("mlp.gate_proj.weight"), nullptr);
    kernels::linear_backward(dgu.data() + I, 2 * I, L.h2.data(), H, R, P("mlp.up_proj.weight"), I,
                             H, tmp.data(), H, Gp("mlp.up_proj.weight"), nullptr);
    add_into(dh2, tmp);
    std::vector<float>().swap(dgu);
    kernels::rmsnorm_backward(dh2.data(), L.x_mid.data(), P("post_attention_layernorm.weight"),
                              L.rstd2.data(), R, H, H, tmp.data(),
                              Gp("post_attention_layernorm.weight"));
    add_into(dx, tmp);  // dx is now d x_mid
    for (auto* v : {&L.gu, &L.act, &L.h2, &L.x_mid, &L.rstd2}) std::vector<float>().swap(*v);

    // Attention: x_mid = x_in + o_proj(attn(...))
    std::vector<float> dattn(static_cast<size_t>(R * qd));
    kernels::linear_backward(dx.data(), H, L.attn.data(), qd, R, P("self_attn.o_proj.weight"), H,
                             qd, dattn.data(), qd, Gp("self_attn.o_proj.weight"),
                             Gb("self_attn.o_proj.bias"));
    std::vector<float> q(static_cast<size_t>(R * qd)), dq(static_cast<size_t>(R * qd)), dk(static_cast<size_t>(R * kd)), dv(static_cast<size_t>(R * kd));
    for (int64_t r = 0; r < R; ++r)
      std::memcpy(q.data() + r * qd, L.qkv.data() + r * W, sizeof(float) * size_t(qd));
    for (size_t s = 0; s < A.seq_len.size(); ++s) {
      const int64_t o = A.seq_offset[s];
      const int T = A.seq_len[s];
      if (T == 0) continue;
      kernels::attention_backward(q.data() + o * qd, L.k.data() + o * kd, L.v.data() + o * kd,
                                  L.attn.data() + o * qd, dattn.data() + o * qd,
                                  L.lse.data() + o * nh, T, nh, nkv, hd, scale, dq.data() + o * qd,
                                  dk.data() + o * kd, dv.data() + o * kd);
    }
    for (auto* v : {&dattn, &q, &L.attn, &L.lse, &L.k, &L.v}) std::vector<float>().swap(*v);
    // Back through the K/V quantizers (STE), into one [R, W] gradient.
    std::vector<float> dqkv(static_cast<size_t>(R * W));
    std::vector<float> kin(static_cast<size_t>(kd)), vin(static_cast<size_t>(kd));
    for (int64_t r = 0; r < R; ++r) {
      float* drow = dqkv.data() + r * W;
      std::memcpy(drow, dq.data() + r * qd, sizeof(float) * size_t(qd));
      std::memcpy(drow + qd, dk.data() + r * kd, sizeof(float) * size_t(kd));
      std::memcpy(drow + qd + kd, dv.data() + r * kd, sizeof(float) * size_t(kd));
      quantizer_backward(m.k_quantizer(l), L.qkv.data() + r * W + qd, drow + qd, kd);
      quantizer_backward(m.v_quantizer(l), L.qkv.data() + r * W + qd + kd, drow + qd + kd, kd);
    }
    for (auto* v : {&dq, &dk, &dv, &L.qkv}) std::vector<float>().swap(*v);
    kernels::rope_backward(dqkv.data(), R, W, nh, hd, A.positions.data(), m.rope_inv_freq().data());
    kernels::rope_backward(dqkv.data() + qd, R, W, nkv, hd, A.positions.data(),
                           m.rope_inv_freq().data());
    if (c.qk_norm) {
      // Rows in order (the norm weights' gradient sums over all rows).
      float* gq = Gp("self_attn.q_norm.weight");
      float* gk = Gp("self_attn.k_norm.weight");
      std::vector<float> g(static_cast<size_t>(W));
      for (int64_t r = 0; r < R; ++r) {
        float* drow = dqkv.data() + r * W;
        const float* xin = L.qkv_lin.data() + r * W;
        kernels::rmsnorm_backward(drow, xin, P("self_attn.q_norm.weight"), L.q_rstd.data() + r * nh,
                                  nh, hd, hd, g.data(), gq);
        kernels::rmsnorm_backward(drow + qd, xin + qd, P("self_attn.k_norm.weight"),
                                  L.k_rstd.data() + r * nkv, nkv, hd, hd, g.data() + qd, gk);
        std::memcpy(drow, g.data(), sizeof(float) * size_t(qd + kd));
      }
      for (auto* v : {&L.qkv_lin, &L.q_rstd, &L.k_rstd}) std::vector<float>().swap(*v);
    }
    std::vector<float> dh1(static_cast<size_t>(R * H), 0.0f);
    const char* proj[3] = {"q_proj", "k_proj", "v_proj"};
    const int64_t col[3] = {0, qd, qd + kd}, rows_out[3] = {qd, kd, kd};
    for (int j = 0; j < 3; ++j) {
      const std::string n = std::string("self_attn.") + proj[j];
      kernels::linear_backward(dqkv.data() + col[j], W, L.h1.data(), H, R, P(n + ".weight"),
                               rows_out[j], H, tmp.data(), H, Gp(n + ".weight"), Gb(n + ".bias"));
      add_into(dh1, tmp);
    }
    std::vector<float>().swap(dqkv);
    kernels::rmsnorm_backward(dh1.data(), L.x_in.data(), P("input_layernorm.weight"), L.rstd1.data(),
                              R, H, H, tmp.data(), Gp("input_layernorm.weight"));
    add_into(dx, tmp);
    L = detail::LayerActs{};
  }
  kernels::embedding_backward(dx.data(), H, A.tokens.data(), R, G(grads, "model.embed_tokens.weight"));
  fwd.acts.reset();
}

}  // namespace qarl::model
