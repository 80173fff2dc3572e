// The GPU model's backward (the hand-written CPU backward of qarl/model/train.cpp, op for op),
// in mixed precision: bf16 into and out of the GEMMs, fp32 residual gradient, fp32 parameter
// gradients accumulated by cuBLAS.
#include <atomic>
#include <cmath>
#include <map>
#include <mutex>

#include <cuda_runtime.h>

#include "qarl/core/error.h"
#include "qarl/gpu/section_timer.h"
#include "qarl/gpu/train_state.h"
#include "qarl/kernels/cuda/attention_gpu.h"
#include "qarl/kernels/cuda/fake_quant.h"
#include "qarl/kernels/cuda/gemm.h"
#include "qarl/kernels/cuda/model_ops.h"

namespace qarl::gpu {
namespace kg = kernels::gpu;
using kg::Elem;

namespace {
Tensor dev(Shape s, DType t) { return Tensor::empty(std::move(s), t, Device::CUDA); }
const kg::bf16* B(const Tensor& t) { return static_cast<const kg::bf16*>(t.data()); }
kg::bf16* Bm(const Tensor& t) { return static_cast<kg::bf16*>(t.data()); }
float* F(const Tensor& t) { return static_cast<float*>(t.data()); }

std::atomic<bool> g_overlap{true};

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw runtime_err("GPU backward: {} failed: {}", what, cudaGetErrorString(e));
}

// The buffers the weight-gradient products read that the main stream later rewrites.
enum SideBuf { kDlogits, kDx16, kDgu, kDx16o, kDqkv16, kNumSideBufs };

// The second stream of backward() and its events, one set per device, created on first use
// and never destroyed (like the cuBLAS handles). The main stream is the legacy default one
// (nullptr), which a non-blocking stream does not synchronize with implicitly.
struct SideStream {
  cudaStream_t stream = nullptr;
  cudaEvent_t to_side = nullptr;            // main -> side: the next product's inputs are written
  cudaEvent_t done[kNumSideBufs] = {};      // side -> main: the last product reading a buffer is done
  cudaEvent_t join = nullptr;               // side -> main: every weight gradient is written
};
SideStream& side_stream() {
  static std::mutex mu;
  static auto* sides = new std::map<int, SideStream>;
  int dev = 0;
  ck(cudaGetDevice(&dev), "cudaGetDevice");
  std::lock_guard<std::mutex> lock(mu);
  SideStream& s = (*sides)[dev];
  if (!s.stream) {
    ck(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    ck(cudaEventCreateWithFlags(&s.to_side, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    for (cudaEvent_t& e : s.done) ck(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    ck(cudaEventCreateWithFlags(&s.join, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  }
  return s;
}
}  // namespace

void set_backward_overlap(bool on) { g_overlap = on; }
bool backward_overlap() { return g_overlap; }

GpuGrads::GpuGrads(const GpuModel& m) {
  const auto& c = m.config();
  // One flat buffer: zeroing, the global norm and clipping are one launch each over it (they
  // were ~300 launches, 5 ms of the Qwen3-0.6B step on the H200). Every gradient starts at a
  // 256-byte boundary; the padding stays zero. The parameters number num_params(), and at
  // most 3 + 10 per layer tensors are padded.
  constexpr int64_t kAlign = 64;  // floats
  const int64_t capacity = m.num_params() + kAlign * (3 + 10 * int64_t(c.num_hidden_layers));
  flat = Tensor::zeros({capacity}, DType::F32, Device::CUDA);
  int64_t used = 0;
  auto alloc = [&](const Tensor& like) {
    const int64_t n = like.numel();
    if (used + n > capacity) throw err("GPU gradients: the flat buffer ({} floats) is too small", capacity);
    Tensor t = flat.narrow0(used, n).reshape(like.shape());
    used += (n + kAlign - 1) / kAlign * kAlign;
    return t;
  };
  const int64_t qd = m.q_dim(), kd = m.kv_dim(), I = c.intermediate_size;
  // First the gradients that one weight-gradient product writes whole (a fresh backward's
  // first product overwrites them, beta = 0: zero() needs no pass over them), then the ones
  // that are only ever added into (norm weights, biases, an untied embedding's scatter-add),
  // together at the end so that zero() clears them with one memset.
  const bool tied = c.tie_word_embeddings;
  if (tied) embed = alloc(m.master("model.embed_tokens.weight"));  // the lm_head product's
  layers.resize(size_t(c.num_hidden_layers));
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    const GpuLayer& L = m.layer(i);
    Layer& G = layers[size_t(i)];
    G.qkv = alloc(L.m_qkv);
    G.o = alloc(L.m_o);
    G.gu = alloc(L.m_gu);
    G.down = alloc(L.m_down);
    by_name[p + "self_attn.q_proj.weight"] = G.qkv.narrow0(0, qd);
    by_name[p + "self_attn.k_proj.weight"] = G.qkv.narrow0(qd, kd);
    by_name[p + "self_attn.v_proj.weight"] = G.qkv.narrow0(qd + kd, kd);
    by_name[p + "self_attn.o_proj.weight"] = G.o;
    by_name[p + "mlp.gate_proj.weight"] = G.gu.narrow0(0, I);
    by_name[p + "mlp.up_proj.weight"] = G.gu.narrow0(I, I);
    by_name[p + "mlp.down_proj.weight"] = G.down;
  }
  if (!tied) {
    lm_head = alloc(m.master("lm_head.weight"));
    by_name["lm_head.weight"] = lm_head;
  }
  added_from = used;
  if (!tied) embed = alloc(m.master("model.embed_tokens.weight"));
  by_name["model.embed_tokens.weight"] = embed;
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    const GpuLayer& L = m.layer(i);
    Layer& G = layers[size_t(i)];
    G.input_norm = alloc(L.input_norm);
    G.post_norm = alloc(L.post_norm);
    by_name[p + "input_layernorm.weight"] = G.input_norm;
    by_name[p + "post_attention_layernorm.weight"] = G.post_norm;
    if (L.qkv_bias.defined()) {
      G.qkv_bias = alloc(L.qkv_bias);
      by_name[p + "self_attn.q_proj.bias"] = G.qkv_bias.narrow0(0, qd);
      by_name[p + "self_attn.k_proj.bias"] = G.qkv_bias.narrow0(qd, kd);
      by_name[p + "self_attn.v_proj.bias"] = G.qkv_bias.narrow0(qd + kd, kd);
    }
    if (L.o_bias.defined()) {
      G.o_bias = alloc(L.o_bias);
      by_name[p + "self_attn.o_proj.bias"] = G.o_bias;
    }
    if (c.qk_norm) {
      G.q_norm = alloc(L.q_norm);
      G.k_norm = alloc(L.k_norm);
      by_name[p + "self_attn.q_norm.weight"] = G.q_norm;
      by_name[p + "self_attn.k_norm.weight"] = G.k_norm;
    }
  }
  final_norm = alloc(m.final_norm());
  by_name["model.norm.weight"] = final_norm;
  added_to = used;
}

void GpuGrads::zero() {
  // Only the added-into tail; the rest is overwritten by the next backward (pending_zero).
  cudaMemsetAsync(flat.data_as<float>() + added_from, 0, size_t(added_to - added_from) * sizeof(float),
                  nullptr);
  kg::check_last_launch("zero gradients");
  pending_zero = true;
  clip_scale = 1.0f;
}

void GpuGrads::materialize_zero() const {
  if (!pending_zero) return;
  cudaMemsetAsync(flat.data(), 0, size_t(added_from) * sizeof(float), nullptr);
  kg::check_last_launch("zero gradients");
  pending_zero = false;
}

void GpuGrads::apply_clip_scale() {
  if (pending_zero) clip_scale = 1.0f;  // zeros scale to zeros
  if (clip_scale == 1.0f) return;
  kg::launch_scale(flat.data_as<float>(), flat.numel(), clip_scale, nullptr);
  kg::check_last_launch("gradient clipping");
  clip_scale = 1.0f;
}

void backward(GpuModel& m, TrainState& st, const std::vector<std::vector<float>>& d_logprobs,
              GpuGrads& G) {
  const auto& c = m.config();
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, R = st.rows;
  const int nh = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.head_dim;
  const int64_t qd = m.q_dim(), kd = m.kv_dim(), W = qd + 2 * kd;
  const float scale = 1.0f / std::sqrt(float(hd));
  // launch_qkv_prepare_backward leaves the q/k norms' dy, not the bias's gradient, in fp32;
  // no supported family has both (Qwen3: norms, no bias; Qwen2: bias, no norms).
  if (c.qk_norm && c.num_hidden_layers > 0 && m.layer(0).qkv_bias.defined())
    throw err("GPU backward: q/k norms together with a qkv bias are not supported");
  if (st.layers.empty() || !st.logits.defined())
    throw err("GPU backward: no training forward to go back through (or it was consumed)");
  if (d_logprobs.size() != st.segs.size())
    throw err("GPU backward: {} gradient rows for {} sequences", d_logprobs.size(), st.segs.size());
  G.apply_clip_scale();  // accumulating onto clipped gradients: make the clip real first
  // The weight-gradient products (dW = dY^T X) feed nothing but the optimizer: with overlap on
  // they go to a second stream (ws), where they run beside the memory-bound kernels of the
  // data-gradient path instead of after them. Events order them: main -> side before each
  // product (its dY is written), side -> main before main rewrites a dY buffer, and a join at
  // the end. The activations and dY buffers they read stay alive until the join.
  SideStream* side = backward_overlap() ? &side_stream() : nullptr;
  void* ws = side ? static_cast<void*>(side->stream) : nullptr;
  auto to_side = [&] {
    if (!side) return;
    ck(cudaEventRecord(side->to_side, nullptr), "cudaEventRecord");
    ck(cudaStreamWaitEvent(side->stream, side->to_side, 0), "cudaStreamWaitEvent");
  };
  auto done_reading = [&](SideBuf b) {
    if (side) ck(cudaEventRecord(side->done[b], side->stream), "cudaEventRecord");
  };
  auto before_write = [&](SideBuf b) {  // (an event never recorded is complete)
    if (side) ck(cudaStreamWaitEvent(nullptr, side->done[b], 0), "cudaStreamWaitEvent");
  };
  // After zero(): the weight-gradient products overwrite (beta = 0) instead of adding
  // (with no rows there is no product to overwrite: clear them now).
  if (R == 0) G.materialize_zero();
  const bool add = !G.pending_zero;
  G.pending_zero = false;

  // dLoss/dlogprob per row (0 on each sequence's last row, which has no target).
  std::vector<float> g(size_t(R), 0.0f);
  for (size_t s = 0; s < st.segs.size(); ++s) {
    const size_t T = size_t(st.segs[s].n_rows);
    if (d_logprobs[s].size() != (T ? T - 1 : 0))
      throw err("GPU backward: sequence {} has {} tokens but {} logprob gradients", s, T, d_logprobs[s].size());
    for (size_t t = 0; t + 1 < T; ++t) g[size_t(st.seq_offset[s]) + t] = d_logprobs[s][t];
  }
  section("bwd.lm_head");
  Tensor d_g = Tensor::borrow(g.data(), {R}, DType::F32, nullptr).to_device(Device::CUDA);

  // Head: d logits (bf16) -> d hf, d lm_head.
  Tensor dlogits = dev({R, V}, DType::BF16);
  kg::launch_logprobs_backward(F(st.logits), V, R, V, st.temperature, st.targets.data_as<int32_t>(),
                               F(st.lse_out), F(d_g), Elem::BF16, dlogits.data(), V, nullptr);
  st.logits = Tensor();
  Tensor& dlm = c.tie_word_embeddings ? G.embed : G.lm_head;
  to_side();
  kg::gemm_backward_weight(R, V, H, B(dlogits), V, B(st.hf), H, F(dlm), H, add, ws);
  done_reading(kDlogits);
  Tensor dhf = dev({R, H}, DType::F32);
  kg::gemm_backward_data(R, V, H, B(dlogits), V, B(m.lm_head_bf16()), H, Elem::F32, F(dhf), H, false, nullptr);
  if (!side) dlogits = Tensor();
  section("bwd.norm");
  Tensor dx = dev({R, H}, DType::F32);
  // Every hidden norm's backward also leaves dx in bf16, the input of the next product: dx16
  // from the final and input norms (into the down projection), dx16o from the post-attention
  // norms (into the o projection); two buffers, so that each is rewritten a layer after its
  // weight-gradient product read it.
  Tensor dx16 = dev({R, H}, DType::BF16), dx16o = dev({R, H}, DType::BF16);
  before_write(kDx16);
  kg::launch_rmsnorm_backward(Elem::F32, F(dhf), H, Elem::F32, F(st.x_final), H, F(m.final_norm()),
                              F(st.rstd_f), R, 1, int(H), F(dx), H, false, F(G.final_norm), nullptr,
                              Bm(dx16));
  dhf = Tensor();

  Tensor dact = dev({R, I}, DType::BF16), dgu = dev({R, 2 * I}, DType::BF16);
  Tensor dh = dev({R, H}, DType::F32), dattn = dev({R, qd}, DType::BF16);
  Tensor dqkv = dev({R, W}, DType::F32), dqkv16 = dev({R, W}, DType::BF16);
  const int32_t* pos = st.positions.data_as<int32_t>();
  std::vector<int64_t> kv_first;
  for (const auto& sg : st.segs) kv_first.push_back(sg.first_row);

  for (int l = c.num_hidden_layers - 1; l >= 0; --l) {
    const GpuLayer& L = m.layer(l);
    LayerActs& A = st.layers[size_t(l)];
    GpuGrads::Layer& GL = G.layers[size_t(l)];
    // ---- MLP: x += down(silu(gate) * up)(norm2(x_mid)) ----
    section("bwd.gemm.down");
    to_side();
    kg::gemm_backward_weight(R, H, I, B(dx16), H, B(A.act), I, F(GL.down), I, add, ws);
    done_reading(kDx16);
    kg::gemm_backward_data(R, H, I, B(dx16), H, B(L.w_down), I, Elem::BF16, dact.data(), I, false, nullptr);
    section("bwd.swiglu");
    before_write(kDgu);
    kg::launch_swiglu_backward(B(dact), B(A.gu), R, I, Bm(dgu), nullptr);
    section("bwd.gemm.gate_up");
    to_side();
    kg::gemm_backward_weight(R, 2 * I, H, B(dgu), 2 * I, B(A.h2), H, F(GL.gu), H, add, ws);
    done_reading(kDgu);
    kg::gemm_backward_data(R, 2 * I, H, B(dgu), 2 * I, B(L.w_gu), H, Elem::F32, F(dh), H, false, nullptr);
    section("bwd.norm");
    before_write(kDx16o);
    kg::launch_rmsnorm_backward(Elem::F32, F(dh), H, Elem::F32, F(A.x_mid), H, F(L.post_norm), F(A.rstd2),
                                R, 1, int(H), F(dx), H, true, F(GL.post_norm), nullptr, Bm(dx16o));
    A.gu = A.x_mid = Tensor();
    if (!side) A.act = A.h2 = Tensor();  // else read by the side stream: freed after the join
    // ---- attention: x += o(attn(q, k, v)) (+ o bias) ----
    section("bwd.gemm.o");
    if (L.o_bias.defined()) kg::launch_bias_backward(Elem::F32, F(dx), R, H, H, F(GL.o_bias), nullptr);
    to_side();
    kg::gemm_backward_weight(R, H, qd, B(dx16o), H, B(A.attn), qd, F(GL.o), qd, add, ws);
    done_reading(kDx16o);
    kg::gemm_backward_data(R, H, qd, B(dx16o), H, B(L.w_o), qd, Elem::BF16, dattn.data(), qd, false, nullptr);
    section("bwd.attention");
    kg::attention_backward(st.segs, kv_first, B(A.qkv16), W, B(A.k), B(A.v), kd, B(A.attn), B(dattn), qd,
                           F(A.lse), nh, nkv, hd, scale, F(dqkv), W, F(dqkv) + qd, F(dqkv) + qd + kd, W,
                           st.attn_ws, nullptr);
    // Back through the K/V quantizers (straight-through, or clipped at amax), RoPE and the
    // q/k norms, into bf16 for the projection's products (one kernel, qkv_prep.cu).
    section("bwd.qk_norm_rope");
    before_write(kDqkv16);
    const auto& kq = m.k_quantizers()[size_t(l)];
    const auto& vq = m.v_quantizers()[size_t(l)];
    const bool qn = c.qk_norm;
    kg::launch_qkv_prepare_backward(
        F(dqkv), qn ? F(A.qkv_lin) : nullptr, R, nh, nkv, hd, qn ? F(L.q_norm) : nullptr,
        qn ? F(L.k_norm) : nullptr, qn ? F(A.q_rstd) : nullptr, qn ? F(A.k_rstd) : nullptr,
        A.k_pre.defined() ? B(A.k_pre) : nullptr, A.v_pre.defined() ? B(A.v_pre) : nullptr,
        A.k_pre.defined() ? kq.effective_amax() : 0.0f, A.v_pre.defined() ? vq.effective_amax() : 0.0f,
        pos, F(m.rope_cos()), F(m.rope_sin()), Bm(dqkv16),
        qn ? F(GL.q_norm) : nullptr, qn ? F(GL.k_norm) : nullptr, nullptr);
    // Without q/k norms dqkv now holds the projection's gradient in fp32 (the bias's).
    if (L.qkv_bias.defined()) kg::launch_bias_backward(Elem::F32, F(dqkv), R, W, W, F(GL.qkv_bias), nullptr);
    section("bwd.gemm.qkv");
    to_side();
    kg::gemm_backward_weight(R, W, H, B(dqkv16), W, B(A.h1), H, F(GL.qkv), H, add, ws);
    done_reading(kDqkv16);
    kg::gemm_backward_data(R, W, H, B(dqkv16), W, B(L.w_qkv), H, Elem::F32, F(dh), H, false, nullptr);
    section("bwd.norm");
    before_write(kDx16);
    kg::launch_rmsnorm_backward(Elem::F32, F(dh), H, Elem::F32, F(A.x_in), H, F(L.input_norm), F(A.rstd1),
                                R, 1, int(H), F(dx), H, true, F(GL.input_norm), nullptr, Bm(dx16));
    if (!side) A = LayerActs{};  // else freed after the join
    kg::check_last_launch("GPU model backward layer");
  }
  section("bwd.embedding");
  kg::launch_embedding_backward(F(dx), H, st.tokens.data_as<int32_t>(), R, F(G.embed), nullptr);
  kg::check_last_launch("GPU model backward embedding");
  if (side) {  // every weight gradient is written before main goes on (clip, AdamW, frees)
    ck(cudaEventRecord(side->join, side->stream), "cudaEventRecord");
    ck(cudaStreamWaitEvent(nullptr, side->join, 0), "cudaStreamWaitEvent");
    kg::check_last_launch("GPU model backward (weight gradients)");
  }
  st.layers.clear();
  st.x_final = st.hf = st.rstd_f = Tensor();
}

}  // namespace qarl::gpu
