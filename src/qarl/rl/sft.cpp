#include "qarl/rl/sft.h"

#include "qarl/core/error.h"
#include "qarl/model/train.h"
#include "qarl/train/adamw.h"
#include "qarl/train/schedule.h"

namespace qarl::rl {

void sft_train(model::Model& m, const SftOptions& o,
               const std::function<std::vector<SftExample>(int64_t)>& batch,
               const std::function<void(const SftStepInfo&)>& on_step) {
  train::AdamW opt({0.9, 0.999, 1e-8, o.weight_decay});
  for (const auto& n : m.param_names()) opt.add_param(n, m.param(n));
  train::LrSchedule sched;
  sched.lr = o.lr;
  sched.warmup_steps = o.warmup_steps;
  for (int64_t step = 1; step <= o.steps; ++step) {
    auto examples = batch(step);
    std::vector<std::vector<int32_t>> seqs;
    size_t n_tokens = 0;
    for (const auto& e : examples) {
      if (e.prompt.empty() || e.response.empty())
        throw err("SFT example with an empty prompt or response");
      std::vector<int32_t> s = e.prompt;
      s.insert(s.end(), e.response.begin(), e.response.end());
      seqs.push_back(std::move(s));
      n_tokens += e.response.size();
    }
    auto fwd = model::forward_train(m, seqs, 1.0f);
    // logprobs[s][t] scores token t+1: the response tokens are t = |prompt|-1 .. |seq|-2.
    double nll = 0;
    std::vector<std::vector<float>> d(seqs.size());
    for (size_t s = 0; s < seqs.size(); ++s) {
      d[s].assign(fwd.logprobs[s].size(), 0.0f);
      for (size_t t = examples[s].prompt.size() - 1; t < fwd.logprobs[s].size(); ++t) {
        nll -= fwd.logprobs[s][t];
        d[s][t] = -1.0f / float(n_tokens);
      }
    }
    auto grads = model::zero_grads(m);
    model::backward(m, fwd, d, grads);
    double gnorm = train::clip_grad_norm(grads, o.grad_clip);
    double lr = sched.at(step);
    opt.step(grads, lr);
    for (const auto& n : m.param_names()) m.param(n).copy_from(opt.master(n));  // both fp32
    m.weights_changed();
    if (on_step) on_step({step, nll / double(n_tokens), gnorm, lr});
  }
}

}  // namespace qarl::rl
