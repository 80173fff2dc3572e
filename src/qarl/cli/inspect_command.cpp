// `qarl inspect PATH [--json]`: what a checkpoint (directory or .safetensors file) holds:
// every tensor (name, dtype, shape, bytes), totals, `__metadata__`, the config.json summary,
// and the value of every `*_quantizer._amax` (the calibrated ranges of quantized models).
// A malformed file is an Error(Input): exit code 3 with the file and the problem.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "qarl/cli/command.h"
#include "qarl/core/error.h"
#include "qarl/io/checkpoint.h"
#include "qarl/io/hf_config.h"

namespace {

using json = nlohmann::ordered_json;
using namespace qarl;

constexpr size_t kMaxAmaxValuesShown = 64;

bool is_amax(const std::string& name) {
  static const std::string suffix = "_quantizer._amax";
  return name.size() >= suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool decodable(DType t) {
  return t == DType::F32 || t == DType::BF16 || t == DType::F16 || t == DType::F64;
}

std::string g9(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(b);
  int u = 0;
  while (v >= 1024 && u < 4) { v /= 1024; ++u; }
  return u == 0 ? fmt::format("{} B", b) : fmt::format("{:.2f} {}", v, units[u]);
}

std::function<int()> setup(CLI::App& app) {
  struct Opts {
    std::string path;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("PATH", o->path, "checkpoint directory or .safetensors file")->required();
  app.add_flag("--json", o->json, "machine-readable output (one JSON object)");
  return [o] {
    auto ck = io::Checkpoint::open(o->path);
    std::optional<io::HFConfig> cfg;
    std::string cfg_path;
    std::error_code ec;
    if (std::filesystem::is_directory(o->path, ec) &&
        std::filesystem::exists(std::filesystem::path(o->path) / "config.json", ec)) {
      cfg_path = (std::filesystem::path(o->path) / "config.json").string();
      cfg = io::load_hf_config(cfg_path);
    }
    auto names = ck.names();
    uint64_t total_bytes = 0, total_params = 0;
    for (const auto& n : names) {
      const auto& i = ck.info(n);
      total_bytes += i.end - i.begin;
      total_params += uint64_t(shape_numel(i.shape));
    }
    // amax values, decoded.
    std::vector<std::pair<std::string, std::vector<double>>> amax;
    for (const auto& n : names)
      if (is_amax(n) && decodable(ck.info(n).dtype)) amax.emplace_back(n, ck.get(n).to_f64_vector());

    if (o->json) {
      json j;
      j["path"] = o->path;
      json shards = json::array();
      for (const auto& s : ck.shards()) {
        json md = json::object();
        for (const auto& [k, v] : s->metadata()) md[k] = v;
        shards.push_back({{"file", s->path()}, {"metadata", md}, {"tensors", s->tensors().size()}});
      }
      j["shards"] = shards;
      json ts = json::array();
      for (const auto& n : names) {
        const auto& i = ck.info(n);
        ts.push_back({{"name", n}, {"dtype", std::string(dtype_name(i.dtype))}, {"shape", i.shape},
                      {"bytes", i.end - i.begin}, {"file", ck.file_of(n)}});
      }
      j["tensors"] = ts;
      j["total_tensors"] = names.size();
      j["total_bytes"] = total_bytes;
      j["total_params"] = total_params;
      j["config"] = cfg ? json::parse(io::hf_config_to_json(*cfg)) : json(nullptr);
      json am = json::object();
      for (const auto& [n, v] : amax) {
        if (ck.info(n).shape.empty()) am[n] = v[0];
        else am[n] = v;
      }
      for (const auto& n : names)
        if (is_amax(n) && !decodable(ck.info(n).dtype)) am[n] = nullptr;  // not a float type
      j["amax"] = am;
      std::printf("%s\n", j.dump(2).c_str());
      return 0;
    }

    std::printf("%s: %zu tensor%s in %zu file%s\n", o->path.c_str(), names.size(),
                names.size() == 1 ? "" : "s", ck.shards().size(), ck.shards().size() == 1 ? "" : "s");
    size_t w = 4;
    for (const auto& n : names) w = std::max(w, n.size());
    std::string out = fmt::format("{:<{}}  {:<7}  {:<20}  {:>14}\n", "name", w, "dtype", "shape", "bytes");
    for (const auto& n : names) {
      const auto& i = ck.info(n);
      out += fmt::format("{:<{}}  {:<7}  {:<20}  {:>14}\n", n, w, dtype_name(i.dtype),
                         shape_str(i.shape), i.end - i.begin);
    }
    std::fputs(out.c_str(), stdout);
    std::printf("total: %zu tensors, %llu parameters, %llu bytes (%s)\n", names.size(),
                (unsigned long long)total_params, (unsigned long long)total_bytes,
                human_bytes(total_bytes).c_str());
    for (const auto& s : ck.shards()) {
      if (s->metadata().empty()) continue;
      std::printf("metadata of %s:\n", s->path().c_str());
      for (const auto& [k, v] : s->metadata()) std::printf("  %s = %s\n", k.c_str(), v.c_str());
    }
    if (cfg) {
      const auto& c = *cfg;
      std::printf("config (%s): %s, %d layers, hidden %d, intermediate %d, heads %d/%d kv, "
                  "head_dim %d, vocab %d, max positions %d, rope %s theta %s%s, rms_norm_eps %s, "
                  "tied embeddings %s, %s\n",
                  cfg_path.c_str(), c.architecture.c_str(), c.num_hidden_layers, c.hidden_size,
                  c.intermediate_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim,
                  c.vocab_size, c.max_position_embeddings, c.rope_scaling.type.c_str(),
                  g9(c.rope_theta).c_str(),
                  c.rope_scaling.type == "llama3" ? fmt::format(" factor {}", g9(c.rope_scaling.factor)).c_str() : "",
                  g9(c.rms_norm_eps).c_str(), c.tie_word_embeddings ? "yes" : "no", c.torch_dtype.c_str());
    }
    size_t n_amax = 0;
    for (const auto& n : names) n_amax += is_amax(n);
    if (n_amax) {
      std::printf("quantizer amax values (%zu):\n", n_amax);
      for (const auto& n : names) {
        if (!is_amax(n)) continue;
        const auto& i = ck.info(n);
        if (!decodable(i.dtype)) {
          std::printf("  %s = (%s, not decoded)\n", n.c_str(), std::string(dtype_name(i.dtype)).c_str());
          continue;
        }
        const auto& v = std::find_if(amax.begin(), amax.end(), [&](auto& p) { return p.first == n; })->second;
        if (i.shape.empty()) {
          std::printf("  %s = %s\n", n.c_str(), g9(v[0]).c_str());
          continue;
        }
        std::string s;
        for (size_t k = 0; k < v.size() && k < kMaxAmaxValuesShown; ++k) s += (k ? ", " : "") + g9(v[k]);
        if (v.size() > kMaxAmaxValuesShown) s += fmt::format(", ... ({} values)", v.size());
        std::printf("  %s %s = [%s]\n", n.c_str(), shape_str(i.shape).c_str(), s.c_str());
      }
    }
    return 0;
  };
}

QARL_REGISTER_COMMAND("inspect", "Show a checkpoint's tensors, metadata, config and quantizer amax values",
                      setup);
}  // namespace
