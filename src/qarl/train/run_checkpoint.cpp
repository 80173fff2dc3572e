#include "qarl/train/run_checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/core/log.h"
#include "qarl/io/safetensors.h"
#include "qarl/train/adamw.h"

namespace fs = std::filesystem;

namespace qarl::train {

namespace {
constexpr const char* kStateFile = "train_state.json";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr int kFormatVersion = 1;

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw runtime_err("cannot open directory to sync").file(dir);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw runtime_err("cannot sync directory").file(dir);
}

std::string step_name(int64_t step) { return "step_" + std::to_string(step); }

// step_N -> N; nullopt for anything else (including step_N.tmp).
std::optional<int64_t> parse_step_name(const std::string& name) {
  if (name.rfind("step_", 0) != 0 || name.size() == 5) return std::nullopt;
  int64_t v = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}

bool is_complete(const std::string& dir) {
  return is_file(dir + "/" + kStateFile);
}
}  // namespace

std::string checkpoints_dir(const std::string& run_dir) { return run_dir + "/checkpoints"; }

std::string save_run_checkpoint(const std::string& run_dir, const TrainState& state,
                                const AdamW* optimizer, const CheckpointOptions& o) {
  const std::string root = checkpoints_dir(run_dir);
  const std::string final_dir = root + "/" + step_name(state.step);
  const std::string tmp = final_dir + ".tmp";
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) throw runtime_err("cannot create checkpoint directory: {}", ec.message()).file(root);
  fs::remove_all(tmp, ec);  // a crashed earlier attempt at this step
  fs::create_directory(tmp, ec);
  if (ec) throw runtime_err("cannot create {}: {}", tmp, ec.message()).file(tmp);

  if (optimizer) {
    io::save_safetensors(tmp + "/" + kOptimizerFile, optimizer->state_tensors(),
                         {{"step", std::to_string(optimizer->step_count())},
                          {"format", "qarl-adamw-v1"}});
  }
  if (o.write_model) o.write_model(tmp);

  nlohmann::ordered_json j;
  j["format_version"] = kFormatVersion;
  j["step"] = state.step;
  j["data_position"] = state.data_position;
  j["seed"] = state.seed;
  j["rng_positions"] = state.rng_positions;
  j["has_optimizer"] = optimizer != nullptr;
  if (optimizer) j["optimizer_step"] = optimizer->step_count();
  j["extra"] = state.extra;
  // Written last inside the temporary directory: its presence marks the directory complete.
  write_file_atomic(tmp + "/" + kStateFile, j.dump(2) + "\n");
  fsync_dir(tmp);

  if (fs::exists(final_dir)) fs::remove_all(final_dir, ec);  // re-save of the same step
  fs::rename(tmp, final_dir, ec);
  if (ec) throw runtime_err("cannot publish checkpoint: {}", ec.message()).file(final_dir);
  fsync_dir(root);
  write_file_atomic(root + "/latest", step_name(state.step) + "\n");

  if (o.keep_last > 0) {
    std::vector<int64_t> steps;
    for (const auto& e : fs::directory_iterator(root))
      if (auto s = parse_step_name(e.path().filename().string()); s && e.is_directory()) steps.push_back(*s);
    std::sort(steps.rbegin(), steps.rend());
    for (size_t i = size_t(o.keep_last); i < steps.size(); ++i)
      if (steps[i] != state.step) fs::remove_all(root + "/" + step_name(steps[i]), ec);
  }
  return final_dir;
}

TrainState read_train_state(const std::string& dir) {
  const std::string path = dir + "/" + kStateFile;
  const std::string text = read_file(path);
  auto j = nlohmann::ordered_json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw err("not valid JSON").file(path);
  auto need = [&](const char* k) -> const nlohmann::ordered_json& {
    if (!j.contains(k)) throw err("missing").file(path).key(k);
    return j[k];
  };
  if (need("format_version") != kFormatVersion)
    throw err("unsupported format_version {}", need("format_version").dump()).file(path);
  TrainState s;
  try {
    s.step = need("step").get<int64_t>();
    s.data_position = need("data_position").get<uint64_t>();
    s.seed = need("seed").get<uint64_t>();
    s.rng_positions = need("rng_positions").get<std::map<std::string, uint64_t>>();
    s.extra = need("extra");
  } catch (const nlohmann::json::exception& e) {
    throw err("bad field type: {}", e.what()).file(path);
  }
  return s;
}

std::optional<FoundCheckpoint> find_latest_checkpoint(const std::string& run_dir) {
  const std::string root = checkpoints_dir(run_dir);
  if (!is_directory(root)) return std::nullopt;
  auto try_dir = [&](const std::string& dir) -> std::optional<FoundCheckpoint> {
    if (!is_complete(dir)) return std::nullopt;
    try {
      return FoundCheckpoint{dir, read_train_state(dir)};
    } catch (const Error& e) {
      log_warn("ignoring unreadable checkpoint {}: {}", dir, e.what());
      return std::nullopt;
    }
  };
  const std::string latest = root + "/latest";
  if (is_file(latest)) {
    std::string name = read_file(latest);
    while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) name.pop_back();
    if (parse_step_name(name)) {
      if (auto c = try_dir(root + "/" + name)) return c;
    }
    log_warn("{} names '{}', which is not a complete checkpoint; scanning", latest, name);
  }
  std::vector<int64_t> steps;
  for (const auto& e : fs::directory_iterator(root))
    if (auto s = parse_step_name(e.path().filename().string()); s && e.is_directory()) steps.push_back(*s);
  std::sort(steps.rbegin(), steps.rend());
  for (int64_t s : steps)
    if (auto c = try_dir(root + "/" + step_name(s))) return c;
  return std::nullopt;
}

void load_optimizer_state(const std::string& dir, AdamW& optimizer) {
  const std::string path = dir + "/" + kOptimizerFile;
  auto f = io::SafetensorsFile::open(path);
  std::map<std::string, Tensor> tensors;
  for (const auto& info : f.tensors()) tensors.emplace(info.name, f.get(info.name));
  auto it = f.metadata().find("step");
  if (it == f.metadata().end()) throw err("no 'step' in __metadata__").file(path);
  int64_t step = 0;
  try {
    step = std::stoll(it->second);
  } catch (const std::exception&) {
    throw err("bad 'step' in __metadata__: '{}'", it->second).file(path);
  }
  optimizer.load_state(tensors, step, path);
}

}  // namespace qarl::train
