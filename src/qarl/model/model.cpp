#include "qarl/model/model.h"

#include <filesystem>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/core/log.h"
#include "qarl/core/rng.h"
#include "qarl/io/checkpoint.h"
#include "qarl/kernels/cpu/rope.h"

namespace qarl::model {

std::string kv_quantizer_name(int layer, char which) {
  return fmt::format("model.layers.{}.self_attn.{}_bmm_quantizer", layer, which);
}

void validate_config(const io::HFConfig& c, const std::string& label) {
  auto bad = [&](const std::string& key, const std::string& why) {
    return err("{}", why).file(label).key(key);
  };
  if (c.vocab_size <= 0) throw bad("vocab_size", "must be positive");
  if (c.hidden_size <= 0) throw bad("hidden_size", "must be positive");
  if (c.intermediate_size <= 0) throw bad("intermediate_size", "must be positive");
  if (c.num_hidden_layers <= 0) throw bad("num_hidden_layers", "must be positive");
  if (c.num_attention_heads <= 0) throw bad("num_attention_heads", "must be positive");
  if (c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads != 0)
    throw bad("num_key_value_heads",
              fmt::format("{} does not divide num_attention_heads = {}", c.num_key_value_heads,
                          c.num_attention_heads));
  if (c.head_dim <= 0 || c.head_dim % 2 != 0 || c.head_dim > 1024)
    throw bad("head_dim", fmt::format("{} is not an even size in 2..1024", c.head_dim));
  if (c.rope_scaling.type != "default" && c.rope_scaling.type != "llama3")
    throw bad("rope_scaling", fmt::format("unsupported rope type '{}'", c.rope_scaling.type));
}

void Model::add_param(const std::string& name, Shape shape) {
  names_.push_back(name);
  params_[name] = Tensor::zeros(std::move(shape), DType::F32);
}

void Model::init_layout() {
  const auto& c = cfg_;
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t qd = q_dim(), kd = kv_dim(), hd = c.head_dim;
  const bool qkv_bias = c.attention_bias || c.family == io::ModelFamily::Qwen2;
  const bool o_bias = c.attention_bias && c.family == io::ModelFamily::Llama;
  add_param("model.embed_tokens.weight", {V, H});
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    add_param(p + "input_layernorm.weight", {H});
    add_param(p + "self_attn.q_proj.weight", {qd, H});
    add_param(p + "self_attn.k_proj.weight", {kd, H});
    add_param(p + "self_attn.v_proj.weight", {kd, H});
    if (qkv_bias) {
      add_param(p + "self_attn.q_proj.bias", {qd});
      add_param(p + "self_attn.k_proj.bias", {kd});
      add_param(p + "self_attn.v_proj.bias", {kd});
    }
    add_param(p + "self_attn.o_proj.weight", {H, qd});
    if (o_bias) add_param(p + "self_attn.o_proj.bias", {H});
    if (c.qk_norm) {
      add_param(p + "self_attn.q_norm.weight", {hd});
      add_param(p + "self_attn.k_norm.weight", {hd});
    }
    add_param(p + "post_attention_layernorm.weight", {H});
    add_param(p + "mlp.gate_proj.weight", {I, H});
    add_param(p + "mlp.up_proj.weight", {I, H});
    add_param(p + "mlp.down_proj.weight", {H, I});
  }
  add_param("model.norm.weight", {H});
  if (!c.tie_word_embeddings) add_param("lm_head.weight", {V, H});
  layers_.assign(static_cast<size_t>(c.num_hidden_layers), LayerWeights{});
  kq_.assign(static_cast<size_t>(c.num_hidden_layers), quant::TensorQuantizer{});
  vq_.assign(static_cast<size_t>(c.num_hidden_layers), quant::TensorQuantizer{});
  kernels::RopeScalingParams rs;
  rs.llama3 = c.rope_scaling.type == "llama3";
  rs.factor = c.rope_scaling.factor;
  rs.low_freq_factor = c.rope_scaling.low_freq_factor;
  rs.high_freq_factor = c.rope_scaling.high_freq_factor;
  rs.original_max_position_embeddings = c.rope_scaling.original_max_position_embeddings;
  inv_freq_ = kernels::rope_inv_freq(c.head_dim, c.rope_theta, rs);
}

Tensor& Model::param(const std::string& name) {
  auto it = params_.find(name);
  if (it == params_.end()) throw err("no parameter named '{}'", name).tensor(name);
  return it->second;
}
const Tensor& Model::param(const std::string& name) const {
  auto it = params_.find(name);
  if (it == params_.end()) throw err("no parameter named '{}'", name).tensor(name);
  return it->second;
}

const float* Model::embed() const { return param("model.embed_tokens.weight").data_as<float>(); }

void Model::weights_changed() {
  const auto& c = cfg_;
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  const int64_t qd = q_dim(), kd = kv_dim();
  auto P = [&](const std::string& n) { return param(n).data_as<const float>(); };
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    LayerWeights& L = layers_[size_t(i)];
    L.input_norm = P(p + "input_layernorm.weight");
    L.post_norm = P(p + "post_attention_layernorm.weight");
    L.q_norm = c.qk_norm ? P(p + "self_attn.q_norm.weight") : nullptr;
    L.k_norm = c.qk_norm ? P(p + "self_attn.k_norm.weight") : nullptr;
    kernels::pack_b_from_nk_multi(
        {P(p + "self_attn.q_proj.weight"), P(p + "self_attn.k_proj.weight"),
         P(p + "self_attn.v_proj.weight")},
        {qd, kd, kd}, H, L.qkv);
    if (has_param(p + "self_attn.q_proj.bias")) {
      L.qkv_bias_store.resize(static_cast<size_t>(qd + 2 * kd));
      std::copy_n(P(p + "self_attn.q_proj.bias"), qd, L.qkv_bias_store.begin());
      std::copy_n(P(p + "self_attn.k_proj.bias"), kd, L.qkv_bias_store.begin() + qd);
      std::copy_n(P(p + "self_attn.v_proj.bias"), kd, L.qkv_bias_store.begin() + qd + kd);
      L.qkv_bias = L.qkv_bias_store.data();
    } else {
      L.qkv_bias = nullptr;
    }
    L.o_bias = has_param(p + "self_attn.o_proj.bias") ? P(p + "self_attn.o_proj.bias") : nullptr;
    kernels::pack_b_from_nk(P(p + "self_attn.o_proj.weight"), H, qd, L.o);
    kernels::pack_b_from_nk_multi({P(p + "mlp.gate_proj.weight"), P(p + "mlp.up_proj.weight")},
                                  {I, I}, H, L.gate_up);
    kernels::pack_b_from_nk(P(p + "mlp.down_proj.weight"), H, I, L.down);
  }
  final_norm_ = P("model.norm.weight");
  const float* head = c.tie_word_embeddings ? P("model.embed_tokens.weight") : P("lm_head.weight");
  kernels::pack_b_from_nk(head, c.vocab_size, H, lm_head_packed_);
}

Model Model::load(const std::string& dir) {
  Model m;
  m.cfg_ = io::load_hf_config(dir);
  validate_config(m.cfg_, dir + "/config.json");
  m.init_layout();
  io::Checkpoint ck = io::Checkpoint::open(dir);
  DType seen = DType::F32;
  bool first = true;
  for (const auto& name : m.names_) {
    if (!ck.contains(name)) throw err("checkpoint has no tensor '{}'", name).file(dir).tensor(name);
    Tensor t = ck.get(name);
    Tensor& dst = m.params_[name];
    if (t.shape() != dst.shape())
      throw err("shape {} does not match the config's {}", shape_str(t.shape()),
                shape_str(dst.shape()))
          .file(ck.file_of(name)).tensor(name);
    if (t.dtype() != DType::F32 && t.dtype() != DType::BF16 && t.dtype() != DType::F16)
      throw err("dtype {} is not supported (F32, BF16, F16)", dtype_name(t.dtype()))
          .file(ck.file_of(name)).tensor(name);
    if (first) seen = t.dtype(), first = false;
    dst = t.dtype() == DType::F32 ? t.clone() : t.to(DType::F32);
  }
  m.dtype_ = seen;
  for (const auto& name : ck.names()) {
    if (name.size() > 6 && name.ends_with("_bmm_quantizer._amax")) {
      Tensor t = ck.get(name);
      m.checkpoint_amax_[name] = t.clone();
    }
  }
  m.weights_changed();
  return m;
}

Model Model::random_init(const io::HFConfig& cfg, uint64_t seed, DType dtype) {
  Model m;
  m.cfg_ = cfg;
  validate_config(m.cfg_, "<config>");
  m.dtype_ = dtype;
  m.init_layout();
  // Weight element i of the run is normal draw number i of one counter-based stream (the
  // SequentialRng sequence), computed in parallel: a 0.6B-parameter init takes seconds.
  const CounterRng rng(seed, 0x6d6f64656cull);
  uint64_t drawn = 0;
  for (const auto& name : m.names_) {
    Tensor& t = m.params_[name];
    float* p = t.data_as<float>();
    const bool norm = name.ends_with("norm.weight");
    const bool bias = name.ends_with(".bias");
    const int64_t n = t.numel();
    if (norm || bias) {
      for (int64_t i = 0; i < n; ++i) p[i] = norm ? 1.0f : 0.0f;
    } else {
#pragma omp parallel for schedule(static) if (n > 65536)
      for (int64_t i = 0; i < n; ++i) p[i] = 0.02f * rng.normal(1, drawn + uint64_t(i));
      drawn += uint64_t(n);
    }
    // Round to the checkpoint dtype so that save/load round-trips exactly.
    if (dtype != DType::F32) t = t.to(dtype).to(DType::F32);
  }
  m.weights_changed();
  return m;
}

std::vector<std::pair<std::string, quant::TensorQuantizer*>> Model::kv_quantizers() {
  std::vector<std::pair<std::string, quant::TensorQuantizer*>> out;
  for (int i = 0; i < cfg_.num_hidden_layers; ++i) {
    out.emplace_back(kv_quantizer_name(i, 'k'), &kq_[size_t(i)]);
    out.emplace_back(kv_quantizer_name(i, 'v'), &vq_[size_t(i)]);
  }
  return out;
}
std::vector<std::pair<std::string, const quant::TensorQuantizer*>> Model::kv_quantizers() const {
  std::vector<std::pair<std::string, const quant::TensorQuantizer*>> out;
  for (int i = 0; i < cfg_.num_hidden_layers; ++i) {
    out.emplace_back(kv_quantizer_name(i, 'k'), &kq_[size_t(i)]);
    out.emplace_back(kv_quantizer_name(i, 'v'), &vq_[size_t(i)]);
  }
  return out;
}

void Model::configure_kv_quantizers(const quant::QuantRecipe& recipe,
                                    const std::map<std::string, Tensor>& amax,
                                    bool require_amax) {
  // Build all quantizers first; assign only when everything checks (never half-apply).
  std::vector<quant::TensorQuantizer> nk, nv;
  for (int i = 0; i < cfg_.num_hidden_layers; ++i) {
    for (char w : {'k', 'v'}) {
      const std::string name = kv_quantizer_name(i, w);
      quant::TensorQuantizer q = recipe.make_quantizer(name);
      if (q.enabled() && q.config().format == quant::Format::NVFP4 && cfg_.head_dim % 16 != 0)
        throw err("NVFP4 K/V quantization needs head_dim % 16 == 0, head_dim is {}",
                  cfg_.head_dim).tensor(name);
      if (q.has_amax_buffer()) {
        const std::string key = name + "._amax";
        auto it = amax.find(key);
        if (it != amax.end()) q.set_amax(it->second, key);
        else if (auto c = checkpoint_amax_.find(key); c != checkpoint_amax_.end())
          q.set_amax(c->second, key);
        if (require_amax && !q.amax_received())
          throw err("K/V quantizer '{}' is enabled with a calibrated amax, but no '{}' is in "
                    "the checkpoint or the --kv-amax file (run qarl calibrate)", name, key)
              .tensor(key);
      }
      (w == 'k' ? nk : nv).push_back(std::move(q));
    }
  }
  kq_ = std::move(nk);
  vq_ = std::move(nv);
}

void Model::check_kv_quantizers() const {
  for (const auto& [name, q] : kv_quantizers())
    if (q->enabled() && !q->calibrating() && q->has_amax_buffer() && !q->amax_received())
      throw err("K/V quantizer '{}' has no amax", name).tensor(name + "._amax");
}

void Model::save(const std::string& dir) const {
  std::filesystem::create_directories(dir);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& name : names_) tensors.emplace_back(name, params_.at(name).to(dtype_));
  for (const auto& [name, q] : kv_quantizers())
    if (q->has_amax_buffer() && q->amax_received())
      tensors.emplace_back(name + "._amax", Tensor::scalar(float(q->amax_tensor().item()), dtype_));
  io::HFConfig c = cfg_;
  c.torch_dtype = dtype_ == DType::BF16 ? "bfloat16" : dtype_ == DType::F16 ? "float16" : "float32";
  io::save_checkpoint_tensors(dir, tensors);
  write_file_atomic(dir + "/config.json", io::hf_config_to_json(c));
}

}  // namespace qarl::model
