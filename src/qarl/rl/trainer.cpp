#include "qarl/rl/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <fmt/format.h>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/core/log.h"
#include "qarl/core/progress.h"
#include "qarl/io/safetensors.h"
#include "qarl/model/cli_support.h"
#include "qarl/model/forward.h"
#include "qarl/model/model.h"
#include "qarl/model/train.h"
#include "qarl/quant/recipe.h"
#include "qarl/refit/export.h"
#include "qarl/refit/loader.h"
#include "qarl/refit/name_map.h"
#include "qarl/rl/advantages.h"
#include "qarl/rl/data_iterator.h"
#include "qarl/rl/distill_loss.h"
#include "qarl/rl/mismatch.h"
#include "qarl/rl/pg_loss.h"
#include "qarl/rl/policy_export.h"
#include "qarl/rl/sft.h"
#include "qarl/rl/task.h"
#include "qarl/rl/tiny_model.h"
#include "qarl/rollout/engine.h"
#include "qarl/kernels/cuda/device.h"
#if QARL_HAVE_CUDA
#include "qarl/gpu/trainer_backend.h"
#endif
#include "qarl/rollout/runtime_model.h"
#include "qarl/tokenizer/chat.h"
#include "qarl/tokenizer/tokenizer.h"
#include "qarl/tokenizer/tiny_tokenizer.h"
#include "qarl/train/adamw.h"
#include "qarl/train/metrics.h"
#include "qarl/train/report.h"
#include "qarl/train/run_checkpoint.h"
#include "qarl/train/schedule.h"

namespace qarl::rl {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A request seed that depends only on (run seed, step, prompt slot): resumed and
// uninterrupted runs sample the same tokens.
uint64_t request_seed(uint64_t seed, int64_t step, size_t slot) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull ^ uint64_t(step) * 0xBF58476D1CE4E5B9ull ^
               uint64_t(slot) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}

// Name of the K/V quantization a recipe applies, for metrics ("none", "fp8", "nvfp4", ...).
std::string kv_quant_label(const model::Model& m) {
  auto qs = m.kv_quantizers();
  if (qs.empty() || !qs[0].second->enabled()) return "none";
  const auto& q = *qs[0].second;
  std::string f = q.config().format == quant::Format::NVFP4 ? "nvfp4" : "fp8";
  if (!q.has_amax_buffer()) f += "-constant";
  return f;
}

bool recipe_has_calibrated_kv(const quant::QuantRecipe& rec, int n_layers) {
  for (int i = 0; i < n_layers; ++i)
    for (char w : {'k', 'v'}) {
      auto c = rec.resolve(model::kv_quantizer_name(i, w));
      if (c.enable && !c.use_constant_amax) return true;
    }
  return false;
}

}  // namespace

struct Trainer::Impl {
  train::RunRecipe r;
  std::string run_dir;
  quant::QuantRecipe policy_recipe = quant::QuantRecipe::none();
  quant::QuantRecipe rollout_recipe = quant::QuantRecipe::none();
  std::optional<tokenizer::Tokenizer> tok;
  std::optional<tokenizer::ChatTemplate> chat;
  int32_t eos = -1;
  std::unique_ptr<model::Model> policy, reference;
  std::unique_ptr<rollout::RuntimeModel> rollout_model;
  std::unique_ptr<rollout::Engine> engine;
  std::unique_ptr<train::AdamW> opt;
  train::LrSchedule sched;
  std::shared_ptr<ProblemSource> task;
  std::unique_ptr<DataIterator> data;
  std::unique_ptr<train::MetricsWriter> metrics;
  std::map<std::string, Tensor> kv_amax;  // calibrated once; saved with every checkpoint
  std::optional<std::vector<refit::QuantizerState>> export_override;
  int64_t step = 0;  // completed optimizer steps
  AnswerFormat answer_format = AnswerFormat::LastNumber;
  std::vector<train::StepMetrics> history;
#if QARL_HAVE_CUDA
  std::unique_ptr<gpu::TrainerBackend> gpu;  // model.device: cuda
#endif
  bool on_gpu() const {
#if QARL_HAVE_CUDA
    return gpu != nullptr;
#else
    return false;
#endif
  }
  void setup_gpu();

  void setup(bool resume);
  std::string prepare_model_dir(bool resume, std::optional<train::FoundCheckpoint>& ckpt);
  void warm_start_tiny(const std::string& dir);
  std::vector<int32_t> encode_problem(const Problem& p) const;
  std::vector<std::vector<int32_t>> calibration_sequences();
  void calibrate(const std::string& model_dir);
  void refit(double* seconds, double* bytes);
  train::StepMetrics train_step();
  void save_checkpoint();
  void write_report() const;
};

Trainer::Trainer(train::RunRecipe recipe, bool resume) : impl_(std::make_unique<Impl>()) {
  impl_->r = std::move(recipe);
  impl_->setup(resume);
}
Trainer::~Trainer() = default;

std::vector<int32_t> Trainer::Impl::encode_problem(const Problem& p) const {
  if (!p.messages.empty()) {
    std::vector<tokenizer::ChatMessage> msgs;
    for (const auto& m : p.messages) msgs.push_back({m.role, m.content});
    return tok->encode(tokenizer::render_chat(*chat, msgs), false);
  }
  return tok->encode(p.prompt, false);
}

void Trainer::Impl::warm_start_tiny(const std::string& dir) {
  // Teach the random tiny model the answer format ("3+5=" -> "8<|im_end|>") with SFT on
  // problems from a stream disjoint from the RL prompts, so RL starts from a model that
  // sometimes answers right and has a reward signal to climb.
  write_tiny_checkpoint(dir, r.seed);
  model::Model m = model::Model::load(dir);
  ArithmeticTask sft_task(r.seed ^ 0x5f5f5f5fULL, r.task.difficulty);
  SftOptions o;
  o.steps = r.model.warmstart_steps;
  o.batch_size = 64;
  o.lr = r.model.warmstart_lr;
  o.warmup_steps = 10;
  ProgressBar bar("warm start (SFT)", o.steps);
  double last_loss = 0;
  sft_train(m, o, [&](int64_t s) {
    std::vector<SftExample> ex;
    for (int i = 0; i < o.batch_size; ++i) {
      Problem p = sft_task.get(uint64_t(s) * uint64_t(o.batch_size) + uint64_t(i));
      SftExample e{tok->encode(p.prompt), tok->encode(p.answer)};
      e.response.push_back(eos);
      ex.push_back(std::move(e));
    }
    return ex;
  }, [&](const SftStepInfo& i) {
    last_loss = i.loss;
    bar.update(i.step, fmt::format("loss {:.3f}", i.loss));
  });
  bar.finish(fmt::format("loss {:.3f}", last_loss));
  std::string tmp = dir + ".sft";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  m.save(tmp);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(fs::path(dir) / f, fs::path(tmp) / f);
  fs::remove_all(dir);
  fs::rename(tmp, dir);
}

std::string Trainer::Impl::prepare_model_dir(bool resume, std::optional<train::FoundCheckpoint>& ckpt) {
  if (resume) {
    ckpt = train::find_latest_checkpoint(run_dir);
    if (!ckpt) throw err("no complete checkpoint to resume from in {}", run_dir).kind(ErrorKind::Usage);
    return ckpt->dir;
  }
  if (r.model.path != "tiny") return r.model.path;
  std::string dir = run_dir + "/init-model";
  tok = tokenizer::tokenizer_from_json(tokenizer::tiny_tokenizer_json(), "tiny tokenizer");
  eos = *tok->token_to_id("<|im_end|>");
  warm_start_tiny(dir);
  return dir;
}

std::vector<std::vector<int32_t>> Trainer::Impl::calibration_sequences() {
  // quant_calib_size samples: task problems (prompt + reference answer) from their own
  // stream, or random token sequences of quant_sequence_length.
  std::vector<std::vector<int32_t>> seqs;
  const auto& c = r.calibration;
  if (c.quant_calib_data == "random") {
    SequentialRng rng(r.seed, 77);
    int vocab = policy->config().vocab_size;
    for (int i = 0; i < c.quant_calib_size; ++i) {
      std::vector<int32_t> s(size_t(std::max(2, c.quant_sequence_length)));
      for (auto& t : s) t = int32_t(rng.below(uint64_t(vocab)));
      seqs.push_back(std::move(s));
    }
    return seqs;
  }
  DataIterator it(task->size(), r.seed ^ 0xCA11B8A7EULL, true);
  for (int i = 0; i < c.quant_calib_size; ++i) {
    Problem p = task->get(it.next());
    auto s = encode_problem(p);
    auto a = tok->encode(p.answer);
    s.insert(s.end(), a.begin(), a.end());
    s.push_back(eos);
    if (c.quant_sequence_length > 0 && int(s.size()) > c.quant_sequence_length)
      s.resize(size_t(c.quant_sequence_length));
    seqs.push_back(std::move(s));
  }
  return seqs;
}

void Trainer::Impl::calibrate(const std::string& model_dir) {
  // Max calibration once, with the quantizers only observing (ModelOpt semantics): every
  // layer's amax comes from the unquantized forward. A rollout-only experiment calibrates
  // the rollout's recipe on the trainer's weights.
  auto seqs = calibration_sequences();
  for (const auto* rec : {&policy_recipe, &rollout_recipe}) {
    if (!recipe_has_calibrated_kv(*rec, policy->config().num_hidden_layers)) continue;
    model::Model m = model::Model::load(model_dir);
    m.configure_kv_quantizers(*rec, {}, false);
    model::calibrate_kv(m, seqs);  // the amax now sit in m's quantizers
    for (const auto& [name, q] : m.kv_quantizers())
      if (q->has_amax_buffer()) kv_amax[name + "._amax"] = q->amax_tensor().clone();
  }
  if (!kv_amax.empty()) {
    std::vector<std::pair<std::string, Tensor>> v(kv_amax.begin(), kv_amax.end());
    io::save_safetensors(run_dir + "/kv_amax.safetensors", v);
    std::printf("calibrated K/V amax (max over %d samples):\n", r.calibration.quant_calib_size);
    for (const auto& [n, t] : kv_amax) std::printf("  %-55s %.6g\n", n.c_str(), t.item());
  }
}

void Trainer::Impl::setup(bool resume) {
  run_dir = r.logging.run_dir;
  if (r.model.device == "cuda") {  // before any work: no device, no run
#if QARL_HAVE_CUDA
    if (!kernels::gpu::available())
      throw usage_err("model.device: cuda: {}", kernels::gpu::unavailable_reason()).file(r.source).key("model.device");
#else
    throw usage_err("model.device: cuda: this qarl was built without CUDA").file(r.source).key("model.device");
#endif
  }
  if (!resume && fs::exists(run_dir + "/checkpoints"))
    throw usage_err("run directory {} already holds checkpoints: resume it with --resume {} or "
                    "choose another logging.run_dir", run_dir, run_dir);
  fs::create_directories(run_dir);
  policy_recipe = quant::QuantRecipe::load(r.quant.recipe);
  rollout_recipe = quant::QuantRecipe::load(r.quant.rollout_recipe);

  if (r.task.kind == "arithmetic") {
    task = std::make_shared<ArithmeticTask>(r.seed, r.task.difficulty);
  } else {
    task = JsonlDataset::load(r.task.dataset);
  }
  answer_format = parse_answer_format(r.task.answer_format);

  std::optional<train::FoundCheckpoint> ckpt;
  std::string model_dir = prepare_model_dir(resume, ckpt);
  if (!tok) {
    tok = tokenizer::load_tokenizer(r.model.tokenizer.empty() ? model_dir : r.model.tokenizer);
    const auto& cfg = tok->config();
    std::string eos_tok = cfg.eos_token.empty() ? "<|endoftext|>" : cfg.eos_token;
    auto id = tok->token_to_id(eos_tok);
    if (!id) throw err("tokenizer {} has no end-of-sequence token '{}'", tok->source(), eos_tok);
    eos = *id;
  }
  policy = std::make_unique<model::Model>(model::Model::load(model_dir));
  // A tokenizer whose ids the model cannot embed would fail mid-run: refuse it now.
  if (int64_t(tok->id_space()) > policy->config().vocab_size || eos >= policy->config().vocab_size)
    throw err("tokenizer {} has {} ids (eos {}) but the model's vocabulary has {}", tok->source(),
              tok->id_space(), eos, policy->config().vocab_size).file(model_dir);
  if (r.task.kind == "jsonl") {
    chat = tokenizer::chat_template_for(*tok, policy->config().model_type);
    // Every problem must encode before the run starts (bad lines fail now, not at step 40).
    for (uint64_t i = 0; i < task->size(); ++i) encode_problem(task->get(i));
  }

  if (resume) {
    std::string f = ckpt->dir + "/kv_amax.safetensors";
    if (fs::exists(f)) kv_amax = rollout::load_kv_amax_file(f);
  } else {
    calibrate(model_dir);
  }
  // The trainer's quantizers: policy recipe with the calibrated amax (none when the policy
  // recipe enables no calibrated K/V quantizer).
  policy->configure_kv_quantizers(policy_recipe, kv_amax, true);
  if (r.rollout_only_experiment) {
    // The trainer trains unaware; the rollout still receives the calibrated amax.
    model::Model probe = model::Model::load(model_dir);
    probe.configure_kv_quantizers(rollout_recipe, kv_amax, true);
    export_override = kv_quantizer_states(probe);
  }

  rollout_model = rollout::RuntimeModel::load(model_dir, rollout_recipe, kv_amax);
  rollout::EngineConfig ec;
  ec.kv_mode = rollout::parse_kv_cache_mode(r.rollout.kv_cache);
  ec.kv_cache_bytes = r.rollout.kv_cache_bytes;
  ec.seed = r.seed;
  engine = std::make_unique<rollout::Engine>(rollout_model->model(), ec);
  rollout_model->set_hooks([this] {
    if (!engine->idle()) throw runtime_err("refit while sequences are in flight");
  }, [this] { engine->weights_changed(); });

  const auto& a = r.algorithm;
  opt = std::make_unique<train::AdamW>(train::AdamWOptions{a.beta1, a.beta2, a.eps, a.weight_decay});
  for (const auto& n : policy->param_names()) opt->add_param(n, policy->param(n));
  sched.lr = a.lr;
  sched.warmup_steps = a.warmup_steps;
  sched.decay = train::parse_lr_decay(a.lr_schedule);
  sched.total_steps = a.steps;
  sched.min_lr = a.min_lr;
  data = std::make_unique<DataIterator>(task->size(), r.seed, r.task.shuffle);
  metrics = std::make_unique<train::MetricsWriter>(run_dir);

  if (resume) {
    train::load_optimizer_state(ckpt->dir, *opt);
    for (const auto& n : policy->param_names()) policy->param(n).copy_from(opt->master(n));
    policy->weights_changed();
    step = ckpt->state.step;
    data->set_position(ckpt->state.data_position);
    metrics->truncate_after(step);
    for (const auto& j : train::read_metrics_lines(metrics->path()))
      history.push_back(train::StepMetrics::from_json(j));
    log_info("resumed {} at step {}", run_dir, step);
  }
  if (a.kl_coef > 0 || a.name == "distill") {
    std::string ref_dir = !a.distill_teacher.empty() && a.name == "distill" ? a.distill_teacher
                          : r.model.path == "tiny" ? run_dir + "/init-model" : r.model.path;
    reference = std::make_unique<model::Model>(model::Model::load(ref_dir));
    reference->configure_kv_quantizers(quant::QuantRecipe::none(), {}, false);  // BF16 reference
    if (reference->config().vocab_size != policy->config().vocab_size)
      throw err("teacher/reference vocabulary {} differs from the policy's {}",
                reference->config().vocab_size, policy->config().vocab_size).file(ref_dir);
  }
  if (r.model.device == "cuda") setup_gpu();
  write_file_atomic(run_dir + "/recipe.yaml", train::run_recipe_to_yaml(r));
}

// model.device: cuda: rollouts, trainer passes, optimizer and refit on the GPU (set-up,
// calibration and checkpoints stay on the CPU models).
void Trainer::Impl::setup_gpu() {
  const auto& a = r.algorithm;
#if QARL_HAVE_CUDA
  gpu = std::make_unique<gpu::TrainerBackend>(
      *policy, rollout_model->model(), reference.get(),
      kernels::gpu::parse_gemm_mode(r.model.gemm_mode.c_str()),
      train::AdamWOptions{a.beta1, a.beta2, a.eps, a.weight_decay}, *opt);
  log_info("GPU: {} ({} GEMM): rollouts, trainer passes, AdamW and refit on the device", gpu->device(),
           r.model.gemm_mode);
#else
  (void)a;
#endif
}

void Trainer::Impl::refit(double* seconds, double* bytes) {
  auto t0 = Clock::now();
#if QARL_HAVE_CUDA
  if (gpu) {
    *bytes = gpu->refit();
    *seconds = seconds_since(t0);
    return;
  }
#endif
  ModelExport src(*policy, export_override);
  auto plan = refit::plan_export(src);
  refit::StrictLoader loader(*rollout_model, refit::NameMapper::dense());
  loader.begin();
  double b = 0;
  refit::for_each_export(plan, [&](const std::string& n, const Tensor& t) {
    b += double(t.nbytes());
    loader.load(n, t);
  });
  loader.finish();
  *seconds = seconds_since(t0);
  *bytes = b;
}

train::StepMetrics Trainer::Impl::train_step() {
  const auto& a = r.algorithm;
  const int64_t s = step + 1;
  auto t_step = Clock::now();
  train::StepMetrics m;
  m.step = s;

  // 1. Prompts and rollouts.
  auto idx = data->next_batch(uint64_t(a.prompts_per_step));
  std::vector<Problem> problems;
  std::vector<rollout::GenRequest> reqs;
  for (size_t i = 0; i < idx.size(); ++i) {
    problems.push_back(task->get(idx[i]));
    rollout::GenRequest q;
    q.prompt = encode_problem(problems.back());
    q.params.temperature = float(a.temperature);
    q.params.max_new_tokens = a.max_new_tokens;
    q.params.stop_token_ids = {eos};
    q.params.n = a.samples_per_prompt;
    q.params.seed = request_seed(r.seed, s, i);
    reqs.push_back(std::move(q));
  }
  auto t_gen = Clock::now();
#if QARL_HAVE_CUDA
  auto outs = gpu ? gpu->generate(std::move(reqs), r.seed) : engine->generate(std::move(reqs));
#else
  auto outs = engine->generate(std::move(reqs));
#endif
  double gen_s = seconds_since(t_gen);
  size_t gen_tokens = 0;
  for (const auto& o : outs) {
    if (!o.error.empty())
      throw runtime_err("generation failed for prompt {} of step {}: {}", o.request, s, o.error);
    gen_tokens += o.tokens.size();
  }

  // The unaware comparison: the same rollouts scored with the trainer's quantizers off.
  if (r.logging.unaware_baseline && kv_quant_label(*policy) != "none") {
    std::vector<std::vector<int32_t>> seqs;
    for (const auto& o : outs) {
      seqs.push_back(o.prompt_tokens);
      seqs.back().insert(seqs.back().end(), o.tokens.begin(), o.tokens.end());
    }
    std::vector<std::vector<float>> lp;
#if QARL_HAVE_CUDA
    if (gpu) lp = gpu->score_unaware(seqs, float(a.temperature));
#endif
    if (!on_gpu()) {
      policy->configure_kv_quantizers(quant::QuantRecipe::none(), {}, false);
      lp = model::score_sequences(*policy, seqs, float(a.temperature));
      policy->configure_kv_quantizers(policy_recipe, kv_amax, true);
    }
    MismatchAccumulator acc(parse_kl_type(a.kl_type));
    for (size_t k = 0; k < outs.size(); ++k) {
      const size_t p0 = outs[k].prompt_tokens.size() - 1;
      std::vector<float> g(outs[k].logprobs), p(lp[k].begin() + long(p0), lp[k].end()),
          msk(g.size(), 1.f);
      acc.add<float>(g, p, msk);
    }
    auto um = acc.mean();
    m.extra["unaware_gen_kl_error"] = um.gen_kl_error;
    m.extra["unaware_token_mult_prob_error"] = um.token_mult_prob_error;
  }

  // 2. Rewards.
  std::vector<double> rewards;
  for (const auto& o : outs) {
    std::string text = tok->decode(o.tokens, true);
    rewards.push_back(score_completion(text, problems[size_t(o.request)].answer, answer_format));
  }
  auto rs = reward_stats(rewards);
  m.reward_mean = rs.reward_mean;
  m.accuracy = rs.accuracy;

  // 3. Advantages (GRPO) or per-token teacher signals (distillation).
  AdvantageOptions ao;
  ao.group_size = a.samples_per_prompt;
  ao.normalize_std = a.normalize_std;
  ao.leave_one_out = a.leave_one_out;
  std::vector<double> adv = grpo_advantages(rewards, ao);

  // 4. Trainer pass: logprobs with the same quantizers, mismatch, loss, backward.
  PgLossOptions lo;
  lo.clip_low = a.clip_low;
  lo.clip_high = a.clip_high;
  lo.aggregation = a.loss_aggregation == "sequence_mean" ? LossAggregation::SequenceMean
                                                         : LossAggregation::TokenMean;
  lo.kl_coef = a.name == "distill" ? 0.0 : a.kl_coef;
  lo.kl_type = parse_kl_type(a.kl_type);
  if (a.tis_cap > 0) lo.tis_cap = a.tis_cap;
  lo.global_valid_tokens = double(gen_tokens);
  lo.global_valid_sequences = double(outs.size());
  MismatchAccumulator mismatch(parse_kl_type(a.kl_type));
  model::Grads grads;
  if (!on_gpu()) grads = model::zero_grads(*policy);
#if QARL_HAVE_CUDA
  if (gpu) gpu->zero_grads();
#endif
  double loss = 0, distill_kl = 0;
  size_t train_tokens = 0;
  auto t_train = Clock::now();
  const size_t mb = size_t(std::max(1, a.micro_batch_size));
  for (size_t b0 = 0; b0 < outs.size(); b0 += mb) {
    size_t b1 = std::min(outs.size(), b0 + mb);
    std::vector<std::vector<int32_t>> seqs;
    int64_t L = 0;
    for (size_t k = b0; k < b1; ++k) {
      std::vector<int32_t> q = outs[k].prompt_tokens;
      q.insert(q.end(), outs[k].tokens.begin(), outs[k].tokens.end());
      train_tokens += q.size();
      seqs.push_back(std::move(q));
      L = std::max<int64_t>(L, int64_t(outs[k].tokens.size()));
    }
    model::TrainForward fwd;
#if QARL_HAVE_CUDA
    if (gpu) fwd.logprobs = gpu->forward(seqs, float(a.temperature));
#endif
    if (!on_gpu()) fwd = model::forward_train(*policy, seqs, float(a.temperature));
    std::vector<std::vector<float>> ref_lp;
#if QARL_HAVE_CUDA
    if (reference && gpu) ref_lp = gpu->score_reference(seqs, float(a.temperature));
#endif
    if (reference && !on_gpu()) ref_lp = model::score_sequences(*reference, seqs, float(a.temperature));
    const int64_t B = int64_t(b1 - b0);
    std::vector<float> logp(size_t(B * L), 0.f), gen(size_t(B * L), 0.f), ref(size_t(B * L), 0.f),
        advs(size_t(B * L), 0.f), mask(size_t(B * L), 0.f);
    for (int64_t i = 0; i < B; ++i) {
      const auto& o = outs[b0 + size_t(i)];
      const size_t p0 = o.prompt_tokens.size() - 1;  // logprobs index of the first generated token
      for (size_t j = 0; j < o.tokens.size(); ++j) {
        size_t k = size_t(i * L) + j;
        logp[k] = fwd.logprobs[size_t(i)][p0 + j];
        gen[k] = o.logprobs[j];
        mask[k] = 1.f;
        if (reference) ref[k] = ref_lp[size_t(i)][p0 + j];
        advs[k] = float(adv[b0 + size_t(i)]);
      }
    }
    mismatch.add<float>(gen, logp, mask);
    if (a.name == "distill") {
      // On-policy distillation (QAD): per-token KL between the student's (quantized K/V)
      // and the teacher's distributions over the vocabulary (or the teacher's top-k) at every
      // generated position; gradients flow into the student's logits.
      const int V = policy->config().vocab_size;
      auto tf = model::forward_train(*reference, seqs, float(a.temperature));
      int64_t P = 0;
      for (int64_t i = 0; i < B; ++i) P += int64_t(outs[b0 + size_t(i)].tokens.size());
      std::vector<float> S(size_t(P * V)), Tt(size_t(P * V)), msk(size_t(P), 1.f);
      int64_t row = 0;
      for (int64_t i = 0; i < B; ++i) {
        const auto& o = outs[b0 + size_t(i)];
        const int p0 = int(o.prompt_tokens.size()) - 1;
        for (size_t j = 0; j < o.tokens.size(); ++j, ++row) {
          std::copy_n(model::train_logits_row(fwd, int(i), p0 + int(j)), V, S.begin() + row * V);
          std::copy_n(model::train_logits_row(tf, int(i), p0 + int(j)), V, Tt.begin() + row * V);
        }
      }
      DistillOptions dopt;
      dopt.kl = parse_distill_kl(a.distill_kl);
      dopt.top_k = a.distill_top_k;
      dopt.temperature = a.temperature;
      dopt.global_valid_tokens = double(gen_tokens);
      auto dres = distill_loss<float>(S, Tt, msk, V, dopt);
      loss += dres.loss;
      distill_kl += dres.loss;
      std::vector<std::vector<float>> dlp(static_cast<size_t>(B)), dlg(static_cast<size_t>(B));
      row = 0;
      for (int64_t i = 0; i < B; ++i) {
        const auto& o = outs[b0 + size_t(i)];
        const size_t p0 = o.prompt_tokens.size() - 1;
        dlp[size_t(i)].assign(fwd.logprobs[size_t(i)].size(), 0.f);
        dlg[size_t(i)].assign(fwd.logprobs[size_t(i)].size() * size_t(V), 0.f);
        for (size_t j = 0; j < o.tokens.size(); ++j, ++row)
          std::copy_n(dres.d_student_logits.begin() + row * V, V,
                      dlg[size_t(i)].begin() + long((p0 + j) * size_t(V)));
      }
      model::backward(*policy, fwd, dlp, grads, &dlg);
      continue;
    }
    PgBatch<float> pb;
    pb.batch = B;
    pb.seq_len = L;
    pb.logp = logp;
    pb.old_logp = logp;  // one update per batch: the policy that scored is the one updated
    pb.gen_logp = gen;
    pb.ref_logp = ref;
    pb.advantages = advs;
    pb.mask = mask;
    auto res = clipped_pg_loss(pb, lo);
    loss += res.loss;
    std::vector<std::vector<float>> d(static_cast<size_t>(B));
    for (int64_t i = 0; i < B; ++i) {
      const auto& o = outs[b0 + size_t(i)];
      d[size_t(i)].assign(fwd.logprobs[size_t(i)].size(), 0.f);
      const size_t p0 = o.prompt_tokens.size() - 1;
      for (size_t j = 0; j < o.tokens.size(); ++j)
        d[size_t(i)][p0 + j] = res.d_logp[size_t(i * L) + j];
    }
#if QARL_HAVE_CUDA
    if (gpu) {
      gpu->backward(d);
      continue;
    }
#endif
    model::backward(*policy, fwd, d, grads);
  }
  m.lr = sched.at(s);
#if QARL_HAVE_CUDA
  if (gpu) {
    m.grad_norm = gpu->clip_grad_norm(a.grad_clip);
    gpu->step(m.lr);
  }
#endif
  if (!on_gpu()) {
    m.grad_norm = train::clip_grad_norm(grads, a.grad_clip);
    opt->step(grads, m.lr);
    for (const auto& n : policy->param_names()) policy->param(n).copy_from(opt->master(n));
    policy->weights_changed();
  }
  double train_s = seconds_since(t_train);
  m.loss = loss;

  // 5. Refit the rollout engine with the new weights (and the fixed K/V amax).
  refit(&m.refit_seconds, &m.refit_bytes);

  auto mm = mismatch.mean();
  m.token_mult_prob_error = mm.token_mult_prob_error;
  m.gen_kl_error = mm.gen_kl_error;
  m.policy_kl_error = mm.policy_kl_error;
  m.js_divergence_error = mm.js_divergence_error;
  m.extra["max_token_mult_prob_error"] = mm.max_token_mult_prob_error;
  if (a.name == "distill") m.extra["distill_kl"] = distill_kl;  // token mean over the step
  m.generation_tokens_per_s = gen_s > 0 ? double(gen_tokens) / gen_s : 0;
  m.train_tokens_per_s = train_s > 0 ? double(train_tokens) / train_s : 0;
  m.kv_cache_bytes_per_token = double(engine->cache().bytes_per_token());
  m.gemm_mode = "cpu-exact";
#if QARL_HAVE_CUDA
  if (gpu) {
    m.kv_cache_bytes_per_token = double(gpu->kv_bytes_per_token());
    m.gemm_mode = gpu->label();
  }
#endif
  m.kv_quant = kv_quant_label(rollout_model->model());
  m.rollout_only_experiment = r.rollout_only_experiment;
  m.kl_type = a.kl_type;
  m.step_seconds = seconds_since(t_step);
  return m;
}

void Trainer::Impl::save_checkpoint() {
#if QARL_HAVE_CUDA
  if (gpu) gpu->sync_to_cpu(*policy, *opt);  // checkpoints are written from the CPU copies
#endif
  train::TrainState st;
  st.step = step;
  st.data_position = data->position();
  st.seed = r.seed;
  train::CheckpointOptions o;
  o.keep_last = r.checkpoint.keep_last;
  o.write_model = [&](const std::string& tmp) {
    policy->save(tmp);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                          "chat_template.jinja"}) {
      fs::path src = fs::path(r.model.path == "tiny" ? run_dir + "/init-model" : r.model.path) / f;
      if (fs::exists(src)) fs::copy_file(src, fs::path(tmp) / f, fs::copy_options::overwrite_existing);
    }
    if (!kv_amax.empty()) {
      std::vector<std::pair<std::string, Tensor>> v(kv_amax.begin(), kv_amax.end());
      io::save_safetensors(tmp + "/kv_amax.safetensors", v);
    }
  };
  train::save_run_checkpoint(run_dir, st, opt.get(), o);
}

void Trainer::Impl::write_report() const {
  std::vector<train::AmaxRow> rows;
  for (int i = 0; i < policy->config().num_hidden_layers; ++i) {
    train::AmaxRow row;
    row.layer = fmt::format("model.layers.{}.self_attn", i);
    auto k = kv_amax.find(model::kv_quantizer_name(i, 'k') + "._amax");
    auto v = kv_amax.find(model::kv_quantizer_name(i, 'v') + "._amax");
    if (k == kv_amax.end() && v == kv_amax.end()) continue;
    if (k != kv_amax.end()) row.k_amax = k->second.item();
    if (v != kv_amax.end()) row.v_amax = v->second.item();
    rows.push_back(row);
  }
  train::ReportInfo info;
  info.title = "qarl run: " + run_dir;
  info.facts = {{"recipe", r.source},
                {"model", r.model.path},
                {"policy quant recipe", r.quant.recipe},
                {"rollout quant recipe", r.quant.rollout_recipe},
                {"algorithm", r.algorithm.name},
                {"rollout KV cache", r.rollout.kv_cache}};
  info.rollout_only_experiment = r.rollout_only_experiment;
  train::write_report(run_dir, rows, info);
}

TrainSummary Trainer::run(int64_t stop_after) {
  auto& I = *impl_;
  const auto& a = I.r.algorithm;
  if (I.step == 0) {
    double s, b;
    I.refit(&s, &b);  // the first refit: validates the whole contract before step 1
    log_info("initial refit: {:.1f} KB in {:.4f} s", b / 1024, s);
  }
  int64_t done_here = 0;
  while (I.step < a.steps && (stop_after <= 0 || done_here < stop_after)) {
    auto m = I.train_step();
    I.step = m.step;
    ++done_here;
    I.metrics->append(m);
    I.history.push_back(m);
    if (I.r.logging.progress) {
      std::printf("%s\n", train::progress_line(m, a.steps).c_str());
      std::fflush(stdout);
    }
    bool last = I.step == a.steps;
    if (last || (I.r.checkpoint.every > 0 && I.step % I.r.checkpoint.every == 0)) I.save_checkpoint();
  }
  if (I.r.logging.report) I.write_report();

  TrainSummary sum;
  sum.steps = I.step;
  sum.run_dir = I.run_dir;
  const size_t n = I.history.size(), w = std::max<size_t>(1, std::min<size_t>(5, n / 4 + 1));
  for (size_t i = 0; i < n; ++i) {
    const auto& h = I.history[i];
    if (i < w) { sum.first_reward += h.reward_mean / double(w); sum.first_accuracy += h.accuracy / double(w); }
    if (i + w >= n) { sum.last_reward += h.reward_mean / double(w); sum.last_accuracy += h.accuracy / double(w); }
    sum.max_gen_kl_error = std::max(sum.max_gen_kl_error, h.gen_kl_error);
    sum.mean_token_mult_prob_error += h.token_mult_prob_error / double(n);
    if (auto it = h.extra.find("unaware_gen_kl_error"); it != h.extra.end()) {
      ++sum.unaware_steps;
      sum.unaware_gen_kl_error += it->second;
      sum.unaware_token_mult_prob_error += h.extra.at("unaware_token_mult_prob_error");
    }
  }
  if (sum.unaware_steps > 0) {
    sum.unaware_gen_kl_error /= double(sum.unaware_steps);
    sum.unaware_token_mult_prob_error /= double(sum.unaware_steps);
  }
  return sum;
}

}  // namespace qarl::rl
