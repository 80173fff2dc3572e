// Training forward and hand-written backward. forward_train() runs the same forward_tokens
// arithmetic (so its logprobs equal the rollout's bitwise) and keeps the activations that
// backward() needs; backward() frees them as it goes.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qarl/core/tensor.h"
#include "qarl/model/model.h"

namespace qarl::model {

struct TrainActivations;  // opaque

struct TrainForward {
  // logprobs[s][t] = log p(token t+1 | tokens 0..t) at the temperature, T_s - 1 values.
  std::vector<std::vector<float>> logprobs;
  std::shared_ptr<TrainActivations> acts;
};

TrainForward forward_train(const Model& m, const std::vector<std::vector<int32_t>>& seqs,
                           float temperature = 1.0f);

// Gradients by HF parameter name (fp32, parameter shapes). backward() accumulates into them.
using Grads = std::map<std::string, Tensor>;
Grads zero_grads(const Model& m);

// d_logprobs[s][t]: dLoss/dlogprobs[s][t]. Consumes the activations (fwd.acts is released).
// d_logits (optional, for losses over the whole vocabulary such as distillation KL):
// d_logits[s] holds (T_s - 1) * vocab values, row t = dLoss/d(raw logits of position t);
// an empty d_logits[s] means none for that sequence. Both gradients are added.
void backward(const Model& m, TrainForward& fwd,
              const std::vector<std::vector<float>>& d_logprobs, Grads& grads,
              const std::vector<std::vector<float>>* d_logits = nullptr);

// The raw logits (before temperature) of position t of sequence s, the distribution over
// token t+1: vocab floats, valid until backward() consumes the activations.
const float* train_logits_row(const TrainForward& fwd, int seq, int t);

}  // namespace qarl::model
