#include "qarl/gpu/gpu_model.h"

#include <cstring>

#include "qarl/core/error.h"
#include "qarl/kernels/cpu/rope.h"
#include "qarl/kernels/cuda/model_ops.h"

namespace qarl::gpu {
namespace kg = kernels::gpu;

namespace {

Tensor dev_f32(const Tensor& host) { return host.to(DType::F32).to_device(Device::CUDA); }

// Rows of the host fp32 tensors stacked along dim 0, uploaded as one fp32 device tensor.
Tensor stack_rows(const std::vector<const Tensor*>& parts) {
  int64_t rows = 0;
  const int64_t cols = parts[0]->dim(1);
  for (const Tensor* p : parts) rows += p->dim(0);
  Tensor h = Tensor::empty({rows, cols}, DType::F32);
  char* at = static_cast<char*>(h.data());
  for (const Tensor* p : parts) {
    std::memcpy(at, p->data(), p->nbytes());
    at += p->nbytes();
  }
  return h.to_device(Device::CUDA);
}

Tensor stack_vec(const std::vector<const Tensor*>& parts) {
  int64_t n = 0;
  for (const Tensor* p : parts) n += p->numel();
  Tensor h = Tensor::empty({n}, DType::F32);
  char* at = static_cast<char*>(h.data());
  for (const Tensor* p : parts) {
    std::memcpy(at, p->data(), p->nbytes());
    at += p->nbytes();
  }
  return h.to_device(Device::CUDA);
}

Tensor bf16_copy_of(const Tensor& master) {
  Tensor w = Tensor::empty(master.shape(), DType::BF16, Device::CUDA);
  kg::launch_cast(kg::Elem::F32, master.data(), kg::Elem::BF16, w.data(), master.numel(), nullptr);
  kg::check_last_launch("bf16 working copy");
  return w;
}

}  // namespace

GpuModel::~GpuModel() = default;

void GpuModel::add(const std::string& name, Tensor master, void* working) {
  names_.push_back(name);
  n_params_ += master.numel();
  params_[name] = Param{std::move(master), working};
}

GpuModel::GpuModel(const model::Model& m, GemmMode mode) : cfg_(m.config()), mode_(mode) {
  const auto& c = cfg_;
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  const int64_t qd = q_dim(), kd = kv_dim();
  auto P = [&](const std::string& n) -> const Tensor& { return m.param(n); };

  embed_m_ = dev_f32(P("model.embed_tokens.weight"));
  embed_w_ = bf16_copy_of(embed_m_);
  add("model.embed_tokens.weight", embed_m_, embed_w_.data());
  layers_.resize(size_t(c.num_hidden_layers));
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    GpuLayer& L = layers_[size_t(i)];
    L.input_norm = dev_f32(P(p + "input_layernorm.weight"));
    add(p + "input_layernorm.weight", L.input_norm, nullptr);
    L.m_qkv = stack_rows({&P(p + "self_attn.q_proj.weight"), &P(p + "self_attn.k_proj.weight"),
                          &P(p + "self_attn.v_proj.weight")});
    L.w_qkv = bf16_copy_of(L.m_qkv);
    auto w16 = [](const Tensor& w, int64_t row0, int64_t cols) {
      return static_cast<char*>(w.data()) + row0 * cols * 2;
    };
    add(p + "self_attn.q_proj.weight", L.m_qkv.narrow0(0, qd), w16(L.w_qkv, 0, H));
    add(p + "self_attn.k_proj.weight", L.m_qkv.narrow0(qd, kd), w16(L.w_qkv, qd, H));
    add(p + "self_attn.v_proj.weight", L.m_qkv.narrow0(qd + kd, kd), w16(L.w_qkv, qd + kd, H));
    if (m.has_param(p + "self_attn.q_proj.bias")) {
      L.qkv_bias = stack_vec({&P(p + "self_attn.q_proj.bias"), &P(p + "self_attn.k_proj.bias"),
                              &P(p + "self_attn.v_proj.bias")});
      add(p + "self_attn.q_proj.bias", L.qkv_bias.narrow0(0, qd), nullptr);
      add(p + "self_attn.k_proj.bias", L.qkv_bias.narrow0(qd, kd), nullptr);
      add(p + "self_attn.v_proj.bias", L.qkv_bias.narrow0(qd + kd, kd), nullptr);
    }
    L.m_o = dev_f32(P(p + "self_attn.o_proj.weight"));
    L.w_o = bf16_copy_of(L.m_o);
    add(p + "self_attn.o_proj.weight", L.m_o, L.w_o.data());
    if (m.has_param(p + "self_attn.o_proj.bias")) {
      L.o_bias = dev_f32(P(p + "self_attn.o_proj.bias"));
      add(p + "self_attn.o_proj.bias", L.o_bias, nullptr);
    }
    if (c.qk_norm) {
      L.q_norm = dev_f32(P(p + "self_attn.q_norm.weight"));
      L.k_norm = dev_f32(P(p + "self_attn.k_norm.weight"));
      add(p + "self_attn.q_norm.weight", L.q_norm, nullptr);
      add(p + "self_attn.k_norm.weight", L.k_norm, nullptr);
    }
    L.post_norm = dev_f32(P(p + "post_attention_layernorm.weight"));
    add(p + "post_attention_layernorm.weight", L.post_norm, nullptr);
    L.m_gu = stack_rows({&P(p + "mlp.gate_proj.weight"), &P(p + "mlp.up_proj.weight")});
    L.w_gu = bf16_copy_of(L.m_gu);
    add(p + "mlp.gate_proj.weight", L.m_gu.narrow0(0, I), w16(L.w_gu, 0, H));
    add(p + "mlp.up_proj.weight", L.m_gu.narrow0(I, I), w16(L.w_gu, I, H));
    L.m_down = dev_f32(P(p + "mlp.down_proj.weight"));
    L.w_down = bf16_copy_of(L.m_down);
    add(p + "mlp.down_proj.weight", L.m_down, L.w_down.data());
    kq_.push_back(m.k_quantizer(i));
    vq_.push_back(m.v_quantizer(i));
  }
  final_norm_ = dev_f32(P("model.norm.weight"));
  add("model.norm.weight", final_norm_, nullptr);
  if (!c.tie_word_embeddings) {
    lm_m_ = dev_f32(P("lm_head.weight"));
    lm_w_ = bf16_copy_of(lm_m_);
    add("lm_head.weight", lm_m_, lm_w_.data());
  }
  // The parameter order of the CPU model (checkpoints, optimizer state) is kept.
  std::vector<std::string> order;
  for (const auto& n : m.param_names()) {
    if (!params_.count(n)) throw err("GPU model: no device tensor for parameter").tensor(n);
    order.push_back(n);
  }
  names_ = order;
  inv_freq_ = m.rope_inv_freq();
  ensure_rope(2048);
  m.check_kv_quantizers();
  for (int i = 0; i < c.num_hidden_layers; ++i)
    for (const auto* q : {&kq_[size_t(i)], &vq_[size_t(i)]})
      if (q->calibrating())
        throw usage_err("GPU model: K/V quantizers cannot calibrate on the GPU yet; calibrate "
                        "on the CPU (qarl calibrate) and pass the amax");
}

int64_t GpuModel::weight_bytes_bf16() const {
  int64_t b = embed_w_.nbytes();  // the lm_head read (tied) or the embedding rows (negligible)
  if (lm_w_.defined()) b = lm_w_.nbytes();
  for (const auto& L : layers_) b += int64_t(L.w_qkv.nbytes() + L.w_o.nbytes() + L.w_gu.nbytes() + L.w_down.nbytes());
  return b;
}

// cos/sin tables with exactly the CPU's values: kernels::rope_forward applied to the unit
// vector (1, .., 1, 0, .., 0) gives (c_i, s_i) bit for bit (1*c - 0*s = c, 0*c + 1*s = s).
void GpuModel::ensure_rope(int max_pos) {
  if (max_pos <= rope_max_pos_) return;
  int n = std::max(max_pos, rope_max_pos_ * 2);
  const int hd = cfg_.head_dim, half = hd / 2;
  std::vector<float> rows(size_t(n) * size_t(hd));
  std::vector<int32_t> pos(static_cast<size_t>(n));
  for (int p = 0; p < n; ++p) {
    pos[size_t(p)] = p;
    for (int i = 0; i < half; ++i) rows[size_t(p) * hd + size_t(i)] = 1.0f;
  }
  kernels::rope_forward(rows.data(), n, hd, 1, hd, pos.data(), inv_freq_.data());
  Tensor c = Tensor::empty({n, half}, DType::F32), s = Tensor::empty({n, half}, DType::F32);
  for (int p = 0; p < n; ++p)
    for (int i = 0; i < half; ++i) {
      c.data_as<float>()[size_t(p) * half + size_t(i)] = rows[size_t(p) * hd + size_t(i)];
      s.data_as<float>()[size_t(p) * half + size_t(i)] = rows[size_t(p) * hd + size_t(half + i)];
    }
  rope_cos_ = c.to_device(Device::CUDA);
  rope_sin_ = s.to_device(Device::CUDA);
  rope_max_pos_ = n;
}

Tensor GpuModel::master(const std::string& name) const {
  auto it = params_.find(name);
  if (it == params_.end()) throw err("GPU model: no such parameter").tensor(name);
  return it->second.master;
}
void* GpuModel::working_of(const std::string& name) const {
  auto it = params_.find(name);
  if (it == params_.end()) throw err("GPU model: no such parameter").tensor(name);
  return it->second.working;
}

void GpuModel::set_kv_amax(int layer, char which, const Tensor& amax) {
  if (layer < 0 || layer >= cfg_.num_hidden_layers || (which != 'k' && which != 'v'))
    throw err("GPU model: no K/V quantizer {} of layer {}", which, layer);
  auto& q = (which == 'k' ? kq_ : vq_)[size_t(layer)];
  q.set_amax(amax, model::kv_quantizer_name(layer, which) + "._amax");
}

void GpuModel::set_kv_quantizers(std::vector<quant::TensorQuantizer> k, std::vector<quant::TensorQuantizer> v) {
  if (k.size() != kq_.size() || v.size() != vq_.size())
    throw err("GPU model: {} / {} K/V quantizers for {} layers", k.size(), v.size(), kq_.size());
  kq_ = std::move(k);
  vq_ = std::move(v);
}

void GpuModel::masters_changed() {
  for (const auto& [name, p] : params_)
    if (p.working)
      kg::launch_cast(kg::Elem::F32, p.master.data(), kg::Elem::BF16, p.working,
                      p.master.numel(), nullptr);
  kg::check_last_launch("bf16 working copies");
}

void GpuModel::download(model::Model& m) const {
  for (const auto& name : names_) m.param(name).copy_from(params_.at(name).master);
  m.weights_changed();
}

}  // namespace qarl::gpu
