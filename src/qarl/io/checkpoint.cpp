// Checkpoint directories: model.safetensors, or shards listed in model.safetensors.index.json
// ({"metadata": {"total_size": N}, "weight_map": {tensor: shard file}}), or one .safetensors
// file. Every listed tensor must be in the shard the index names, every tensor of a shard
// must be listed, and no tensor may be in two shards: a checkpoint either loads completely
// and unambiguously or not at all.
#include "qarl/io/checkpoint.h"

#include <cstdio>
#include <filesystem>
#include <set>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/io/json_strict.h"

namespace qarl::io {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kSingle = "model.safetensors";
constexpr const char* kIndex = "model.safetensors.index.json";

// A shard name from an index must stay inside the checkpoint directory.
bool safe_shard_name(const std::string& s) {
  if (s.empty() || s[0] == '/') return false;
  for (const auto& part : fs::path(s)) if (part == "..") return false;
  return true;
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& path) {
  Checkpoint c;
  c.path_ = path;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw err("no such file or directory").file(path);
  if (!fs::is_directory(path, ec)) {
    c.shards_.push_back(std::make_shared<SafetensorsFile>(SafetensorsFile::open(path)));
    for (const auto& t : c.shards_[0]->tensors()) c.shard_of_[t.name] = 0;
    return c;
  }
  fs::path dir(path);
  bool has_single = fs::exists(dir / kSingle, ec), has_index = fs::exists(dir / kIndex, ec);
  if (has_single && has_index)
    throw err("both {} and {} are present: ambiguous checkpoint", kSingle, kIndex).file(path);
  if (has_single) {
    c.shards_.push_back(std::make_shared<SafetensorsFile>(SafetensorsFile::open((dir / kSingle).string())));
    for (const auto& t : c.shards_[0]->tensors()) c.shard_of_[t.name] = 0;
    return c;
  }
  if (!has_index)
    throw err("neither {} nor {} found in the directory", kSingle, kIndex).file(path);

  std::string index_path = (dir / kIndex).string();
  json idx = parse_json_strict_sorted(read_file(index_path), index_path);
  if (!idx.is_object()) throw err("index is not a JSON object").file(index_path);
  auto wm = idx.find("weight_map");
  if (wm == idx.end() || !wm->is_object())
    throw err("missing or non-object 'weight_map'").file(index_path).key("weight_map");
  std::map<std::string, size_t> shard_index;  // shard file -> position in shards_
  std::map<std::string, std::string> listed;   // tensor -> shard file
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it->is_string())
      throw err("shard file name must be a string").file(index_path).key("weight_map." + it.key());
    const std::string& shard = it->get_ref<const std::string&>();
    if (!safe_shard_name(shard))
      throw err("shard file '{}' is not a relative path inside the checkpoint", shard)
          .file(index_path).key("weight_map." + it.key());
    listed[it.key()] = shard;
    if (!shard_index.count(shard)) {
      std::string sp = (dir / shard).string();
      if (!fs::exists(sp, ec))
        throw err("shard '{}' listed for tensor '{}' does not exist", shard, it.key()).file(index_path);
      shard_index[shard] = c.shards_.size();
      c.shards_.push_back(std::make_shared<SafetensorsFile>(SafetensorsFile::open(sp)));
    }
  }
  std::map<std::string, std::string> found;  // tensor -> shard it is really in
  for (const auto& [shard, i] : shard_index) {
    for (const auto& t : c.shards_[i]->tensors()) {
      auto prev = found.find(t.name);
      if (prev != found.end())
        throw err("tensor is in two shards: '{}' and '{}'", prev->second, shard)
            .file(index_path).tensor(t.name);
      found[t.name] = shard;
      auto l = listed.find(t.name);
      if (l == listed.end())
        throw err("tensor in shard '{}' is not listed in weight_map", shard).file(index_path).tensor(t.name);
      if (l->second != shard)
        throw err("weight_map says shard '{}' but the tensor is in shard '{}'", l->second, shard)
            .file(index_path).tensor(t.name);
      c.shard_of_[t.name] = i;
    }
  }
  for (const auto& [name, shard] : listed)
    if (!found.count(name))
      throw err("tensor listed in weight_map is missing from shard '{}'", shard)
          .file(index_path).tensor(name);
  return c;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> v;
  for (const auto& [n, i] : shard_of_) v.push_back(n);
  return v;
}

bool Checkpoint::contains(const std::string& name) const { return shard_of_.count(name) > 0; }

const TensorInfo& Checkpoint::info(const std::string& name) const {
  auto it = shard_of_.find(name);
  if (it == shard_of_.end()) throw err("no such tensor in the checkpoint").file(path_).tensor(name);
  return shards_[it->second]->info(name);
}

Tensor Checkpoint::get(const std::string& name) const {
  auto it = shard_of_.find(name);
  if (it == shard_of_.end()) throw err("no such tensor in the checkpoint").file(path_).tensor(name);
  return shards_[it->second]->get(name);
}

const std::string& Checkpoint::file_of(const std::string& name) const {
  auto it = shard_of_.find(name);
  if (it == shard_of_.end()) throw err("no such tensor in the checkpoint").file(path_).tensor(name);
  return shards_[it->second]->path();
}

void save_checkpoint_tensors(const std::string& dir,
                             const std::vector<std::pair<std::string, Tensor>>& tensors,
                             uint64_t max_shard_bytes,
                             const std::map<std::string, std::string>& metadata) {
  if (max_shard_bytes == 0) throw usage_err("max_shard_bytes must be positive");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw runtime_err("cannot create directory: {}", ec.message()).file(dir);
  // Validate names once up front so that nothing is written for a bad set.
  safetensors_header(tensors, std::nullopt);

  // Greedy split in the given order; a tensor larger than the limit gets a shard of its own.
  std::vector<std::vector<std::pair<std::string, Tensor>>> shards(1);
  uint64_t cur = 0, total = 0;
  for (const auto& nt : tensors) {
    uint64_t nb = nt.second.nbytes();
    if (!shards.back().empty() && cur + nb > max_shard_bytes) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(nt);
    cur += nb;
    total += nb;
  }
  std::map<std::string, std::string> md = metadata;
  if (!md.count("format")) md["format"] = "pt";  // what transformers writes and expects
  fs::path d(dir);
  if (shards.size() == 1) {
    save_safetensors((d / kSingle).string(), shards[0], md);
    fs::remove(d / kIndex, ec);  // a stale index would make the directory ambiguous
    return;
  }
  json weight_map = json::object();
  std::vector<std::pair<std::string, Tensor>> sorted_names;
  std::map<std::string, std::string> wm;
  for (size_t i = 0; i < shards.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    save_safetensors((d / name).string(), shards[i], md);
    for (const auto& [n, t] : shards[i]) wm[n] = name;
  }
  for (const auto& [n, f] : wm) weight_map[n] = f;  // sorted, as transformers writes it
  json index = json::object();
  index["metadata"] = json::object({{"total_size", total}});
  index["weight_map"] = weight_map;
  write_file_atomic((d / kIndex).string(), index.dump(2) + "\n");
  fs::remove(d / kSingle, ec);
}

}  // namespace qarl::io
