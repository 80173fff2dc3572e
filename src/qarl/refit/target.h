// What a rollout engine implements so that refit can load into it (RefitTarget).
//
// The loader (loader.h) does all checking; the engine only describes its runtime tensors and
// offers a staged copy to write into, and a commit that publishes it. A failed refit calls
// abort() and the serving state stays bit-identical.
//
// Implementing it in the rollout engine (a few dozen lines):
//
//   class EngineRefitTarget : public qarl::refit::RefitTarget {
//     std::vector<RuntimeParam> runtime_params() const override {
//       // one entry per runtime tensor this shard serves, in any order:
//       //   {"model.layers.0.self_attn.qkv_proj.weight", {q+2kv rows, hidden}, BF16,
//       //    qkv_shards(n_heads, n_kv_heads, head_dim), ParamKind::Weight}
//       //   {"model.layers.0.self_attn.attn.k_bmm_quantizer._amax", {}, BF16, {},
//       //    ParamKind::KvAmax}   -- only for calibrated (non-constant) K/V quantizers
//       //   {"model.layers.0.self_attn.qkv_proj.input_quantizer._amax", {}, BF16,
//       //    fan_in_shards({"q","k","v"}), ParamKind::InputAmax}
//     }
//     std::vector<std::string> non_local_prefixes() const override {
//       return pp_non_local_prefixes(n_layers, first_layer, end_layer, ...);  // PP stages
//     }
//     void begin_stage() override { staged_ = clone of every serving tensor (or a second
//                                   preallocated set); }
//     Tensor staged(const std::string& n) override { return staged_.at(n); }
//     void commit() override { for each n: serving_[n].copy_from(staged_[n]);  // in place:
//                              keeps captured CUDA-graph pointers valid
//                              staged_.clear(); }
//     void abort() override { staged_.clear(); }
//   };
//
// commit() runs only after every check passed; it must not fail halfway (copying between
// preallocated buffers of equal size, or swapping pointers, cannot).
#pragma once
#include <string>
#include <vector>

#include "qarl/core/tensor.h"

namespace qarl::refit {

// A slice of a fused runtime tensor that one exported tensor fills: rows
// [row_offset, row_offset + rows) of dim 0 (q/k/v of qkv_proj, gate/up of gate_up_proj).
// For fan-in amax (ParamKind::InputAmax with several shards) rows is unused: every shard has
// the full shape and the staged value is the elementwise max over all shards.
struct ShardSlot {
  std::string id;
  int64_t row_offset = 0;
  int64_t rows = 0;
};

enum class ParamKind {
  Weight,     // weights, biases, norms: copied as is
  InputAmax,  // input quantizer amax: finite and > 0; shards merge by max
  KvAmax,     // calibrated K/V amax: reset to the sentinel -1 before each refit; after it
              // must be finite and > 0
};

struct RuntimeParam {
  std::string name;
  Shape shape;
  DType dtype = DType::BF16;
  std::vector<ShardSlot> shards;  // empty: loaded whole, exactly once
  ParamKind kind = ParamKind::Weight;
};

class RefitTarget {
 public:
  virtual ~RefitTarget() = default;
  // Every runtime tensor this shard serves and a refit must fill (complete: anything missing
  // from a refit is an error).
  virtual std::vector<RuntimeParam> runtime_params() const = 0;
  // Module paths this shard does not own (pipeline stages, vLLM's PPMissingLayer), e.g.
  // "model.layers.7": a mapped name equal to one or under one + "." is skipped.
  virtual std::vector<std::string> non_local_prefixes() const { return {}; }
  // Starts a refit: a staged copy of the serving state that staged() returns views into.
  virtual void begin_stage() = 0;
  // Writable full tensor (runtime shape and dtype) in the staged state.
  virtual Tensor staged(const std::string& runtime_name) = 0;
  // Publishes the staged state atomically; called once, after all checks passed.
  virtual void commit() = 0;
  // Drops the staged state; the serving state is untouched.
  virtual void abort() = 0;
};

// Row shards of a fused qkv_proj weight/bias: q = n_heads*head_dim rows, k and v =
// n_kv_heads*head_dim rows each.
std::vector<ShardSlot> qkv_shards(int64_t n_heads, int64_t n_kv_heads, int64_t head_dim);
// gate and up, intermediate rows each.
std::vector<ShardSlot> gate_up_shards(int64_t intermediate);
// Shards of a fused input-quantizer amax fed by several HF projections (max merge).
std::vector<ShardSlot> fan_in_shards(const std::vector<std::string>& ids);
// Non-local prefixes of a pipeline stage owning layers [first, end) of n_layers; the first
// stage owns the embedding, the last the final norm and lm_head.
std::vector<std::string> pp_non_local_prefixes(int64_t n_layers, int64_t first, int64_t end,
                                               const std::string& root = "model");

}  // namespace qarl::refit
