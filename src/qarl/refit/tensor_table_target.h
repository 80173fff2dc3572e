// A ready-made RefitTarget over tensors an engine already owns: register each serving tensor
// with its RuntimeParam, and refit stages into lazily allocated copies, then commits by
// copying staged -> serving in place (data pointers never change, so captured CUDA graphs
// and cached views stay valid). abort() drops the copies; the serving tensors are untouched
// until commit. A rollout engine can use it directly:
//
//   TensorTableTarget t;
//   t.add({"model.layers.0.self_attn.qkv_proj.weight", w.shape(), w.dtype(),
//          qkv_shards(h, hkv, d), ParamKind::Weight}, w);
//   t.add({"model.layers.0.self_attn.attn.k_bmm_quantizer._amax", {}, DType::BF16, {},
//          ParamKind::KvAmax}, k_quantizer_amax_tensor);
//   t.set_non_local_prefixes(pp_non_local_prefixes(n_layers, first, end));
//   StrictLoader loader(t, NameMapper::dense());
//
// Peak memory during a refit is the serving state plus a staged copy of every tensor the
// refit writes (all of them, for a complete refit).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "qarl/refit/target.h"

namespace qarl::refit {

class TensorTableTarget : public RefitTarget {
 public:
  // `serving` must match the param's shape and dtype (Error otherwise); it is shared, not
  // copied: the engine keeps using the same storage.
  void add(RuntimeParam param, Tensor serving);
  void set_non_local_prefixes(std::vector<std::string> prefixes) { non_local_ = std::move(prefixes); }

  std::vector<RuntimeParam> runtime_params() const override { return params_; }
  std::vector<std::string> non_local_prefixes() const override { return non_local_; }
  void begin_stage() override;
  Tensor staged(const std::string& runtime_name) override;
  void commit() override;
  void abort() override { staged_.clear(); }

  const Tensor& serving(const std::string& name) const;

 private:
  std::vector<RuntimeParam> params_;
  std::map<std::string, Tensor> serving_, staged_;
  std::vector<std::string> non_local_;
};

}  // namespace qarl::refit
