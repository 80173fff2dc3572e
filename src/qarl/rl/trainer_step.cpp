// One training step of the trainer (rl/trainer.h): prompts and rollouts, rewards, advantages,
// the trainer pass (loss, backward), the optimizer step and the refit, and its metrics.
#include "qarl/rl/trainer_impl.h"

namespace qarl::rl {

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


}  // namespace qarl::rl
