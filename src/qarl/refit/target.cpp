#include "qarl/refit/target.h"

#include <fmt/format.h>

namespace qarl::refit {

std::vector<ShardSlot> qkv_shards(int64_t n_heads, int64_t n_kv_heads, int64_t head_dim) {
  int64_t q = n_heads * head_dim, kv = n_kv_heads * head_dim;
  return {{"q", 0, q}, {"k", q, kv}, {"v", q + kv, kv}};
}

std::vector<ShardSlot> gate_up_shards(int64_t intermediate) {
  return {{"gate", 0, intermediate}, {"up", intermediate, intermediate}};
}

std::vector<ShardSlot> fan_in_shards(const std::vector<std::string>& ids) {
  std::vector<ShardSlot> out;
  for (const auto& id : ids) out.push_back({id, 0, 0});
  return out;
}

std::vector<std::string> pp_non_local_prefixes(int64_t n_layers, int64_t first, int64_t end,
                                               const std::string& root) {
  std::vector<std::string> out;
  for (int64_t i = 0; i < n_layers; ++i)
    if (i < first || i >= end) out.push_back(fmt::format("{}.layers.{}", root, i));
  if (first > 0) out.push_back(root + ".embed_tokens");
  if (end < n_layers) {
    out.push_back(root + ".norm");
    out.push_back("lm_head");
  }
  return out;
}

}  // namespace qarl::refit
