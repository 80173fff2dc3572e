#include "refit/refit_fakes.h"

#include <cmath>

#include <fmt/format.h>

#include "test_util.h"

namespace qarl::refit::test {
namespace {

std::vector<std::string> quantized_modules(const TinyConfig& c, int64_t i) {
  std::string l = fmt::format("{}.layers.{}.", c.root, i);
  return {l + c.attn + ".q_proj", l + c.attn + ".k_proj", l + c.attn + ".v_proj",
          l + c.attn + ".o_proj", l + "mlp.gate_proj", l + "mlp.up_proj",
          l + "mlp.down_proj"};
}

}  // namespace

FakeTrainer::FakeTrainer(TinyConfig c) : cfg(c) {
  uint64_t seed = c.seed;
  auto add = [&](const std::string& name, Shape shape) {
    auto v = qarl::test::random_normal(size_t(shape_numel(shape)), 0.5f, seed++);
    params_.push_back({name, Tensor::from_f32(v, shape, c.dtype)});
  };
  const int64_t q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  add(c.root + ".embed_tokens.weight", {c.vocab, c.hidden});
  for (int64_t i = 0; i < c.layers; ++i) {
    std::string l = fmt::format("{}.layers.{}.", c.root, i), a = l + c.attn + ".";
    add(l + "input_layernorm.weight", {c.hidden});
    add(a + "q_proj.weight", {q, c.hidden});
    add(a + "k_proj.weight", {kv, c.hidden});
    add(a + "v_proj.weight", {kv, c.hidden});
    if (c.qkv_bias) {
      add(a + "q_proj.bias", {q});
      add(a + "k_proj.bias", {kv});
      add(a + "v_proj.bias", {kv});
    }
    add(a + "o_proj.weight", {c.hidden, q});
    add(l + "post_attention_layernorm.weight", {c.hidden});
    add(l + "mlp.gate_proj.weight", {c.inter, c.hidden});
    add(l + "mlp.up_proj.weight", {c.inter, c.hidden});
    add(l + "mlp.down_proj.weight", {c.hidden, c.inter});
  }
  add(c.root + ".norm.weight", {c.hidden});
  add("lm_head.weight", {c.vocab, c.hidden});

  float amax = 1.25f;
  for (int64_t i = 0; i < c.layers; ++i) {
    std::string a = fmt::format("{}.layers.{}.{}.", c.root, i, c.attn);
    quantizers_.push_back({a + "q_bmm_quantizer", false, false, {}});
    for (const char* kvq : {"k_bmm_quantizer", "v_bmm_quantizer"}) {
      QuantizerState s{a + kvq, c.kv != KvMode::Off, c.kv == KvMode::Constant, {}};
      if (c.kv == KvMode::Calibrated) s.amax = Tensor::scalar(amax += 0.5f, c.amax_dtype);
      quantizers_.push_back(s);
    }
    for (const auto& m : quantized_modules(c, i)) {
      QuantizerState in{m + ".input_quantizer", c.input_quant, false, {}};
      if (c.input_quant) in.amax = Tensor::scalar(amax += 0.25f, c.amax_dtype);
      quantizers_.push_back(in);
      QuantizerState w{m + ".weight_quantizer", c.weight_quant, false, {}};
      if (c.weight_quant) w.amax = Tensor::scalar(3.0f, c.amax_dtype);
      quantizers_.push_back(w);
    }
  }
}

const Tensor& FakeTrainer::param(const std::string& name) const {
  for (const auto& p : params_)
    if (p.name == name) return p.tensor;
  throw std::runtime_error("no param " + name);
}

Tensor FakeTrainer::fold_weight(const QuantizerState& wq, const Tensor& w) const {
  ++folds;
  auto v = w.to_f32_vector();
  for (auto& x : v) x = std::round(x * 8.0f) / 8.0f;
  return Tensor::from_f32(v, w.shape(), w.dtype());
}

FakeEngine::FakeEngine(TinyConfig c, int64_t first_, int64_t end_)
    : cfg(c), first(first_), end(end_ < 0 ? c.layers : end_) {
  const int64_t q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  auto add = [&](const std::string& name, Shape shape, std::vector<ShardSlot> shards = {},
                 ParamKind kind = ParamKind::Weight, DType dt = DType::F32) {
    if (kind == ParamKind::Weight) dt = c.dtype;
    params_.push_back({name, shape, dt, shards, kind});
    Tensor t = Tensor::zeros(shape, dt);
    // Dummy-calibrated state as after the rollout's prolog: amax at the sentinel.
    if (kind != ParamKind::Weight) t.fill_f32(-1.0f);
    serving[name] = t;
  };
  if (first == 0) add("model.embed_tokens.weight", {c.vocab, c.hidden});
  for (int64_t i = first; i < end; ++i) {
    std::string l = fmt::format("model.layers.{}.", i), a = l + c.attn + ".";
    add(l + "input_layernorm.weight", {c.hidden});
    add(a + "qkv_proj.weight", {q + 2 * kv, c.hidden}, qkv_shards(c.heads, c.kv_heads, c.head_dim));
    if (c.qkv_bias) add(a + "qkv_proj.bias", {q + 2 * kv}, qkv_shards(c.heads, c.kv_heads, c.head_dim));
    add(a + "o_proj.weight", {c.hidden, q});
    add(l + "post_attention_layernorm.weight", {c.hidden});
    add(l + "mlp.gate_up_proj.weight", {2 * c.inter, c.hidden}, gate_up_shards(c.inter));
    add(l + "mlp.down_proj.weight", {c.hidden, c.inter});
    if (c.kv == KvMode::Calibrated) {
      add(a + "attn.k_bmm_quantizer._amax", {}, {}, ParamKind::KvAmax, c.amax_dtype);
      add(a + "attn.v_bmm_quantizer._amax", {}, {}, ParamKind::KvAmax, c.amax_dtype);
    }
    if (c.input_quant) {
      add(a + "qkv_proj.input_quantizer._amax", {}, fan_in_shards({"q", "k", "v"}),
          ParamKind::InputAmax, c.amax_dtype);
      add(a + "o_proj.input_quantizer._amax", {}, {}, ParamKind::InputAmax, c.amax_dtype);
      add(l + "mlp.gate_up_proj.input_quantizer._amax", {}, fan_in_shards({"gate", "up"}),
          ParamKind::InputAmax, c.amax_dtype);
      add(l + "mlp.down_proj.input_quantizer._amax", {}, {}, ParamKind::InputAmax, c.amax_dtype);
    }
  }
  if (end == c.layers) {
    add("model.norm.weight", {c.hidden});
    add("lm_head.weight", {c.vocab, c.hidden});
  }
}

std::vector<std::string> FakeEngine::non_local_prefixes() const {
  return pp_non_local_prefixes(cfg.layers, first, end);
}

void FakeEngine::begin_stage() {
  staged_.clear();
  for (const auto& [n, t] : serving) staged_[n] = t.clone();
}

void FakeEngine::commit() {
  for (auto& [n, t] : serving) t.copy_from(staged_.at(n));  // in place, as a real engine
  staged_.clear();
  ++commits;
}

std::map<std::string, Tensor> FakeEngine::snapshot() const {
  std::map<std::string, Tensor> s;
  for (const auto& [n, t] : serving) s[n] = t.clone();
  return s;
}

bool FakeEngine::same_as(const std::map<std::string, Tensor>& snap) const {
  if (snap.size() != serving.size()) return false;
  for (const auto& [n, t] : serving) {
    auto it = snap.find(n);
    if (it == snap.end() || !tensors_bitwise_equal(t, it->second)) return false;
  }
  return true;
}

}  // namespace qarl::refit::test
