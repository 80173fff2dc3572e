// The forward pass (see forward.h). Rows of all chunks are packed into one [R, H] matrix;
// every op is row-local with a fixed per-row order, except attention, which reads each
// sequence's keys through its KVView in absolute key order.
#include <algorithm>
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
namespace detail {

void SelfKV::write(int, int seq, int pos, int, const float* k, const float* v) {
  QARL_ASSERT(pos == 0, "SelfKV serves chunks starting at position 0, got {}", pos);
  k_[size_t(seq)] = k;
  v_[size_t(seq)] = v;
}

KVView SelfKV::view(int, int seq, int n_tokens) {
  KVView w;
  w.block_size = std::max(n_tokens, 1);
  w.n_tokens = n_tokens;
  w.row_stride = stride_;
  w.k_blocks = &k_[size_t(seq)];
  w.v_blocks = &v_[size_t(seq)];
  return w;
}

namespace {

// K/V quantizer on a [rows, cols] fp32 buffer (in place). Calibrating quantizers record
// their amax (state change, hence the const_cast: calibration is a forward with a side effect).
void apply_quantizer(const quant::TensorQuantizer& q, float* x, int64_t rows, int64_t cols) {
  if (!q.enabled() || rows == 0) return;
  auto& mq = const_cast<quant::TensorQuantizer&>(q);
  Tensor t = Tensor::borrow(x, {rows, cols}, DType::F32, nullptr);
  mq.forward_(t);
}

}  // namespace

std::vector<float> run_forward(const Model& m, std::span<const SeqChunk> chunks, KVStore& kv,
                               Activations* acts) {
  const auto& c = m.config();
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int nh = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.head_dim;
  const int64_t qd = m.q_dim(), kd = m.kv_dim(), W = qd + 2 * kd;
  const float eps = float(c.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(float(hd));

  // Pack the rows.
  std::vector<int> offset(chunks.size()), n_logit_rows;
  int64_t R = 0, n_logits = 0;
  for (size_t s = 0; s < chunks.size(); ++s) {
    const SeqChunk& ch = chunks[s];
    if (ch.n_new < 0 || ch.start_pos < 0 || ch.n_logits < 0 || ch.n_logits > ch.n_new)
      throw err("chunk {}: invalid sizes (n_new {}, start_pos {}, n_logits {})", s, ch.n_new,
                ch.start_pos, ch.n_logits);
    offset[s] = int(R);
    R += ch.n_new;
    n_logits += acts ? ch.n_new : ch.n_logits;
  }
  std::vector<int32_t> tokens(static_cast<size_t>(R)), positions(static_cast<size_t>(R));
  std::vector<int> row_chunk(static_cast<size_t>(R));
  for (size_t s = 0; s < chunks.size(); ++s)
    for (int i = 0; i < chunks[s].n_new; ++i) {
      const int32_t t = chunks[s].tokens[i];
      if (t < 0 || t >= c.vocab_size)
        throw err("token id {} at position {} of sequence {} is outside the vocabulary [0, {})",
                  t, chunks[s].start_pos + i, s, c.vocab_size);
      tokens[size_t(offset[s] + i)] = t;
      positions[size_t(offset[s] + i)] = chunks[s].start_pos + i;
      row_chunk[size_t(offset[s] + i)] = int(s);
    }
  m.check_kv_quantizers();

  LayerActs scratch;
  std::vector<float> x(static_cast<size_t>(R * H));
  kernels::embedding_forward(m.embed(), H, tokens.data(), R, x.data());
  if (acts) {
    acts->layers.assign(static_cast<size_t>(c.num_hidden_layers), LayerActs{});
    acts->tokens = tokens;
    acts->positions = positions;
    acts->seq_offset = offset;
    acts->seq_len.clear();
    for (const auto& ch : chunks) acts->seq_len.push_back(ch.n_new);
  }
  std::vector<KVView> views(chunks.size());

  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& Lw = m.layer(l);
    LayerActs& A = acts ? acts->layers[size_t(l)] : scratch;
    if (acts) A.x_in = x;
    A.rstd1.resize(static_cast<size_t>(R));
    A.h1.resize(static_cast<size_t>(R * H));
    kernels::rmsnorm_forward(x.data(), Lw.input_norm, R, H, H, eps, A.h1.data(), A.rstd1.data());
    A.qkv.resize(static_cast<size_t>(R * W));
    kernels::linear_forward(A.h1.data(), H, R, Lw.qkv, Lw.qkv_bias, A.qkv.data(), W);
    if (c.qk_norm) {
      if (acts) A.qkv_lin = A.qkv;
      A.q_rstd.resize(static_cast<size_t>(R * nh));
      A.k_rstd.resize(static_cast<size_t>(R * nkv));
#pragma omp parallel for schedule(static) if (R > 16)
      for (int64_t r = 0; r < R; ++r) {
        float* row = A.qkv.data() + r * W;
        kernels::rmsnorm_forward(row, Lw.q_norm, nh, hd, hd, eps, row, A.q_rstd.data() + r * nh);
        kernels::rmsnorm_forward(row + qd, Lw.k_norm, nkv, hd, hd, eps, row + qd,
                                 A.k_rstd.data() + r * nkv);
      }
    }
    kernels::rope_forward(A.qkv.data(), R, W, nh, hd, positions.data(), m.rope_inv_freq().data());
    kernels::rope_forward(A.qkv.data() + qd, R, W, nkv, hd, positions.data(),
                          m.rope_inv_freq().data());
    A.k.resize(static_cast<size_t>(R * kd));
    A.v.resize(static_cast<size_t>(R * kd));
    for (int64_t r = 0; r < R; ++r) {
      std::memcpy(A.k.data() + r * kd, A.qkv.data() + r * W + qd, sizeof(float) * size_t(kd));
      std::memcpy(A.v.data() + r * kd, A.qkv.data() + r * W + qd + kd, sizeof(float) * size_t(kd));
    }
    if (kv.wants_unquantized())  // native K/V caches encode from the unquantized rows
      for (size_t s = 0; s < chunks.size(); ++s)
        if (chunks[s].n_new > 0)
          kv.write_unquantized(l, int(s), chunks[s].start_pos, chunks[s].n_new,
                               A.k.data() + offset[s] * kd, A.v.data() + offset[s] * kd);
    apply_quantizer(m.k_quantizer(l), A.k.data(), R, kd);
    apply_quantizer(m.v_quantizer(l), A.v.data(), R, kd);
    for (size_t s = 0; s < chunks.size(); ++s)
      if (chunks[s].n_new > 0)
        kv.write(l, int(s), chunks[s].start_pos, chunks[s].n_new, A.k.data() + offset[s] * kd,
                 A.v.data() + offset[s] * kd);
    for (size_t s = 0; s < chunks.size(); ++s)
      if (chunks[s].n_new > 0) views[s] = kv.view(l, int(s), chunks[s].start_pos + chunks[s].n_new);

    A.attn.resize(static_cast<size_t>(R * qd));
    A.lse.resize(static_cast<size_t>(R * nh));
    const int group = nh / nkv;
    const int64_t work = R * nh;
#pragma omp parallel for schedule(dynamic, 4) if (work > 8)
    for (int64_t w = 0; w < work; ++w) {
      const int64_t r = w / nh;
      const int h = int(w % nh);
      const int s = row_chunk[size_t(r)];
      kernels::attention_row(A.qkv.data() + r * W + int64_t(h) * hd, views[size_t(s)], h / group,
                             positions[size_t(r)] + 1, hd, scale,
                             A.attn.data() + r * qd + int64_t(h) * hd, A.lse.data() + w);
    }
    // o_proj + residual
    std::vector<float> tmp(static_cast<size_t>(R * H));
    kernels::linear_forward(A.attn.data(), qd, R, Lw.o, Lw.o_bias, tmp.data(), H);
    for (int64_t i = 0; i < R * H; ++i) x[size_t(i)] += tmp[size_t(i)];
    if (acts) A.x_mid = x;
    A.rstd2.resize(static_cast<size_t>(R));
    A.h2.resize(static_cast<size_t>(R * H));
    kernels::rmsnorm_forward(x.data(), Lw.post_norm, R, H, H, eps, A.h2.data(), A.rstd2.data());
    A.gu.resize(static_cast<size_t>(R * 2 * I));
    kernels::linear_forward(A.h2.data(), H, R, Lw.gate_up, nullptr, A.gu.data(), 2 * I);
    A.act.resize(static_cast<size_t>(R * I));
    kernels::swiglu_forward(A.gu.data(), R, I, A.act.data());
    kernels::linear_forward(A.act.data(), I, R, Lw.down, nullptr, tmp.data(), H);
    for (int64_t i = 0; i < R * H; ++i) x[size_t(i)] += tmp[size_t(i)];
  }

  // Final norm + lm_head on the rows that need logits.
  std::vector<float> sel(static_cast<size_t>(n_logits * H));
  std::vector<float> rstd(static_cast<size_t>(n_logits));
  {
    int64_t at = 0;
    for (size_t s = 0; s < chunks.size(); ++s) {
      const int nl = acts ? chunks[s].n_new : chunks[s].n_logits;
      const int first = offset[s] + chunks[s].n_new - nl;
      std::memcpy(sel.data() + at * H, x.data() + int64_t(first) * H, sizeof(float) * size_t(nl * H));
      at += nl;
    }
  }
  std::vector<float> hf(static_cast<size_t>(n_logits * H));
  kernels::rmsnorm_forward(sel.data(), m.final_norm(), n_logits, H, H, eps, hf.data(), rstd.data());
  std::vector<float> logits(static_cast<size_t>(n_logits * V));
  kernels::linear_forward(hf.data(), H, n_logits, m.lm_head(), nullptr, logits.data(), V);
  if (acts) {
    acts->x_final = std::move(sel);
    acts->rstd_f = std::move(rstd);
    acts->h_final = std::move(hf);
  }
  return logits;
}

}  // namespace detail

std::vector<float> forward_tokens(const Model& m, std::span<const SeqChunk> chunks, KVStore& kv) {
  return detail::run_forward(m, chunks, kv, nullptr);
}

float token_logprob(const float* logits, int vocab, float temperature, int token) {
  return kernels::token_logprob(logits, vocab, temperature, token);
}
void log_softmax_row(const float* logits, int vocab, float temperature, float* out) {
  kernels::log_softmax_row(logits, vocab, temperature, out);
}

std::vector<std::vector<float>> score_sequences(const Model& m,
                                                const std::vector<std::vector<int32_t>>& seqs,
                                                float temperature) {
  if (!(temperature > 0.0f) || !std::isfinite(temperature))
    throw usage_err("temperature must be a positive number, got {}", temperature);
  std::vector<std::vector<float>> out(seqs.size());
  const int V = m.config().vocab_size;
  // Groups of sequences up to ~1024 rows per forward (results do not depend on grouping; the
  // logits of a group are [rows, vocab] fp32, 0.6 GB at a 152k vocabulary).
  size_t s0 = 0;
  while (s0 < seqs.size()) {
    size_t s1 = s0;
    int64_t rows = 0;
    while (s1 < seqs.size() && (s1 == s0 || rows + int64_t(seqs[s1].size()) <= 1024))
      rows += int64_t(seqs[s1++].size());
    std::vector<SeqChunk> chunks;
    for (size_t s = s0; s < s1; ++s)
      chunks.push_back(SeqChunk{seqs[s].data(), int(seqs[s].size()), 0, int(seqs[s].size())});
    detail::SelfKV kv(int(chunks.size()));
    kv.set_row_stride(m.kv_dim());
    std::vector<float> logits = forward_tokens(m, chunks, kv);
    int64_t at = 0;
    for (size_t s = s0; s < s1; ++s) {
      const auto& t = seqs[s];
      for (size_t i = 0; i + 1 < t.size(); ++i)
        out[s].push_back(token_logprob(logits.data() + (at + int64_t(i)) * V, V, temperature, t[i + 1]));
      at += int64_t(t.size());
    }
    s0 = s1;
  }
  return out;
}

}  // namespace qarl::model
