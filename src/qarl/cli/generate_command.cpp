// `qarl generate`: token, text or chat prompts in, sampled completions with their logprobs out.
//
//   qarl generate --model DIR --prompts IN.jsonl --out OUT.jsonl [--recipe QUANT.yaml]
//     [--kv-amax F] [--kv-cache auto|fp8|nvfp4] [--max-new-tokens N] [--temperature T]
//     [--top-p P] [--top-k K] [--min-p P] [--n N] [--seed S]
//     [--kv-cache-bytes B | --kv-cache-fraction F] [--block-size B]
//
// Input: one JSON object per line with exactly one of {"tokens": [ids...]}, {"text": "..."}
// (encoded with the checkpoint's tokenizer, no special tokens added) or {"messages": [{"role",
// "content"}...]} (rendered with the checkpoint's chat template plus the assistant generation
// prompt), optionally overriding the sampling options for that prompt: "max_new_tokens",
// "temperature", "top_p", "top_k", "min_p", "n", "seed", "stop_token_ids", "stop" (stop
// strings; --stop gives defaults). Output: one line per sample, in input order (samples of a
// prompt in order): {"prompt_tokens": [...], "tokens": [...], "logprobs": [...],
// "finish_reason": "stop"|"length", "text": "..."}, logprobs with %.9g (float32 round trip);
// "text" (the completion, cut before a stop string) is there when the checkpoint has a
// tokenizer. A prompt that cannot run gets one line {"prompt_tokens": [...], "error":
// "line N: ..."} and the others still complete.
#include <cmath>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "qarl/cli/command.h"
#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/core/log.h"
#include "qarl/core/progress.h"
#include "qarl/quant/recipe.h"
#include "qarl/rollout/engine.h"
#include "qarl/rollout/runtime_model.h"
#include "qarl/tokenizer/chat.h"
#include "qarl/tokenizer/jsonl.h"
#include "qarl/tokenizer/stop_strings.h"
#include "qarl/tokenizer/tokenizer.h"
#include "qarl/kernels/cuda/device.h"
#if QARL_HAVE_CUDA
#include "qarl/gpu/generate.h"
#include "qarl/gpu/gpu_model.h"
#endif

namespace {

using namespace qarl;
using nlohmann::json;

struct Opts {
  std::string model, prompts, out, recipe, kv_amax, kv_cache = "auto", device = "cpu", gemm_mode = "exact";
  int max_new_tokens = 16, top_k = 0, n = 1, block_size = 16;
  float temperature = 1.0f, top_p = 1.0f, min_p = 0.0f;
  uint64_t seed = 0, kv_cache_bytes = 0;
  double kv_cache_fraction = 0.0;
  int max_batch_tokens = 512;
  bool ignore_eos = false;
  std::vector<std::string> stop;
};

// The checkpoint's tokenizer, when it has one (text prompts, stop strings, "text" output).
struct TextSupport {
  std::optional<tokenizer::Tokenizer> tok;
  std::optional<tokenizer::ChatTemplate> chat;
  std::string chat_error, load_error;
};

// Per-line request; `error` set when the line itself is unusable.
struct Parsed {
  rollout::GenRequest req;
  std::vector<std::string> stop;  // stop strings of this prompt
  std::string error;
};

template <typename T>
bool get_num(const json& j, const char* key, T& out, std::string& error) {
  if (!j.contains(key)) return true;
  const json& v = j.at(key);
  if constexpr (std::is_integral_v<T>) {
    if (!v.is_number_integer()) { error = fmt::format("\"{}\" must be an integer", key); return false; }
    if constexpr (std::is_unsigned_v<T>) {
      if (v.is_number_unsigned()) { out = v.get<T>(); return true; }
      if (v.get<int64_t>() < 0) { error = fmt::format("\"{}\" must be >= 0", key); return false; }
      out = T(v.get<int64_t>());
    } else {
      int64_t x = v.get<int64_t>();
      if (x < INT32_MIN || x > INT32_MAX) { error = fmt::format("\"{}\" is out of range", key); return false; }
      out = T(x);
    }
  } else {
    if (!v.is_number()) { error = fmt::format("\"{}\" must be a number", key); return false; }
    out = v.get<T>();
  }
  return true;
}

Parsed parse_line(const json& j, const rollout::SamplingParams& defaults,
                  const std::vector<std::string>& default_stop, const TextSupport& ts) {
  Parsed p;
  p.req.params = defaults;
  p.stop = default_stop;
  int forms = j.is_object() ? int(j.contains("tokens")) + int(j.contains("text")) +
                                  int(j.contains("messages"))
                            : 0;
  if (forms != 1) {
    p.error = "expected an object with exactly one of \"tokens\": [ids], \"text\": str or "
              "\"messages\": [{\"role\", \"content\"}]";
    return p;
  }
  if (j.contains("tokens")) {
    if (!j.at("tokens").is_array()) { p.error = "\"tokens\" must be an array of token ids"; return p; }
    for (const json& t : j.at("tokens")) {
      if (!t.is_number_integer() || t.get<int64_t>() < INT32_MIN || t.get<int64_t>() > INT32_MAX) {
        p.error = fmt::format("token {} is not a token id", t.dump());
        return p;
      }
      p.req.prompt.push_back(int32_t(t.get<int64_t>()));
    }
  } else {
    if (!ts.tok) { p.error = "text prompts need the checkpoint's tokenizer: " + ts.load_error; return p; }
    try {
      if (j.contains("text")) {
        if (!j.at("text").is_string()) { p.error = "\"text\" must be a string"; return p; }
        p.req.prompt = ts.tok->encode(j.at("text").get<std::string>(), false);
      } else {
        if (!ts.chat) { p.error = ts.chat_error; return p; }
        auto msgs = tokenizer::chat_messages_from_json(j.at("messages"));
        p.req.prompt = ts.tok->encode(tokenizer::render_chat(*ts.chat, msgs), false);
      }
    } catch (const std::exception& e) {
      p.error = e.what();
      return p;
    }
  }
  if (j.contains("stop")) {
    const json& st = j.at("stop");
    if (!st.is_array()) { p.error = "\"stop\" must be an array of strings"; return p; }
    p.stop.clear();
    for (const json& x : st) {
      if (!x.is_string() || x.get<std::string>().empty()) { p.error = "\"stop\" must hold non-empty strings"; return p; }
      p.stop.push_back(x.get<std::string>());
    }
  }
  if (!p.stop.empty()) {
    if (!ts.tok) { p.error = "stop strings need the checkpoint's tokenizer: " + ts.load_error; return p; }
    auto tok = *ts.tok;
    auto stops = p.stop;
    p.req.params.stop_checker = [tok, stops] {
      auto m = std::make_shared<tokenizer::StopStringMatcher>(tok, stops);
      return std::function<bool(int32_t)>([m](int32_t id) { return m->push(id).has_value(); });
    };
  }
  auto& sp = p.req.params;
  uint64_t seed = 0;
  bool has_seed = j.contains("seed");
  if (!get_num(j, "max_new_tokens", sp.max_new_tokens, p.error) ||
      !get_num(j, "temperature", sp.temperature, p.error) ||
      !get_num(j, "top_p", sp.top_p, p.error) || !get_num(j, "top_k", sp.top_k, p.error) ||
      !get_num(j, "min_p", sp.min_p, p.error) || !get_num(j, "n", sp.n, p.error) ||
      !get_num(j, "seed", seed, p.error))
    return p;
  if (has_seed) sp.seed = seed;
  if (j.contains("stop_token_ids")) {
    const json& s = j.at("stop_token_ids");
    if (!s.is_array()) { p.error = "\"stop_token_ids\" must be an array"; return p; }
    for (const json& t : s) {
      if (!t.is_number_integer()) { p.error = "\"stop_token_ids\" must hold token ids"; return p; }
      int64_t v = t.get<int64_t>();
      if (v < INT32_MIN || v > INT32_MAX) { p.error = fmt::format("stop token id {} is out of range", v); return p; }
      sp.stop_token_ids.push_back(int32_t(v));
    }
  }
  return p;
}

std::string ids_json(const std::vector<int32_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

std::string logprobs_json(const std::vector<float>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ",";
    s += std::isfinite(v[i]) ? fmt::format("{:.9g}", v[i]) : std::string("null");
  }
  return s + "]";
}

std::function<int()> setup(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.add_option("--model", o->model, "checkpoint directory")->required();
  app.add_option("--prompts", o->prompts, "input JSONL: {\"tokens\": [...]} per line")->required();
  app.add_option("--out", o->out, "output JSONL: one line per sample")->required();
  app.add_option("--recipe", o->recipe, "quantization recipe (ModelOpt YAML) for the K/V quantizers");
  app.add_option("--kv-amax", o->kv_amax, "safetensors file with K/V _amax tensors (else the checkpoint's)");
  app.add_option("--kv-cache", o->kv_cache, "KV cache storage: auto (fake-quantized fp32, bf16 on cuda), fp8, nvfp4")
      ->check(CLI::IsMember({"auto", "fp8", "nvfp4"}));
  app.add_option("--max-new-tokens", o->max_new_tokens, "tokens to generate per sample (default 16)");
  app.add_option("--temperature", o->temperature, "sampling temperature; 0 = greedy (default 1)");
  app.add_option("--top-p", o->top_p, "nucleus sampling mass in (0, 1] (default 1 = off)");
  app.add_option("--top-k", o->top_k, "keep the k most likely tokens (default 0 = off)");
  app.add_option("--min-p", o->min_p, "drop tokens below min_p * max probability (default 0)");
  app.add_option("--n", o->n, "samples per prompt (default 1)");
  app.add_option("--seed", o->seed, "seed for prompts without their own (default 0)");
  auto* bytes = app.add_option("--kv-cache-bytes", o->kv_cache_bytes, "KV cache budget in bytes");
  auto* frac = app.add_option("--kv-cache-fraction", o->kv_cache_fraction,
                              "KV cache budget as a fraction of RAM (default 0.05)");
  bytes->excludes(frac);
  app.add_option("--block-size", o->block_size, "tokens per KV cache block (default 16)");
  app.add_option("--max-batch-tokens", o->max_batch_tokens, "tokens per forward step (default 512)");
  app.add_flag("--ignore-eos", o->ignore_eos, "do not stop at the config's eos_token_id");
  app.add_option("--stop", o->stop, "stop string (repeatable; needs the checkpoint's tokenizer)");
  app.add_option("--device", o->device, "cpu (fp32 reference engine) or cuda (bf16 GPU model)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--gemm-mode", o->gemm_mode,
                 "cuda only: exact (logprobs equal `qarl score --device cuda` bitwise) or fast")
      ->check(CLI::IsMember({"exact", "fast"}));
  return [o] {
    if (o->device == "cuda" && !kernels::gpu::available())
      throw usage_err("--device cuda: {}", kernels::gpu::unavailable_reason());
    quant::QuantRecipe recipe = o->recipe.empty() ? quant::QuantRecipe::none()
                                                  : quant::QuantRecipe::load(o->recipe);
    std::map<std::string, Tensor> amax;
    if (!o->kv_amax.empty()) amax = rollout::load_kv_amax_file(o->kv_amax);
    auto rm = rollout::RuntimeModel::load(o->model, recipe, amax);

    rollout::EngineConfig cfg;
    cfg.block_size = o->block_size;
    cfg.kv_mode = rollout::parse_kv_cache_mode(o->kv_cache);
    cfg.kv_cache_bytes = o->kv_cache_bytes;
    cfg.kv_cache_fraction = o->kv_cache_fraction > 0 ? o->kv_cache_fraction : 0.05;
    cfg.max_batch_tokens = o->max_batch_tokens;
    cfg.seed = o->seed;
    rollout::Engine engine(rm->model(), cfg);

    rollout::SamplingParams defaults;
    defaults.max_new_tokens = o->max_new_tokens;
    defaults.temperature = o->temperature;
    defaults.top_p = o->top_p;
    defaults.top_k = o->top_k;
    defaults.min_p = o->min_p;
    defaults.n = o->n;
    const auto& mc = rm->model().config();
    if (!o->ignore_eos && mc.eos_token_id) defaults.stop_token_ids.push_back(*mc.eos_token_id);

    TextSupport ts;
    try {
      ts.tok = tokenizer::load_tokenizer(o->model);
      try {
        ts.chat = tokenizer::chat_template_for(*ts.tok, mc.model_type);
      } catch (const std::exception& e) {
        ts.chat_error = e.what();
      }
    } catch (const std::exception& e) {
      ts.load_error = e.what();
    }
    for (const auto& st : o->stop)
      if (st.empty()) throw usage_err("--stop strings must not be empty");
    if (!o->stop.empty() && !ts.tok)
      throw usage_err("--stop needs the checkpoint's tokenizer: {}", ts.load_error);

    // Requests in input order; unusable lines become error outputs at their position.
    std::vector<std::vector<int32_t>> line_prompts;
    std::vector<std::string> line_errors;
    std::vector<rollout::GenRequest> reqs;
    std::vector<size_t> req_line;
    std::vector<std::vector<std::string>> req_stops;
    tokenizer::for_each_jsonl_line(o->prompts, [&](const json& j, size_t line) {
      Parsed p = parse_line(j, defaults, o->stop, ts);
      line_prompts.push_back(p.req.prompt);
      line_errors.push_back(p.error.empty() ? "" : fmt::format("line {}: {}", line, p.error));
      if (p.error.empty()) {
        req_line.push_back(line_errors.size() - 1);
        req_stops.push_back(p.stop);
        reqs.push_back(std::move(p.req));
      }
    });
    int64_t total = 0;
    for (const auto& r : reqs) total += std::max(1, r.params.n);
    log_info("generate: {} prompts ({} samples), KV cache {} with {} blocks of {} tokens, {} "
             "bytes/token", line_prompts.size(), total, rollout::kv_cache_mode_name(cfg.kv_mode),
             engine.cache().blocks().num_blocks(), cfg.block_size, engine.cache().bytes_per_token());
    ProgressBar bar("generate", total);
    std::vector<rollout::SampleOutput> outs;
    std::string summary;
    if (o->device == "cuda") {
#if QARL_HAVE_CUDA
      gpu::GpuModel gm(rm->model(), kernels::gpu::parse_gemm_mode(o->gemm_mode.c_str()));
      gpu::GenerateOptions go;
      go.seed = o->seed;
      go.kv_mode = cfg.kv_mode;  // native fp8/nvfp4 storage on the device too
      gpu::GenerateStats gs;
      outs = gpu::generate(gm, std::move(reqs), go, [&](int64_t done) { bar.update(done); }, &gs);
      bar.finish(fmt::format("{} steps on {} ({} GEMM)", gs.steps, kernels::gpu::device_name(), o->gemm_mode));
      summary = fmt::format("{} prefill + {} sampled tokens, {:.3f} s prefill steps, {:.3f} s decode steps; "
                            "GPU KV cache {} {} bytes/token",
                            gs.prefill_tokens, gs.decode_tokens, gs.prefill_s, gs.decode_s,
                            rollout::kv_cache_mode_name(cfg.kv_mode), gs.kv_bytes_per_token);
#endif
    } else {
      outs = engine.generate(std::move(reqs), [&](int64_t done) { bar.update(done); });
      const auto& st = engine.stats();
      bar.finish(fmt::format("{} steps, {} preemptions", st.steps, st.preemptions));
      summary = fmt::format("{} prefill + {} decode tokens in {:.3f} s forward, {:.3f} s sampling",
                            st.prefill_tokens, st.decode_tokens, st.forward_seconds, st.sample_seconds);
    }

    // Group outputs by input line.
    std::vector<std::vector<const rollout::SampleOutput*>> by_line(line_prompts.size());
    for (const auto& out : outs) by_line[req_line[size_t(out.request)]].push_back(&out);
    std::string text;
    size_t n_err = 0;
    for (size_t l = 0; l < line_prompts.size(); ++l) {
      if (!line_errors[l].empty()) {
        text += json{{"prompt_tokens", line_prompts[l]}, {"error", line_errors[l]}}.dump() + "\n";
        ++n_err;
        continue;
      }
      for (const auto* s : by_line[l]) {
        if (!s->error.empty()) {
          text += json{{"prompt_tokens", s->prompt_tokens},
                       {"error", fmt::format("line {}: {}", l + 1, s->error)}}.dump() + "\n";
          ++n_err;
          continue;
        }
        std::string completion;
        if (ts.tok) {
          // The completion's text, cut before a stop string as the engine stopped on it.
          const auto& stops = req_stops[size_t(s->request)];
          if (!stops.empty()) {
            tokenizer::StopStringMatcher m(*ts.tok, stops);
            std::optional<tokenizer::StopMatch> hit;
            for (int32_t id : s->tokens) hit = m.push(id);
            completion = hit ? hit->text : ts.tok->decode(s->tokens, true);
          } else {
            completion = ts.tok->decode(s->tokens, true);
          }
        }
        text += fmt::format("{{\"prompt_tokens\":{},\"tokens\":{},\"logprobs\":{},\"finish_reason\":\"{}\"{}}}\n",
                            ids_json(s->prompt_tokens), ids_json(s->tokens),
                            logprobs_json(s->logprobs), s->finish_reason,
                            ts.tok ? ",\"text\":" + json(completion).dump() : std::string());
      }
    }
    write_file_atomic(o->out, text);
    log_info("generate: {}; {} failed prompts", summary, n_err);
    return 0;
  };
}

QARL_REGISTER_COMMAND("generate", "Sample completions and their logprobs with the rollout engine", setup);

}  // namespace
