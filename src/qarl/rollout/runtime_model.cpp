#include "qarl/rollout/runtime_model.h"

#include <fmt/format.h>

#include "qarl/core/error.h"
#include "qarl/io/checkpoint.h"
#include "qarl/io/hf_config.h"
#include "qarl/io/safetensors.h"
#include "qarl/refit/export.h"

namespace qarl::rollout {

std::map<std::string, Tensor> load_kv_amax_file(const std::string& path) {
  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  std::map<std::string, Tensor> out;
  for (const auto& info : f.tensors()) {
    if (!refit::is_kv_amax_name(info.name))
      throw err("not a K/V amax name (expected '*.k_bmm_quantizer._amax' or "
                "'*.v_bmm_quantizer._amax')").file(path).tensor(info.name);
    Tensor t = f.get(info.name);
    if (t.numel() != 1) throw err("a K/V amax must have one element, has {}", t.numel()).file(path).tensor(info.name);
    out[info.name] = t.reshape({}).clone();
  }
  return out;
}

RuntimeModel::Slice RuntimeModel::slice_of(const std::string& hf_name) const {
  auto m = mapper_.map(hf_name);
  QARL_ASSERT(m.has_value(), "'{}' maps to nothing", hf_name);
  Slice s{m->runtime_name, 0, -1};
  if (m->shard_id.empty()) return s;
  for (const auto& p : params_)
    if (p.name == m->runtime_name)
      for (const auto& sh : p.shards)
        if (sh.id == m->shard_id) return {p.name, sh.row_offset, sh.rows};
  QARL_ASSERT(false, "no shard '{}' of '{}'", m->shard_id, m->runtime_name);
  return s;
}

std::unique_ptr<RuntimeModel> RuntimeModel::load(const std::string& dir,
                                                 const quant::QuantRecipe& recipe,
                                                 const std::map<std::string, Tensor>& kv_amax) {
  std::unique_ptr<RuntimeModel> rm(new RuntimeModel());
  io::HFConfig cfg = io::load_hf_config(dir);
  model::validate_config(cfg, dir + "/config.json");
  io::Checkpoint ck = io::Checkpoint::open(dir);
  if (!ck.contains("model.embed_tokens.weight"))
    throw err("checkpoint has no tensor 'model.embed_tokens.weight'").file(dir);
  rm->dtype_ = ck.info("model.embed_tokens.weight").dtype;
  if (rm->dtype_ != DType::F32 && rm->dtype_ != DType::BF16 && rm->dtype_ != DType::F16)
    throw err("dtype {} is not supported (F32, BF16, F16)", dtype_name(rm->dtype_))
        .file(dir).tensor("model.embed_tokens.weight");
  rm->recipe_ = recipe;
  // The compute model: its layout (HF parameter names and shapes) and quantizer configs; its
  // values all come from the runtime tensors below.
  rm->model_ = std::make_unique<model::Model>(model::Model::random_init(cfg, 0, rm->dtype_));

  // Runtime tensors: every HF parameter mapped; fused ones collect their shards.
  const int64_t nh = cfg.num_attention_heads, nkv = cfg.num_key_value_heads, hd = cfg.head_dim;
  std::map<std::string, refit::RuntimeParam> by_name;
  std::vector<std::string> order;
  for (const auto& hf : rm->model_->param_names()) {
    auto m = rm->mapper_.map(hf);
    QARL_ASSERT(m.has_value(), "parameter '{}' maps to nothing", hf);
    auto [it, fresh] = by_name.try_emplace(m->runtime_name);
    refit::RuntimeParam& p = it->second;
    if (fresh) {
      order.push_back(m->runtime_name);
      p.name = m->runtime_name;
      p.dtype = rm->dtype_;
      p.shape = rm->model_->param(hf).shape();
      if (!m->shard_id.empty()) {
        int64_t rows = 0;
        if (p.name.ends_with("qkv_proj.weight") || p.name.ends_with("qkv_proj.bias")) {
          p.shards = refit::qkv_shards(nh, nkv, hd);
        } else if (p.name.ends_with("gate_up_proj.weight")) {
          p.shards = refit::gate_up_shards(cfg.intermediate_size);
        } else {
          QARL_ASSERT(false, "unexpected fused runtime tensor '{}'", p.name);
        }
        for (const auto& s : p.shards) rows += s.rows;
        p.shape[0] = rows;
      }
    }
  }
  for (const auto& n : order) rm->params_.push_back(by_name.at(n));

  // K/V quantizers: configure from the recipe (no amax yet); calibrated ones get a runtime
  // amax tensor, filled by the load below.
  rm->model_->configure_kv_quantizers(recipe, {}, false);
  std::map<std::string, Tensor> amax_src;  // HF name -> tensor
  for (const auto& [qname, q] : rm->model_->kv_quantizers()) {
    if (!q->has_amax_buffer()) continue;
    const std::string hf = qname + "._amax";
    Tensor t;
    if (auto it = kv_amax.find(hf); it != kv_amax.end()) t = it->second;
    else if (ck.contains(hf)) t = ck.get(hf);
    if (!t.defined())
      throw err("K/V quantizer '{}' is enabled with a calibrated amax, but no '{}' is in the "
                "checkpoint or the --kv-amax file (run qarl calibrate)", qname, hf)
          .tensor(hf);
    if (t.numel() != 1) throw err("a K/V amax must have one element, has {}", t.numel()).tensor(hf);
    t = t.reshape({});
    amax_src[hf] = t;
    rm->params_.push_back({refit::insert_kv_attn_segment(hf), {}, t.dtype(), {},
                           refit::ParamKind::KvAmax});
  }
  for (const auto& p : rm->params_) rm->serving_[p.name] = Tensor::zeros(p.shape, p.dtype);

  // The first load is a refit from the checkpoint: same mapper, same strict checks.
  refit::StrictLoader loader(*rm, rm->mapper_);
  loader.begin();
  try {
    for (const auto& name : ck.names()) {
      if (refit::is_kv_amax_name(name)) continue;  // taken from amax_src
      Tensor t = ck.get(name);
      if (t.dtype() != rm->dtype_) {
        if (!dtype_is_float(t.dtype()))
          throw err("dtype {} is not supported", dtype_name(t.dtype())).tensor(name);
        t = t.to(rm->dtype_);
      }
      loader.load(name, t);
    }
    for (const auto& [name, t] : amax_src) loader.load(name, t);
    loader.finish();
  } catch (Error& e) {
    if (e.file().empty()) e.file(dir);
    throw;
  }
  return rm;
}

void RuntimeModel::set_hooks(std::function<void()> before_refit, std::function<void()> after_commit) {
  before_refit_ = std::move(before_refit);
  after_commit_ = std::move(after_commit);
}

void RuntimeModel::begin_stage() {
  if (before_refit_) before_refit_();
  staged_.clear();
  for (const auto& [n, t] : serving_) staged_[n] = t.clone();
}

Tensor RuntimeModel::staged(const std::string& runtime_name) {
  auto it = staged_.find(runtime_name);
  QARL_ASSERT(it != staged_.end(), "no staged tensor '{}'", runtime_name);
  return it->second;
}

void RuntimeModel::commit() {
  serving_.swap(staged_);
  staged_.clear();
  refresh_model();
  if (after_commit_) after_commit_();
}

void RuntimeModel::abort() { staged_.clear(); }

void RuntimeModel::refresh_model() {
  model::Model& m = *model_;
  for (const auto& hf : m.param_names()) {
    Slice s = slice_of(hf);
    const Tensor& src = serving_.at(s.runtime_name);
    Tensor rows = s.rows < 0 ? src : src.narrow0(s.row_offset, s.rows);
    Tensor& dst = m.param(hf);
    QARL_ASSERT(rows.shape() == dst.shape(), "'{}' is {} in the runtime layout, {} in the model",
                hf, shape_str(rows.shape()), shape_str(dst.shape()));
    if (rows.dtype() == DType::F32) dst.copy_from(rows);
    else dst.copy_from(rows.to(DType::F32));
  }
  m.weights_changed();
  std::map<std::string, Tensor> amax;
  for (const auto& p : params_)
    if (p.kind == refit::ParamKind::KvAmax) {
      // runtime "...self_attn.attn.k_bmm_quantizer._amax" -> HF "...self_attn.k_bmm_quantizer._amax"
      std::string hf = p.name;
      hf.erase(hf.rfind(".attn.") + 1, 5);
      amax[hf] = serving_.at(p.name);
    }
  m.configure_kv_quantizers(recipe_, amax, true);
}

}  // namespace qarl::rollout
