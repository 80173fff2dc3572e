// The QARL trainer (rl/trainer.h): set-up (model, tokenizer, calibration, rollout engine,
// optimizer, resume), the refit, checkpoints, the report and the run loop. One step is in
// trainer_step.cpp; the shared state in trainer_impl.h.
#include "qarl/core/fs.h"
#include "qarl/rl/trainer_impl.h"

namespace qarl::rl {

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
  if (!resume && path_exists(run_dir + "/checkpoints"))
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
    if (path_exists(f)) kv_amax = rollout::load_kv_amax_file(f);
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
  gpu->set_kv_cache_mode(rollout::parse_kv_cache_mode(r.rollout.kv_cache));
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

// train_step(): trainer_step.cpp

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
