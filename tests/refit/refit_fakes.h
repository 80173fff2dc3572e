// Small fakes of the two sides of a refit, for tests: a trainer (ExportSource) with a tiny
// dense transformer in HF naming and configurable quantizers, and a rollout engine
// (RefitTarget) with the vLLM-style runtime layout (fused qkv_proj / gate_up_proj, K/V amax
// under self_attn.attn.). The tensors are real; only the models around them are fakes.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "qarl/refit/export.h"
#include "qarl/refit/target.h"

namespace qarl::refit::test {

enum class KvMode { Off, Calibrated, Constant };

struct TinyConfig {
  int64_t layers = 3, hidden = 12, heads = 3, kv_heads = 1, head_dim = 4, inter = 10,
          vocab = 17;
  bool qkv_bias = true;
  KvMode kv = KvMode::Calibrated;
  bool input_quant = false;   // input quantizers on q/k/v/o/gate/up/down
  bool weight_quant = false;  // weight quantizers on the same
  DType dtype = DType::BF16;
  DType amax_dtype = DType::BF16;
  std::string root = "model";       // "backbone" for Nemotron-H style
  std::string attn = "self_attn";   // "mixer" for Nemotron-H style
  uint64_t seed = 1;
};

class FakeTrainer : public ExportSource {
 public:
  explicit FakeTrainer(TinyConfig c);
  std::vector<NamedTensor> named_parameters() const override { return params_; }
  std::vector<QuantizerState> quantizers() const override { return quantizers_; }
  // Stand-in for fake quantization: rounds to a 1/8 grid (deterministic, changes values), so
  // tests can tell folded from raw weights.
  Tensor fold_weight(const QuantizerState& wq, const Tensor& w) const override;
  mutable int folds = 0;

  std::vector<NamedTensor> params_;
  std::vector<QuantizerState> quantizers_;
  TinyConfig cfg;
  const Tensor& param(const std::string& name) const;
};

class FakeEngine : public RefitTarget {
 public:
  // first/end: the layers this pipeline stage owns.
  FakeEngine(TinyConfig c, int64_t first = 0, int64_t end = -1);
  std::vector<RuntimeParam> runtime_params() const override { return params_; }
  std::vector<std::string> non_local_prefixes() const override;
  void begin_stage() override;
  Tensor staged(const std::string& n) override { return staged_.at(n); }
  void commit() override;
  void abort() override { staged_.clear(); ++aborts; }

  // Deep copy of the serving state, and a bitwise comparison against one.
  std::map<std::string, Tensor> snapshot() const;
  bool same_as(const std::map<std::string, Tensor>& snap) const;

  std::vector<RuntimeParam> params_;
  std::map<std::string, Tensor> serving, staged_;
  TinyConfig cfg;
  int64_t first, end;
  int commits = 0, aborts = 0;
};

}  // namespace qarl::refit::test
