// Strict, all-or-nothing loading of a refit stream into a RefitTarget (reference-spec 3.3,
// the superseded strict contract, restored): before the refit every calibrated K/V amax is
// reset to the sentinel -1 in the staged state; each incoming tensor is mapped (NameMapper),
// checked and copied into the staged state; at finish() every runtime tensor (every shard
// exactly once) must have arrived and every K/V amax must be finite and > 0; only then the
// target commits. Any failure aborts the staged state (the serving state is unchanged) and
// throws an Error naming the tensor:
//   unknown root / mapper errors (name_map.h), unexpected runtime name, duplicate (tensor or
//   shard), missing (tensor or shard), shape or dtype mismatch, non-finite or non-positive
//   amax (input or K/V), a K/V amax still at the sentinel.
// Names mapped under one of the target's non-local prefixes are skipped (pipeline stages).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "qarl/refit/name_map.h"
#include "qarl/refit/stream.h"
#include "qarl/refit/target.h"

namespace qarl::refit {

inline constexpr float kAmaxSentinel = -1.0f;

struct LoadReport {
  size_t loaded = 0;             // tensors (or shards) copied
  size_t skipped_non_local = 0;  // other pipeline stages' names
  size_t ignored = 0;            // names the family ignores (e.g. rotary inv_freq)
  size_t kv_amax_validated = 0;
};

class StrictLoader {
 public:
  StrictLoader(RefitTarget& target, NameMapper mapper);
  ~StrictLoader();  // aborts an unfinished refit
  StrictLoader(const StrictLoader&) = delete;
  StrictLoader& operator=(const StrictLoader&) = delete;

  // A dry run over the metadata before any byte moves: mapping, shapes, dtypes, duplicates
  // and completeness. Touches no state. The transport metadata should pass it.
  void check_metadata(const RefitMetadata& meta) const;

  void begin();  // begin_stage + sentinel reset of every K/V amax
  void load(const std::string& hf_name, const Tensor& tensor);
  LoadReport finish();  // completeness + amax validation + commit
  void abort();         // drops the staged state (idempotent)

 private:
  struct Slot;  // one target tensor: which shards have arrived
  struct Resolved {
    enum { Load, SkipNonLocal, Ignored } what;
    size_t param = 0;
    int shard = -1;  // index into RuntimeParam::shards; -1 for whole tensors
  };
  Resolved resolve(const std::string& hf_name, const Shape& shape, DType dtype) const;
  void load_impl(const std::string& hf_name, const Tensor& tensor);
  LoadReport finish_impl();

  RefitTarget& target_;
  NameMapper mapper_;  // a copy: callers often pass a temporary
  std::vector<RuntimeParam> params_;
  std::map<std::string, size_t> index_;
  std::vector<std::string> non_local_;
  enum class State { Idle, Staging, Done } state_ = State::Idle;
  std::vector<std::vector<bool>> seen_;  // per param, per shard (one entry when whole)
  LoadReport report_;
};

}  // namespace qarl::refit
