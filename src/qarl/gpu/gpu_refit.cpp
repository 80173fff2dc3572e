#include "qarl/gpu/gpu_refit.h"

#include "qarl/core/error.h"
#include "qarl/refit/loader.h"

namespace qarl::gpu {

namespace {
bool is_matrix(const Tensor& master) { return master.ndim() == 2; }
}  // namespace

std::vector<refit::NamedTensor> GpuModelExport::named_parameters() const {
  std::vector<refit::NamedTensor> out;
  for (const auto& name : m_.param_names()) {
    const Tensor master = m_.master(name);
    if (is_matrix(master)) {
      // The bf16 working copy the trainer's GEMMs read (a row slice of a fused buffer).
      Tensor w = Tensor::borrow(m_.working_of(name), master.shape(), DType::BF16,
                                master.storage(), Device::CUDA);
      out.push_back({name, w});
    } else {
      out.push_back({name, master});  // norms and biases: the fp32 values the trainer uses
    }
  }
  return out;
}

std::vector<refit::QuantizerState> GpuModelExport::quantizers() const {
  std::vector<refit::QuantizerState> out;
  for (int l = 0; l < m_.config().num_hidden_layers; ++l)
    for (char w : {'k', 'v'}) {
      const quant::TensorQuantizer& q = w == 'k' ? m_.k_quantizers()[size_t(l)] : m_.v_quantizers()[size_t(l)];
      refit::QuantizerState s;
      s.name = model::kv_quantizer_name(l, w);
      s.enabled = q.enabled();
      s.constant_amax = q.config().use_constant_amax;
      if (q.has_amax_buffer()) s.amax = q.amax_tensor();
      out.push_back(std::move(s));
    }
  return out;
}

Tensor GpuModelExport::fold_weight(const refit::QuantizerState& wq, const Tensor&) const {
  throw Error("GPU export: weight quantizers are not supported (KV-only recipes)", ErrorKind::Internal)
      .tensor(wq.name);
}

GpuRolloutTarget::GpuRolloutTarget(GpuModel& m) : m_(m) {
  const auto& c = m.config();
  const int64_t nh = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.head_dim;
  std::map<std::string, refit::RuntimeParam> by_name;
  std::vector<std::string> order;
  for (const auto& hf : m.param_names()) {
    auto mapped = mapper_.map(hf);
    QARL_ASSERT(mapped.has_value(), "parameter '{}' maps to nothing", hf);
    const Tensor master = m.master(hf);
    auto [it, fresh] = by_name.try_emplace(mapped->runtime_name);
    refit::RuntimeParam& p = it->second;
    if (!fresh) continue;
    order.push_back(mapped->runtime_name);
    p.name = mapped->runtime_name;
    p.dtype = is_matrix(master) ? DType::BF16 : DType::F32;
    p.shape = master.shape();
    if (!mapped->shard_id.empty()) {
      if (p.name.ends_with("qkv_proj.weight") || p.name.ends_with("qkv_proj.bias"))
        p.shards = refit::qkv_shards(nh, nkv, hd);
      else if (p.name.ends_with("gate_up_proj.weight"))
        p.shards = refit::gate_up_shards(c.intermediate_size);
      else
        QARL_ASSERT(false, "unexpected fused runtime tensor '{}'", p.name);
      int64_t rows = 0;
      for (const auto& s : p.shards) rows += s.rows;
      p.shape[0] = rows;
    }
    // The rollout model's own storage behind this runtime name: the fused buffer that holds
    // the first shard (qkv / gate_up are whole fused tensors), bf16 copy or fp32 vector.
    Tensor own;
    if (is_matrix(master)) {
      own = Tensor::borrow(m.working_of(hf), p.shape, DType::BF16, master.storage(), Device::CUDA);
    } else {
      own = Tensor::borrow(master.data(), p.shape, DType::F32, master.storage(), Device::CUDA);
    }
    serving_[p.name] = own;
  }
  for (const auto& n : order) params_.push_back(by_name.at(n));
  for (int l = 0; l < c.num_hidden_layers; ++l)
    for (char w : {'k', 'v'}) {
      const quant::TensorQuantizer& q = w == 'k' ? m.k_quantizers()[size_t(l)] : m.v_quantizers()[size_t(l)];
      if (!q.has_amax_buffer()) continue;
      const std::string rn = refit::insert_kv_attn_segment(model::kv_quantizer_name(l, w) + "._amax");
      // The amax travels in the dtype the trainer's quantizer holds it in (bf16 from a bf16
      // calibration, fp32 otherwise); both models come from one CPU model, so they agree.
      const DType dt = q.amax_tensor().defined() ? q.amax_tensor().dtype() : DType::F32;
      params_.push_back({rn, {}, dt, {}, refit::ParamKind::KvAmax});
    }
}

void GpuRolloutTarget::begin_stage() {
  staged_.clear();
  for (const auto& p : params_)
    staged_[p.name] = p.kind == refit::ParamKind::KvAmax ? Tensor::zeros({}, p.dtype)  // host scalar
                                                         : serving_.at(p.name).clone();
}

Tensor GpuRolloutTarget::staged(const std::string& runtime_name) {
  auto it = staged_.find(runtime_name);
  QARL_ASSERT(it != staged_.end(), "no staged tensor '{}'", runtime_name);
  return it->second;
}

void GpuRolloutTarget::commit() {
  // Device-to-device copies between buffers of equal size, then the amax values.
  for (const auto& p : params_) {
    if (p.kind == refit::ParamKind::KvAmax) {
      std::string hf = p.name;
      hf.erase(hf.rfind(".attn.") + 1, 5);  // runtime ...self_attn.attn.k_bmm... -> HF name
      const int layer = std::stoi(hf.substr(hf.find("layers.") + 7));
      const char which = hf[hf.rfind("_bmm_quantizer") - 1];
      m_.set_kv_amax(layer, which, staged_.at(p.name));
    } else {
      serving_.at(p.name).copy_from(staged_.at(p.name));
    }
  }
  staged_.clear();
}

double refit_gpu(const GpuModel& policy, GpuRolloutTarget& rollout) {
  GpuModelExport src(policy);
  const auto plan = refit::plan_export(src);
  refit::StrictLoader loader(rollout, rollout.mapper());
  loader.begin();
  double bytes = 0;
  refit::for_each_export(plan, [&](const std::string& n, const Tensor& t) {
    bytes += double(t.nbytes());
    loader.load(n, t);
  });
  loader.finish();
  return bytes;
}

}  // namespace qarl::gpu
