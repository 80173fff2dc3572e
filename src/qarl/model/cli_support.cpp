#include "qarl/model/cli_support.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <regex>

#include <nlohmann/json.hpp>

#include "qarl/core/error.h"
#include "qarl/io/checkpoint.h"
#include "qarl/model/forward.h"
#include "qarl/tokenizer/jsonl.h"

namespace qarl::model {

namespace fs = std::filesystem;

std::vector<std::vector<int32_t>> read_token_sequences(const std::string& path) {
  std::vector<std::vector<int32_t>> out;
  tokenizer::for_each_jsonl_line(path, [&](const nlohmann::json& j, size_t line) {
    if (!j.is_array()) throw err("line {}: expected a JSON array of token ids", line).file(path);
    std::vector<int32_t> seq;
    for (const auto& v : j) {
      if (!v.is_number_integer())
        throw err("line {}: token ids must be integers, got {}", line, v.dump()).file(path);
      const int64_t t = v.get<int64_t>();
      if (t < 0 || t > INT32_MAX) throw err("line {}: token id {} is out of range", line, t).file(path);
      seq.push_back(int32_t(t));
    }
    out.push_back(std::move(seq));
  });
  return out;
}

std::map<std::string, Tensor> load_kv_amax_file(const std::string& path, const Model& m) {
  io::Checkpoint ck = io::Checkpoint::open(path);
  static const std::regex re(R"(model\.layers\.(\d+)\.self_attn\.[kv]_bmm_quantizer\._amax)");
  std::map<std::string, Tensor> out;
  for (const auto& name : ck.names()) {
    std::smatch mt;
    if (!std::regex_match(name, mt, re))
      throw err("not a K/V quantizer amax (model.layers.N.self_attn.[kv]_bmm_quantizer._amax)")
          .file(path).tensor(name);
    if (std::stoll(mt[1]) >= m.config().num_hidden_layers)
      throw err("the model has only {} layers", m.config().num_hidden_layers).file(path).tensor(name);
    Tensor t = ck.get(name);
    if (t.numel() != 1)
      throw err("K/V amax must be a scalar, got shape {}", shape_str(t.shape())).file(path).tensor(name);
    out[name] = t.clone();
  }
  return out;
}

std::string logprobs_json_line(const std::vector<float>& lp) {
  std::string s = "{\"logprobs\": [";
  char buf[64];
  for (size_t i = 0; i < lp.size(); ++i) {
    std::snprintf(buf, sizeof(buf), "%.9g", double(lp[i]));
    if (i) s += ", ";
    s += buf;
  }
  s += "]}\n";
  return s;
}

std::vector<std::pair<std::string, float>> calibrate_kv(Model& m,
                                                        const std::vector<std::vector<int32_t>>& seqs) {
  std::vector<std::pair<std::string, quant::TensorQuantizer*>> cal;
  for (auto& [name, q] : m.kv_quantizers())
    if (q->enabled() && q->has_amax_buffer()) cal.emplace_back(name, q);
  for (auto& [name, q] : cal) q->start_calibration();
  try {
    score_sequences(m, seqs, 1.0f);
    for (auto& [name, q] : cal) q->finish_calibration();
  } catch (...) {
    // Leave no quantizer half-calibrated.
    for (auto& [name, q] : cal)
      if (q->calibrating()) *q = quant::TensorQuantizer(q->config());
    throw;
  }
  std::vector<std::pair<std::string, float>> table;
  for (auto& [name, q] : cal) table.emplace_back(name, float(q->amax_tensor().item()));
  return table;
}

void save_checkpoint_dir(const Model& m, const std::string& src_dir, const std::string& out_dir) {
  fs::path out = fs::absolute(out_dir);
  if (fs::exists(out) && !(fs::is_directory(out) && fs::is_empty(out)))
    throw usage_err("output '{}' exists and is not an empty directory", out_dir);
  fs::path tmp = out.parent_path() / (out.filename().string() + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  try {
    fs::create_directories(tmp);
    m.save(tmp.string());
    static const char* extra[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                  "vocab.json", "merges.txt", "added_tokens.json",
                                  "generation_config.json", "chat_template.jinja", "tokenizer.model"};
    if (fs::is_directory(src_dir))
      for (const char* f : extra)
        if (fs::exists(fs::path(src_dir) / f)) fs::copy_file(fs::path(src_dir) / f, tmp / f);
    if (fs::exists(out)) fs::remove(out);
    fs::rename(tmp, out);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace qarl::model
