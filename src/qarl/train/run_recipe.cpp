#include "qarl/train/run_recipe.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <sstream>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/io/yaml_recipe.h"
#include "qarl/refit/recipe_guard.h"

namespace fs = std::filesystem;

namespace qarl::train {

namespace {

// The schema: every key a run recipe may have, with its default.
const char* kRunRecipeSchema = R"(# qarl run recipe: every key and its default.
seed: 1234
model:
  path: tiny              # "tiny" (built-in spec) or an HF checkpoint directory
  tokenizer: ""           # "" : the model's own tokenizer
  warmstart_steps: 0      # tiny model only: SFT steps on the task's answer format before RL
  warmstart_lr: 3.0e-3
  device: cpu             # cpu (fp32 reference) | cuda (bf16 GPU model: rollout and trainer on the GPU)
  gemm_mode: exact        # cuda: exact (batch invariant: rollout logprobs = trainer's bitwise) | fast (cuBLAS)
rollout:
  kv_cache: auto          # auto | fp8 | nvfp4: KV storage (native modes give identical results)
  kv_cache_bytes: 0       # KV cache budget in bytes; 0 : the engine's default
quant:
  recipe: recipes/quant/none.yaml   # trainer (policy) quant recipe
  rollout_recipe: ""                # "" : same as recipe (the rule); differs only by exception
  rollout_only_experiment: false    # opt in to a rollout-only recipe (unaware baseline)
task:
  kind: arithmetic        # arithmetic | jsonl
  difficulty: 1           # arithmetic: 1..3
  dataset: ""             # jsonl: {"prompt"|"messages", "answer"} per line
  answer_format: last_number   # last_number | boxed
  shuffle: true
algorithm:
  name: grpo              # grpo | distill
  steps: 100
  prompts_per_step: 8
  samples_per_prompt: 8   # GRPO group size n
  micro_batch_size: 16    # sequences per forward/backward; gradients accumulated
  lr: 1.0e-5
  lr_schedule: constant   # constant | cosine
  min_lr: 0.0
  warmup_steps: 0
  weight_decay: 0.0
  beta1: 0.9
  beta2: 0.999
  eps: 1.0e-8
  grad_clip: 1.0          # max global grad norm; <= 0 disables
  temperature: 1.0
  max_new_tokens: 16
  clip_low: 0.2
  clip_high: 0.28
  loss_aggregation: token_mean   # token_mean | sequence_mean
  kl_coef: 0.0            # KL penalty to the reference (quantizers disabled)
  kl_type: k3             # k1 | k2 | k3 (penalty and gen/policy_kl_error)
  tis_cap: 0.0            # truncated importance sampling cap; <= 0 disables
  leave_one_out: false
  normalize_std: true
  distill:
    teacher: ""           # "" : the model itself with quantizers disabled (BF16)
    kl: reverse           # reverse | forward
    top_k: 0              # 0 : full vocabulary
calibration:
  quant_calib_size: 16
  quant_calib_data: task  # task | random
  quant_batch_size: 1
  quant_sequence_length: 64
checkpoint:
  every: 0                # steps between checkpoints; 0 : only at the end
  keep_last: 2
logging:
  run_dir: runs/qarl
  report: true
  progress: true
  unaware_baseline: true  # also score each step's rollouts with the trainer's quantizers off
)";

std::string where(const YAML::Node& n) {
  const auto m = n.Mark();
  if (m.line < 0) return "";
  return fmt::format(" (line {}, column {})", m.line + 1, m.column + 1);
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string hint(const std::string& key, const YAML::Node& schema_map) {
  std::string best;
  size_t bd = 3;  // only suggest close matches
  std::vector<std::string> all;
  for (const auto& kv : schema_map) {
    const auto k = kv.first.as<std::string>();
    all.push_back(k);
    const size_t d = edit_distance(key, k);
    if (d < bd) { bd = d; best = k; }
  }
  if (!best.empty()) return fmt::format(" (did you mean '{}'?)", best);
  std::string list;
  for (const auto& k : all) list += (list.empty() ? "" : ", ") + k;
  return " (known keys: " + list + ")";
}

std::string join(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

// Checks every key of `user` against `schema` and copies the values into `eff`.
void overlay(const YAML::Node& user, const YAML::Node& schema, YAML::Node eff,
             const std::string& prefix, const std::string& label) {
  if (!user || user.IsNull()) return;
  if (!user.IsMap())
    throw err("expected a mapping of keys{}", where(user)).file(label).key(prefix.empty() ? "<root>" : prefix);
  for (const auto& kv : user) {
    if (!kv.first.IsScalar()) throw err("keys must be plain names{}", where(kv.first)).file(label);
    const std::string key = kv.first.as<std::string>();
    const std::string path = join(prefix, key);
    const YAML::Node s = schema[key];
    if (!s) throw err("unknown key{}{}", where(kv.first), hint(key, schema)).file(label).key(path);
    if (s.IsMap()) {
      overlay(kv.second, s, eff[key], path, label);
    } else {
      if (!kv.second.IsScalar() && !kv.second.IsNull())
        throw err("expected a single value{}", where(kv.second)).file(label).key(path);
      eff[key] = kv.second.IsNull() ? YAML::Node(std::string()) : YAML::Node(kv.second.Scalar());
    }
  }
}

void apply_override(YAML::Node eff, const YAML::Node& schema_root, const std::string& assignment,
                    const std::string& label) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw usage_err("override '{}' is not key=value", assignment);
  const std::string path = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
  YAML::Node s = YAML::Clone(schema_root);
  YAML::Node e = eff;
  std::string done;
  for (size_t i = 0; i < parts.size(); ++i) {
    const YAML::Node child = s[parts[i]];
    if (parts[i].empty() || !child)
      throw usage_err("override '{}': unknown key{} (recipe {})", assignment,
                      parts[i].empty() ? std::string() : hint(parts[i], s), label)
          .key(join(done, parts[i]));
    done = join(done, parts[i]);
    if (i + 1 < parts.size()) {
      if (!child.IsMap()) throw usage_err("override '{}': '{}' is a value, not a section", assignment, done).key(done);
      s.reset(child);
      e.reset(e[parts[i]]);
    } else {
      if (child.IsMap())
        throw usage_err("override '{}': '{}' is a section; set one of its keys", assignment, done).key(done);
      e[parts[i]] = value;
    }
  }
}

template <typename T>
T get(const YAML::Node& eff, const std::string& path, const std::string& label) {
  YAML::Node n = YAML::Clone(eff);
  std::stringstream ss(path);
  for (std::string p; std::getline(ss, p, '.');) n.reset(n[p]);
  try {
    return n.as<T>();
  } catch (const YAML::Exception&) {
    const char* want = std::is_same_v<T, bool> ? "true or false"
                       : std::is_floating_point_v<T> ? "a number"
                       : std::is_integral_v<T> ? "an integer"
                                               : "a string";
    throw err("expected {}, got '{}'", want, n.IsScalar() ? n.Scalar() : std::string("?")).file(label).key(path);
  }
}

std::string resolve_path(const std::string& p, const std::string& base_dir) {
  if (p.empty() || p == "tiny" || fs::path(p).is_absolute() || path_exists(p)) return p;
  const fs::path alt = fs::path(base_dir) / p;
  if (path_exists(alt.string())) return alt.lexically_normal().string();
  return p;
}

void one_of(const std::string& v, std::initializer_list<const char*> allowed, const std::string& key,
            const std::string& label) {
  std::string list;
  for (const char* a : allowed) {
    if (v == a) return;
    list += (list.empty() ? "" : ", ") + std::string(a);
  }
  throw err("'{}' is not one of: {}", v, list).file(label).key(key);
}

void positive(double v, const std::string& key, const std::string& label) {
  if (!(v > 0)) throw err("must be positive, got {}", v).file(label).key(key);
}

}  // namespace

const std::string& run_recipe_schema_yaml() {
  static const std::string s = kRunRecipeSchema;
  return s;
}

RunRecipe parse_run_recipe(const std::string& text, const std::string& label,
                           const std::vector<std::string>& overrides, const std::string& base_dir) {
  YAML::Node schema = YAML::Load(kRunRecipeSchema);
  // The shared strict loader: a repeated key is refused (yaml-cpp would keep both and the
  // overlay below would silently take the last).
  const YAML::Node user = io::parse_yaml(text, label);
  YAML::Node eff = YAML::Clone(schema);
  overlay(user, schema, eff, "", label);
  for (const auto& o : overrides) apply_override(eff, schema, o, label);

  RunRecipe r;
  r.source = label;
  auto S = [&](const char* k) { return get<std::string>(eff, k, label); };
  auto I = [&](const char* k) { return get<int64_t>(eff, k, label); };
  auto D = [&](const char* k) { return get<double>(eff, k, label); };
  auto B = [&](const char* k) { return get<bool>(eff, k, label); };
  r.seed = get<uint64_t>(eff, "seed", label);
  r.model.path = resolve_path(S("model.path"), base_dir);
  r.model.tokenizer = resolve_path(S("model.tokenizer"), base_dir);
  r.model.warmstart_steps = I("model.warmstart_steps");
  r.model.warmstart_lr = D("model.warmstart_lr");
  r.model.device = S("model.device");
  r.model.gemm_mode = S("model.gemm_mode");
  r.rollout.kv_cache = S("rollout.kv_cache");
  if (r.rollout.kv_cache != "auto" && r.rollout.kv_cache != "fp8" && r.rollout.kv_cache != "nvfp4")
    throw err("rollout.kv_cache must be auto, fp8 or nvfp4, got '{}'", r.rollout.kv_cache).file(label).key("rollout.kv_cache");
  r.rollout.kv_cache_bytes = get<uint64_t>(eff, "rollout.kv_cache_bytes", label);
  r.quant.recipe = resolve_path(S("quant.recipe"), base_dir);
  r.quant.rollout_recipe = S("quant.rollout_recipe").empty() ? r.quant.recipe
                                                             : resolve_path(S("quant.rollout_recipe"), base_dir);
  r.quant.rollout_only_experiment = B("quant.rollout_only_experiment");
  r.task.kind = S("task.kind");
  r.task.difficulty = int(I("task.difficulty"));
  r.task.dataset = resolve_path(S("task.dataset"), base_dir);
  r.task.answer_format = S("task.answer_format");
  r.task.shuffle = B("task.shuffle");
  auto& a = r.algorithm;
  a.name = S("algorithm.name");
  a.steps = I("algorithm.steps");
  a.prompts_per_step = int(I("algorithm.prompts_per_step"));
  a.samples_per_prompt = int(I("algorithm.samples_per_prompt"));
  a.micro_batch_size = int(I("algorithm.micro_batch_size"));
  a.lr = D("algorithm.lr");
  a.lr_schedule = S("algorithm.lr_schedule");
  a.min_lr = D("algorithm.min_lr");
  a.warmup_steps = I("algorithm.warmup_steps");
  a.weight_decay = D("algorithm.weight_decay");
  a.beta1 = D("algorithm.beta1");
  a.beta2 = D("algorithm.beta2");
  a.eps = D("algorithm.eps");
  a.grad_clip = D("algorithm.grad_clip");
  a.temperature = D("algorithm.temperature");
  a.max_new_tokens = int(I("algorithm.max_new_tokens"));
  a.clip_low = D("algorithm.clip_low");
  a.clip_high = D("algorithm.clip_high");
  a.loss_aggregation = S("algorithm.loss_aggregation");
  a.kl_coef = D("algorithm.kl_coef");
  a.kl_type = S("algorithm.kl_type");
  a.tis_cap = D("algorithm.tis_cap");
  a.leave_one_out = B("algorithm.leave_one_out");
  a.normalize_std = B("algorithm.normalize_std");
  a.distill_teacher = resolve_path(S("algorithm.distill.teacher"), base_dir);
  a.distill_kl = S("algorithm.distill.kl");
  a.distill_top_k = int(I("algorithm.distill.top_k"));
  r.calibration.quant_calib_size = int(I("calibration.quant_calib_size"));
  r.calibration.quant_calib_data = S("calibration.quant_calib_data");
  r.calibration.quant_batch_size = int(I("calibration.quant_batch_size"));
  r.calibration.quant_sequence_length = int(I("calibration.quant_sequence_length"));
  r.checkpoint.every = I("checkpoint.every");
  r.checkpoint.keep_last = int(I("checkpoint.keep_last"));
  r.logging.run_dir = S("logging.run_dir");
  r.logging.report = B("logging.report");
  r.logging.progress = B("logging.progress");
  r.logging.unaware_baseline = B("logging.unaware_baseline");

  // ---- value checks (before any work starts) ----
  if (r.model.path.empty()) throw err("must name a model (tiny or a directory)").file(label).key("model.path");
  if (r.model.path != "tiny" && !is_directory(r.model.path))
    throw err("model directory '{}' does not exist", r.model.path).file(label).key("model.path");
  one_of(r.model.device, {"cpu", "cuda"}, "model.device", label);
  one_of(r.model.gemm_mode, {"exact", "fast"}, "model.gemm_mode", label);
  one_of(r.task.kind, {"arithmetic", "jsonl"}, "task.kind", label);
  one_of(r.task.answer_format, {"last_number", "boxed"}, "task.answer_format", label);
  if (r.task.kind == "arithmetic" && (r.task.difficulty < 1 || r.task.difficulty > 3))
    throw err("must be 1, 2 or 3, got {}", r.task.difficulty).file(label).key("task.difficulty");
  if (r.task.kind == "jsonl") {
    if (r.task.dataset.empty()) throw err("task.kind jsonl needs a dataset file").file(label).key("task.dataset");
    if (!is_file(r.task.dataset))
      throw err("dataset '{}' does not exist", r.task.dataset).file(label).key("task.dataset");
  }
  one_of(a.name, {"grpo", "distill"}, "algorithm.name", label);
  one_of(a.lr_schedule, {"constant", "cosine"}, "algorithm.lr_schedule", label);
  one_of(a.loss_aggregation, {"token_mean", "sequence_mean"}, "algorithm.loss_aggregation", label);
  one_of(a.kl_type, {"k1", "k2", "k3"}, "algorithm.kl_type", label);
  one_of(a.distill_kl, {"reverse", "forward"}, "algorithm.distill.kl", label);
  one_of(r.calibration.quant_calib_data, {"task", "random"}, "calibration.quant_calib_data", label);
  if (a.steps < 1) throw err("must be >= 1").file(label).key("algorithm.steps");
  if (a.prompts_per_step < 1) throw err("must be >= 1").file(label).key("algorithm.prompts_per_step");
  if (a.samples_per_prompt < 1) throw err("must be >= 1").file(label).key("algorithm.samples_per_prompt");
  if (a.name == "grpo" && a.samples_per_prompt < 2)
    throw err("GRPO needs at least 2 samples per prompt for a group baseline").file(label).key("algorithm.samples_per_prompt");
  if (a.micro_batch_size < 1) throw err("must be >= 1").file(label).key("algorithm.micro_batch_size");
  positive(a.lr, "algorithm.lr", label);
  if (a.min_lr < 0 || a.min_lr > a.lr) throw err("must be in [0, lr]").file(label).key("algorithm.min_lr");
  if (a.warmup_steps < 0 || a.warmup_steps > a.steps)
    throw err("must be in [0, steps]").file(label).key("algorithm.warmup_steps");
  if (a.weight_decay < 0) throw err("must be >= 0").file(label).key("algorithm.weight_decay");
  if (!(a.beta1 >= 0 && a.beta1 < 1)) throw err("must be in [0, 1)").file(label).key("algorithm.beta1");
  if (!(a.beta2 >= 0 && a.beta2 < 1)) throw err("must be in [0, 1)").file(label).key("algorithm.beta2");
  positive(a.eps, "algorithm.eps", label);
  positive(a.temperature, "algorithm.temperature", label);
  if (a.max_new_tokens < 1) throw err("must be >= 1").file(label).key("algorithm.max_new_tokens");
  if (a.clip_low < 0 || a.clip_low >= 1) throw err("must be in [0, 1)").file(label).key("algorithm.clip_low");
  if (a.clip_high < 0) throw err("must be >= 0").file(label).key("algorithm.clip_high");
  if (a.kl_coef < 0) throw err("must be >= 0").file(label).key("algorithm.kl_coef");
  if (a.distill_top_k < 0) throw err("must be >= 0").file(label).key("algorithm.distill.top_k");
  if (r.calibration.quant_calib_size < 1)
    throw err("must be >= 1 (K/V recipes need calibration)").file(label).key("calibration.quant_calib_size");
  if (r.calibration.quant_batch_size < 1) throw err("must be >= 1").file(label).key("calibration.quant_batch_size");
  if (r.calibration.quant_sequence_length < 1)
    throw err("must be >= 1").file(label).key("calibration.quant_sequence_length");
  if (r.checkpoint.every < 0) throw err("must be >= 0").file(label).key("checkpoint.every");
  if (r.checkpoint.keep_last < 0) throw err("must be >= 0").file(label).key("checkpoint.keep_last");
  if (r.logging.run_dir.empty()) throw err("must name a directory").file(label).key("logging.run_dir");

  // ---- same-recipe guard ----
  for (auto [key, p] : {std::pair{"quant.recipe", r.quant.recipe}, {"quant.rollout_recipe", r.quant.rollout_recipe}})
    if (!is_file(p)) throw err("quant recipe '{}' does not exist", p).file(label).key(key);
  refit::NormalizedRecipe trainer, rollout;
  try {
    trainer = refit::NormalizedRecipe::from_file(r.quant.recipe);
    rollout = refit::NormalizedRecipe::from_file(r.quant.rollout_recipe);
  } catch (Error& e) {
    throw e.key(e.key().empty() ? "quant" : e.key());
  }
  const auto g = refit::check_same_recipe(trainer, rollout, r.quant.rollout_only_experiment);
  r.rollout_only_experiment = g.rollout_only_experiment;
  r.rollout_only_constant_fp8 = g.rollout_only_constant_fp8;
  r.recipe_note = g.note;
  if (r.model.device == "cuda") {
    // What the GPU path does not do yet: refused here, naming the key, not mid-run.
    auto refuse = [&](const char* key, const std::string& why) {
      return err("model.device: cuda: {}", why).file(label).key(key);
    };
    if (a.name == "distill") throw refuse("algorithm.name", "distillation runs on the CPU only for now");
    if (r.rollout_only_experiment)
      throw refuse("quant.rollout_only_experiment", "the rollout-only experiment runs on the CPU only for now");
  }
  return r;
}

RunRecipe load_run_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  const std::string base = fs::path(path).parent_path().string();
  return parse_run_recipe(read_file(path), path, overrides, base.empty() ? "." : base);
}

std::string run_recipe_to_yaml(const RunRecipe& r) {
  YAML::Emitter out;
  const auto& a = r.algorithm;
  out << YAML::BeginMap;
  out << YAML::Key << "seed" << YAML::Value << r.seed;
  out << YAML::Key << "model" << YAML::Value << YAML::BeginMap << YAML::Key << "path" << YAML::Value
      << r.model.path << YAML::Key << "tokenizer" << YAML::Value << r.model.tokenizer << YAML::Key
      << "warmstart_steps" << YAML::Value << r.model.warmstart_steps << YAML::Key << "warmstart_lr"
      << YAML::Value << r.model.warmstart_lr << YAML::Key << "device" << YAML::Value << r.model.device
      << YAML::Key << "gemm_mode" << YAML::Value << r.model.gemm_mode << YAML::EndMap;
  out << YAML::Key << "rollout" << YAML::Value << YAML::BeginMap << YAML::Key << "kv_cache"
      << YAML::Value << r.rollout.kv_cache << YAML::Key << "kv_cache_bytes" << YAML::Value
      << r.rollout.kv_cache_bytes << YAML::EndMap;
  out << YAML::Key << "quant" << YAML::Value << YAML::BeginMap << YAML::Key << "recipe" << YAML::Value
      << r.quant.recipe << YAML::Key << "rollout_recipe" << YAML::Value << r.quant.rollout_recipe
      << YAML::Key << "rollout_only_experiment" << YAML::Value << r.quant.rollout_only_experiment << YAML::EndMap;
  out << YAML::Key << "task" << YAML::Value << YAML::BeginMap << YAML::Key << "kind" << YAML::Value
      << r.task.kind << YAML::Key << "difficulty" << YAML::Value << r.task.difficulty << YAML::Key
      << "dataset" << YAML::Value << r.task.dataset << YAML::Key << "answer_format" << YAML::Value
      << r.task.answer_format << YAML::Key << "shuffle" << YAML::Value << r.task.shuffle << YAML::EndMap;
  out << YAML::Key << "algorithm" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << a.name << YAML::Key << "steps" << YAML::Value << a.steps
      << YAML::Key << "prompts_per_step" << YAML::Value << a.prompts_per_step << YAML::Key
      << "samples_per_prompt" << YAML::Value << a.samples_per_prompt << YAML::Key << "micro_batch_size"
      << YAML::Value << a.micro_batch_size << YAML::Key << "lr" << YAML::Value << a.lr << YAML::Key
      << "lr_schedule" << YAML::Value << a.lr_schedule << YAML::Key << "min_lr" << YAML::Value << a.min_lr
      << YAML::Key << "warmup_steps" << YAML::Value << a.warmup_steps << YAML::Key << "weight_decay"
      << YAML::Value << a.weight_decay << YAML::Key << "beta1" << YAML::Value << a.beta1 << YAML::Key
      << "beta2" << YAML::Value << a.beta2 << YAML::Key << "eps" << YAML::Value << a.eps << YAML::Key
      << "grad_clip" << YAML::Value << a.grad_clip << YAML::Key << "temperature" << YAML::Value
      << a.temperature << YAML::Key << "max_new_tokens" << YAML::Value << a.max_new_tokens << YAML::Key
      << "clip_low" << YAML::Value << a.clip_low << YAML::Key << "clip_high" << YAML::Value << a.clip_high
      << YAML::Key << "loss_aggregation" << YAML::Value << a.loss_aggregation << YAML::Key << "kl_coef"
      << YAML::Value << a.kl_coef << YAML::Key << "kl_type" << YAML::Value << a.kl_type << YAML::Key
      << "tis_cap" << YAML::Value << a.tis_cap << YAML::Key << "leave_one_out" << YAML::Value
      << a.leave_one_out << YAML::Key << "normalize_std" << YAML::Value << a.normalize_std;
  out << YAML::Key << "distill" << YAML::Value << YAML::BeginMap << YAML::Key << "teacher" << YAML::Value
      << a.distill_teacher << YAML::Key << "kl" << YAML::Value << a.distill_kl << YAML::Key << "top_k"
      << YAML::Value << a.distill_top_k << YAML::EndMap;
  out << YAML::EndMap;
  out << YAML::Key << "calibration" << YAML::Value << YAML::BeginMap << YAML::Key << "quant_calib_size"
      << YAML::Value << r.calibration.quant_calib_size << YAML::Key << "quant_calib_data" << YAML::Value
      << r.calibration.quant_calib_data << YAML::Key << "quant_batch_size" << YAML::Value
      << r.calibration.quant_batch_size << YAML::Key << "quant_sequence_length" << YAML::Value
      << r.calibration.quant_sequence_length << YAML::EndMap;
  out << YAML::Key << "checkpoint" << YAML::Value << YAML::BeginMap << YAML::Key << "every" << YAML::Value
      << r.checkpoint.every << YAML::Key << "keep_last" << YAML::Value << r.checkpoint.keep_last << YAML::EndMap;
  out << YAML::Key << "logging" << YAML::Value << YAML::BeginMap << YAML::Key << "run_dir" << YAML::Value
      << r.logging.run_dir << YAML::Key << "report" << YAML::Value << r.logging.report << YAML::Key
      << "progress" << YAML::Value << r.logging.progress << YAML::Key << "unaware_baseline"
      << YAML::Value << r.logging.unaware_baseline << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace qarl::train
