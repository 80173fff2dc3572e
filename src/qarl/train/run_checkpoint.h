// Training-state checkpoints of a run, written atomically as directories:
//   RUN_DIR/checkpoints/step_N.tmp/   filled completely (train_state.json, optimizer
//                                     safetensors, and whatever the model hook writes:
//                                     HF-layout weights + _amax tensors), fsync'd,
//   -> rename to step_N/              (atomic), directory fsync'd,
//   -> RUN_DIR/checkpoints/latest     rewritten atomically with "step_N".
// A crash at any point leaves either the previous checkpoint as latest or the new one;
// a left-over step_N.tmp is ignored by resume and replaced by the next save of step N.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace qarl::train {

class AdamW;

struct TrainState {
  int64_t step = 0;                 // optimizer steps completed
  uint64_t data_position = 0;       // rl::DataIterator::position()
  std::map<std::string, uint64_t> rng_positions;  // named SequentialRng positions etc.
  uint64_t seed = 0;
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();  // loop-specific fields
};

struct CheckpointOptions {
  int keep_last = 0;  // > 0: delete older complete checkpoints beyond the newest keep_last
  // Called with the temporary directory before it is published: the model writes its
  // weights (HF layout) and K/V _amax tensors there. Exceptions abort the save (the
  // temporary directory is left behind and ignored).
  std::function<void(const std::string& tmp_dir)> write_model;
};

// Writes checkpoint `state.step`; returns the final directory.
std::string save_run_checkpoint(const std::string& run_dir, const TrainState& state,
                                const AdamW* optimizer, const CheckpointOptions& o = {});

struct FoundCheckpoint {
  std::string dir;
  TrainState state;
};
// The newest complete checkpoint: the one `latest` names if it is intact, else the
// highest-numbered complete step_N directory (never a .tmp); nullopt when there is none.
// A `latest` naming a missing or broken directory is not trusted (warned and skipped).
std::optional<FoundCheckpoint> find_latest_checkpoint(const std::string& run_dir);

TrainState read_train_state(const std::string& checkpoint_dir);  // Error naming the file
// Restores the optimizer's moments, masters and step from a checkpoint directory.
void load_optimizer_state(const std::string& checkpoint_dir, AdamW& optimizer);

std::string checkpoints_dir(const std::string& run_dir);  // RUN_DIR/checkpoints

}  // namespace qarl::train
