// GpuModel::forward: the one forward definition of the GPU model (see gpu_model.h). Rows of
// all chunks are packed into [R, .] matrices; every op is row-local (and batch invariant in
// exact mode) except attention, which reads each sequence's keys from the paged cache in
// absolute key order.
#include <cmath>
#include <cstring>

#include <cuda_runtime.h>

#include "qarl/core/error.h"
#include "qarl/gpu/forward_internal.h"
#include "qarl/gpu/gpu_model.h"
#include "qarl/gpu/paged_cache.h"
#include "qarl/gpu/section_timer.h"
#include "qarl/gpu/train_state.h"
#include "qarl/kernels/cuda/attention_gpu.h"
#include "qarl/kernels/cuda/attention_internal.h"
#include "qarl/kernels/cuda/fake_quant.h"
#include "qarl/kernels/cuda/gemm.h"
#include "qarl/kernels/cuda/model_ops.h"

namespace qarl::gpu {
namespace kg = kernels::gpu;
using kg::Elem;

namespace {

Tensor dev(Shape s, DType t) { return Tensor::empty(std::move(s), t, Device::CUDA); }

Tensor upload_i32(const std::vector<int32_t>& v) {
  Tensor h = Tensor::borrow(const_cast<int32_t*>(v.data()), {int64_t(v.size())}, DType::I32, nullptr);
  return h.to_device(Device::CUDA);
}

const kg::bf16* B(const Tensor& t) { return static_cast<const kg::bf16*>(t.data()); }
kg::bf16* Bm(const Tensor& t) { return static_cast<kg::bf16*>(t.data()); }
float* F(const Tensor& t) { return static_cast<float*>(t.data()); }

// y = the K/V quantizer's fake quant of x (contiguous bf16 [R, kd] device tensors; y may be
// x); the caller checked q.enabled().
void quantize_kv(const quant::TensorQuantizer& q, const Tensor& x, const Tensor& y, void* stream) {
  if (x.numel() == 0) return;
  const float amax = q.effective_amax();
  if (q.config().format == quant::Format::FP8) kg::fake_quant_fp8(x, amax, y, stream);
  else kg::fake_quant_nvfp4(x, amax, y, stream);
}

// K or V through its quantizer, in place; a trainer whose backward clips at amax keeps the
// rows before the quantizer in `pre` (the quantizer then writes a fresh buffer: no copy).
void quantize_kv_rows(const quant::TensorQuantizer& q, Tensor& rows, Tensor* pre, void* stream) {
  if (!q.enabled()) return;
  if (pre && !q.config().pass_through_bwd) {
    *pre = rows;
    rows = Tensor::empty(pre->shape(), pre->dtype(), Device::CUDA);
    quantize_kv(q, *pre, rows, stream);
  } else {
    quantize_kv(q, rows, rows, stream);
  }
}

}  // namespace

Tensor GpuModel::forward(const std::vector<Chunk>& chunks, PagedCache& cache, TrainState* st) {
  const auto& c = cfg_;
  const int64_t V = c.vocab_size;
  if (st && cache.native())
    throw err("the training forward takes a bf16 cache (native KV storage is for the rollout)");

  // ---- pack the rows ----
  std::vector<int32_t> tokens, positions, row_seq;
  std::vector<kg::AttnSegment> segs;
  std::vector<int64_t> offset;
  int64_t n_logits = 0;
  int max_pos = 0;
  for (size_t s = 0; s < chunks.size(); ++s) {
    const Chunk& ch = chunks[s];
    const int n = int(ch.tokens.size());
    if (ch.start_pos < 0 || ch.n_logits < 0 || ch.n_logits > n)
      throw err("chunk {}: invalid sizes (n_new {}, start_pos {}, n_logits {})", s, n, ch.start_pos, ch.n_logits);
    if (st && (ch.start_pos != 0 || ch.n_logits != n))
      throw err("chunk {}: the training forward takes whole sequences with every logit", s);
    offset.push_back(int64_t(tokens.size()));
    segs.push_back(kg::AttnSegment{ch.seq, int32_t(tokens.size()), n, ch.start_pos});
    cache.reserve(ch.seq, ch.start_pos + n);
    for (int i = 0; i < n; ++i) {
      const int32_t t = ch.tokens[size_t(i)];
      if (t < 0 || t >= c.vocab_size)
        throw err("token id {} at position {} of sequence {} is outside the vocabulary [0, {})", t,
                  ch.start_pos + i, s, c.vocab_size);
      tokens.push_back(t);
      positions.push_back(ch.start_pos + i);
      row_seq.push_back(ch.seq);
    }
    max_pos = std::max(max_pos, ch.start_pos + n);
    n_logits += ch.n_logits;
  }
  const int64_t R = int64_t(tokens.size());
  if (R == 0) return dev({0, V}, DType::F32);
  ensure_rope(max_pos);
  cache.sync_tables();

  section("fwd.upload");
  Tensor d_tokens = upload_i32(tokens), d_pos = upload_i32(positions), d_seq = upload_i32(row_seq);
  ForwardRows in;
  in.R = R;
  in.tokens = d_tokens.data_as<int32_t>();
  in.pos = d_pos.data_as<int32_t>();
  in.seq = d_seq.data_as<int32_t>();
  in.segs = &segs;
  in.n_logits = n_logits;
  if (st) {
    st->rows = R;
    st->segs = segs;
    st->seq_offset = offset;
    st->tokens = d_tokens;
    st->positions = d_pos;
    st->row_seq = d_seq;
    st->host_tokens = tokens;
    st->layers.assign(size_t(c.num_hidden_layers), LayerActs{});
    in.logit_runs.push_back({0, R});
  } else {
    // Rows that need logits, merged into runs of consecutive rows (a decode step is one run).
    for (size_t s = 0; s < chunks.size(); ++s) {
      const int nl = chunks[s].n_logits;
      if (nl == 0) continue;
      const int64_t first = offset[s] + int64_t(chunks[s].tokens.size()) - nl;
      if (!in.logit_runs.empty() && in.logit_runs.back().first + in.logit_runs.back().second == first)
        in.logit_runs.back().second += nl;
      else
        in.logit_runs.push_back({first, nl});
    }
  }
  ForwardScratch fs;
  run_forward(*this, in, cache, fs, st, nullptr);
  return fs.logits;
}

void run_forward(GpuModel& m, const ForwardRows& in, PagedCache& cache, ForwardScratch& fs,
                 TrainState* st, void* stream) {
  const auto& c = m.config();
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int nh = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.head_dim;
  const int64_t qd = m.q_dim(), kd = m.kv_dim(), W = qd + 2 * kd;
  const float eps = float(c.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(float(hd));
  const GemmMode mode = m.gemm_mode();
  const int64_t R = in.R;
  if (st && stream) throw err("run_forward: the training forward runs on the legacy stream");
  if (fs.R != R) {  // buffers for R rows (kept while R is unchanged: a captured step's)
    fs.x = fs.qkv32 = fs.rstd_f = fs.hf = fs.logits = Tensor();
    fs.acts = LayerActs{};
    fs.R = R;
    fs.n_logits = -1;
  }
  void* s = stream;
  kg::AttentionWorkspace& ws = st ? st->attn_ws : fs.ws;
  auto need = [&](Tensor& t, Shape sh, DType d) {
    if (!t.defined()) t = dev(std::move(sh), d);
  };

  section("fwd.embedding");
  need(fs.x, {R, H}, DType::F32);
  Tensor& x = fs.x;
  kg::launch_embedding_forward(B(m.embed_bf16()), H, in.tokens, R, F(x), s);
  // Scratch reused across layers when not training.
  need(fs.qkv32, {R, W}, DType::F32);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const GpuLayer& L = m.layer(l);
    LayerActs& A = st ? st->layers[size_t(l)] : fs.acts;
    section("fwd.norm");
    // Training: the residual stream is out of place (each product that adds to it writes a
    // new buffer, gemm_forward's c_in), so the norms' inputs are kept as they are, not copied.
    if (st) A.x_in = x;
    need(A.h1, {R, H}, DType::BF16);
    need(A.rstd1, {R}, DType::F32);
    kg::launch_rmsnorm_forward(Elem::F32, F(x), H, F(L.input_norm), R, 1, int(H), eps, Elem::BF16,
                               A.h1.data(), H, F(A.rstd1), s);
    section("fwd.gemm.qkv");
    kg::gemm_forward(mode, R, W, H, B(A.h1), H, B(L.w_qkv), H, Elem::F32, F(fs.qkv32), W, false, s);
    section("fwd.qk_norm_rope");
    if (L.qkv_bias.defined()) kg::launch_add_bias(Elem::F32, F(fs.qkv32), R, W, W, F(L.qkv_bias), s);
    if (c.qk_norm) {
      need(A.q_rstd, {R * nh}, DType::F32);
      need(A.k_rstd, {R * nkv}, DType::F32);
    }
    need(A.qkv16, {R, W}, DType::BF16);
    need(A.k, {R, kd}, DType::BF16);
    need(A.v, {R, kd}, DType::BF16);
    kg::launch_qkv_prepare(F(fs.qkv32), R, nh, nkv, hd, c.qk_norm ? F(L.q_norm) : nullptr,
                           c.qk_norm ? F(L.k_norm) : nullptr, eps, in.pos,
                           F(m.rope_cos()), F(m.rope_sin()), Bm(A.qkv16), Bm(A.k), Bm(A.v),
                           c.qk_norm ? F(A.q_rstd) : nullptr, c.qk_norm ? F(A.k_rstd) : nullptr, s);
    // The projection is left as it was: the trainer keeps it as the q/k norms' input.
    if (st && c.qk_norm) {
      A.qkv_lin = fs.qkv32;
      fs.qkv32 = dev({R, W}, DType::F32);
    }
    section("fwd.kv_quant_write");
    const auto& kq = m.k_quantizers()[size_t(l)];
    const auto& vq = m.v_quantizers()[size_t(l)];
    if (cache.native()) {
      // Native fp8/nvfp4 storage: codes from the rows before the quantizer (paged_cache.h).
      cache.write_native(l, B(A.k), B(A.v), kd, in.seq, in.pos, R, s);
    } else {
      quantize_kv_rows(kq, A.k, st ? &A.k_pre : nullptr, s);
      quantize_kv_rows(vq, A.v, st ? &A.v_pre : nullptr, s);
      kg::launch_kv_write(cache.layer_view(l), B(A.k), B(A.v), kd, in.seq, in.pos, R, s);
    }
    section("fwd.kv_read");
    const kg::PagedKV view = cache.read_view(l, s);  // native: this layer decoded into bf16 scratch
    need(A.attn, {R, qd}, DType::BF16);
    need(A.lse, {R * nh}, DType::F32);
    section("fwd.attention");
    if (in.segs)
      kg::attention_forward(B(A.qkv16), W, *in.segs, view, nh, scale, Bm(A.attn), qd, F(A.lse), ws, s);
    else
      // One-row tiles of 4 warps, what attention_forward plans for one-row segments.
      kg::attn::launch_forward_tiles(static_cast<const kg::attn::Tile*>(in.tiles), in.n_tiles, 4, B(A.qkv16), W,
                                     view, nh / nkv, scale, Bm(A.attn), qd, F(A.lse), s);
    section("fwd.gemm.o");
    if (st) {  // x_mid = x_in + attn W_o^T into a new buffer
      x = dev({R, H}, DType::F32);
      kg::gemm_forward(mode, R, H, qd, B(A.attn), qd, B(L.w_o), qd, Elem::F32, F(x), H, true, s, F(A.x_in));
      A.x_mid = x;
    } else {
      kg::gemm_forward(mode, R, H, qd, B(A.attn), qd, B(L.w_o), qd, Elem::F32, F(x), H, true, s);
    }
    if (L.o_bias.defined()) kg::launch_add_bias(Elem::F32, F(x), R, H, H, F(L.o_bias), s);
    section("fwd.norm");
    need(A.h2, {R, H}, DType::BF16);
    need(A.rstd2, {R}, DType::F32);
    kg::launch_rmsnorm_forward(Elem::F32, F(x), H, F(L.post_norm), R, 1, int(H), eps, Elem::BF16,
                               A.h2.data(), H, F(A.rstd2), s);
    need(A.gu, {R, 2 * I}, DType::BF16);
    section("fwd.gemm.gate_up");
    kg::gemm_forward(mode, R, 2 * I, H, B(A.h2), H, B(L.w_gu), H, Elem::BF16, A.gu.data(), 2 * I, false, s);
    need(A.act, {R, I}, DType::BF16);
    section("fwd.swiglu");
    kg::launch_swiglu_forward(B(A.gu), R, I, Bm(A.act), s);
    section("fwd.gemm.down");
    if (st) {  // the next layer's input = x_mid + act W_down^T, a new buffer
      x = dev({R, H}, DType::F32);
      kg::gemm_forward(mode, R, H, I, B(A.act), I, B(L.w_down), I, Elem::F32, F(x), H, true, s, F(A.x_mid));
    } else {
      kg::gemm_forward(mode, R, H, I, B(A.act), I, B(L.w_down), I, Elem::F32, F(x), H, true, s);
    }
    kg::check_last_launch("GPU model layer");
  }

  // Final norm on every row (row-local, cheap), lm_head on the rows that need logits.
  section("fwd.lm_head");
  need(fs.rstd_f, {R}, DType::F32);
  need(fs.hf, {R, H}, DType::BF16);
  kg::launch_rmsnorm_forward(Elem::F32, F(x), H, F(m.final_norm()), R, 1, int(H), eps, Elem::BF16,
                             fs.hf.data(), H, F(fs.rstd_f), s);
  if (fs.n_logits != in.n_logits) {
    fs.logits = dev({in.n_logits, V}, DType::F32);
    fs.n_logits = in.n_logits;
  }
  const Tensor& lm = m.lm_head_bf16();
  int64_t at = 0;
  for (const auto& [first, rows] : in.logit_runs) {
    kg::gemm_forward(mode, rows, V, H, B(fs.hf) + first * H, H, B(lm), H, Elem::F32, F(fs.logits) + at * V, V,
                     false, s);
    at += rows;
  }
  if (st) {
    st->x_final = x;
    st->rstd_f = fs.rstd_f;
    st->hf = fs.hf;
  }
  kg::check_last_launch("GPU model head");
}

std::vector<std::vector<float>> forward_train(GpuModel& m, const std::vector<std::vector<int32_t>>& seqs,
                                              float temperature, TrainState& st) {
  if (!(temperature > 0.0f) || !std::isfinite(temperature))
    throw usage_err("temperature must be a positive number, got {}", temperature);
  const auto& c = m.config();
  int max_len = 1;
  for (const auto& s : seqs) max_len = std::max(max_len, int(s.size()));
  // One cache per batch shape, reused while it has the slots and the length.
  if (!st.cache || st.cache->max_seqs() < int(seqs.size()) || st.cache_len < max_len) {
    st.cache.reset();
    st.cache = std::make_unique<PagedCache>(PagedCache::for_sequences(
        c.num_hidden_layers, c.num_key_value_heads, c.head_dim, int(seqs.size()), max_len));
    st.cache_len = max_len;
  }
  for (int s = 0; s < st.cache->max_seqs(); ++s) st.cache->release(s);
  std::vector<Chunk> chunks;
  for (size_t s = 0; s < seqs.size(); ++s)
    chunks.push_back(Chunk{int(s), seqs[s], 0, int(seqs[s].size())});
  st.temperature = temperature;
  st.logits = m.forward(chunks, *st.cache, &st);
  const int64_t R = st.rows, V = c.vocab_size;
  // Targets: token t+1 for row t; the last row of a sequence has none (target 0, weight 0).
  std::vector<int32_t> targets(size_t(R), 0);
  for (size_t s = 0; s < seqs.size(); ++s)
    for (size_t t = 0; t + 1 < seqs[s].size(); ++t)
      targets[size_t(st.seq_offset[s]) + t] = seqs[s][t + 1];
  section("fwd.logprobs");
  st.targets = upload_i32(targets);
  st.lse_out = dev({R}, DType::F32);
  Tensor lp = dev({R}, DType::F32);
  kg::launch_logprobs_forward(F(st.logits), V, R, V, temperature, st.targets.data_as<int32_t>(),
                              F(st.lse_out), F(lp), nullptr);
  kg::check_last_launch("logprobs");
  std::vector<float> h = lp.to_f32_vector();
  std::vector<std::vector<float>> out(seqs.size());
  for (size_t s = 0; s < seqs.size(); ++s)
    for (size_t t = 0; t + 1 < seqs[s].size(); ++t) out[s].push_back(h[size_t(st.seq_offset[s]) + t]);
  return out;
}

}  // namespace qarl::gpu
