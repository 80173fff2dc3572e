#include "qarl/refit/export.h"

#include <cmath>
#include <map>
#include <set>

#include "qarl/core/error.h"

namespace qarl::refit {
namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(),
                                                suffix) == 0;
}

// Amax must be a real calibration result: finite and > 0 everywhere.
void check_trainer_amax(const QuantizerState& q) {
  if (!q.amax.defined())
    throw runtime_err("enabled quantizer without a calibrated _amax (calibrate first)")
        .tensor(q.name + "._amax");
  for (double v : q.amax.to_f64_vector())
    if (!std::isfinite(v) || !(v > 0))
      throw runtime_err("trainer _amax is {} (must be finite and > 0)", v)
          .tensor(q.name + "._amax");
}

// Megatron-Bridge's derivation skips speculative-decoding stacks (quant_mapping.py, step 3):
// their attention is not served by the rollout's K/V quantizers.
bool in_draft_or_mtp(const std::string& name) {
  static const char* const kSkip[] = {"draft", "draft_layers", "draft_model_layer",
                                      "mtp", "mtp_layers", "mtp_model_layer"};
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string::npos) end = name.size();
    std::string_view seg(name.data() + start, end - start);
    for (const char* s : kSkip)
      if (seg == s) return true;
    start = end + 1;
  }
  return false;
}

}  // namespace

bool is_kv_amax_name(const std::string& name) {
  return ends_with(name, ".k_bmm_quantizer._amax") || ends_with(name, ".v_bmm_quantizer._amax");
}

std::vector<ExportItem> plan_export(const ExportSource& source) {
  std::vector<QuantizerState> quantizers = source.quantizers();
  std::map<std::string, const QuantizerState*> weight_quantizers;  // module path -> wq
  for (const auto& q : quantizers)
    if (ends_with(q.name, ".weight_quantizer") && q.enabled)
      weight_quantizers[q.name.substr(0, q.name.size() - std::string(".weight_quantizer").size())] = &q;

  std::vector<ExportItem> plan;
  std::set<std::string> seen;
  auto add = [&](ExportItem item) {
    if (!seen.insert(item.meta.name).second)
      throw runtime_err("exported twice").tensor(item.meta.name);
    plan.push_back(std::move(item));
  };

  for (auto& [name, tensor] : source.named_parameters()) {
    if (name.find("weight_quantizer") != std::string::npos) continue;
    if (!tensor.defined()) throw runtime_err("undefined parameter").tensor(name);
    TensorMeta meta{name, tensor.shape(), tensor.dtype()};
    const QuantizerState* wq = nullptr;
    if (ends_with(name, ".weight")) {
      auto it = weight_quantizers.find(name.substr(0, name.size() - 7));
      if (it != weight_quantizers.end()) wq = it->second;
    }
    if (wq) {
      QuantizerState wq_copy = *wq;
      add({meta, [&source, wq_copy, tensor] { return source.fold_weight(wq_copy, tensor); }});
    } else {
      add({meta, [tensor] { return tensor; }});
    }
  }

  for (const auto& q : quantizers) {
    if (!q.enabled || !ends_with(q.name, ".input_quantizer")) continue;
    if (q.constant_amax) continue;
    check_trainer_amax(q);
    Tensor amax = q.amax;
    add({{q.name + "._amax", amax.shape(), amax.dtype()}, [amax] { return amax; }});
  }

  for (const auto& q : quantizers) {
    bool kv = ends_with(q.name, ".k_bmm_quantizer") || ends_with(q.name, ".v_bmm_quantizer");
    if (!kv || !q.enabled || q.constant_amax || in_draft_or_mtp(q.name)) continue;
    check_trainer_amax(q);
    if (q.amax.numel() != 1)
      throw runtime_err("K/V amax must hold one element (a per-tensor scalar), shape is {}",
                        shape_str(q.amax.shape()))
          .tensor(q.name + "._amax");
    Tensor amax = q.amax.reshape({});  // always 0-d on the wire, as ModelOpt's buffer
    add({{q.name + "._amax", Shape{}, amax.dtype()}, [amax] { return amax; }});
  }
  return plan;
}

RefitMetadata export_metadata(const std::vector<ExportItem>& plan) {
  RefitMetadata meta;
  meta.reserve(plan.size());
  for (const auto& item : plan) meta.push_back(item.meta);
  return meta;
}

void for_each_export(const std::vector<ExportItem>& plan,
                     const std::function<void(const std::string&, const Tensor&)>& fn) {
  for (const auto& item : plan) {
    Tensor t = item.produce();
    if (!t.defined() || t.shape() != item.meta.shape || t.dtype() != item.meta.dtype)
      throw runtime_err("produced {} {} but planned {} {}",
                        t.defined() ? dtype_name(t.dtype()) : "undefined",
                        t.defined() ? shape_str(t.shape()) : "", dtype_name(item.meta.dtype),
                        shape_str(item.meta.shape))
          .tensor(item.meta.name);
    fn(item.meta.name, t);
  }
}

}  // namespace qarl::refit
