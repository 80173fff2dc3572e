// A Hugging Face style checkpoint directory: config.json, model.safetensors or shards listed
// in model.safetensors.index.json, tokenizer files. Also accepts a single .safetensors path.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qarl/core/tensor.h"
#include "qarl/io/safetensors.h"

namespace qarl::io {

class Checkpoint {
 public:
  // PATH: a directory (model.safetensors or model.safetensors.index.json inside) or a file.
  static Checkpoint open(const std::string& path);

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // every tensor, sorted
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  Tensor get(const std::string& name) const;  // borrowed from the mmapped shard
  const std::string& file_of(const std::string& name) const;
  const std::vector<std::shared_ptr<SafetensorsFile>>& shards() const { return shards_; }

 private:
  std::string path_;
  std::vector<std::shared_ptr<SafetensorsFile>> shards_;
  std::map<std::string, size_t> shard_of_;  // tensor name -> shard index
};

// Writes a checkpoint directory: tensors split into shards of at most `max_shard_bytes`
// (one model.safetensors if it all fits, else model-0000k-of-0000n.safetensors plus the index),
// each file written atomically. Other files (config.json, ...) are the caller's.
void save_checkpoint_tensors(const std::string& dir,
                             const std::vector<std::pair<std::string, Tensor>>& tensors,
                             uint64_t max_shard_bytes = 5ull << 30,
                             const std::map<std::string, std::string>& metadata = {});

}  // namespace qarl::io
