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
void backward(const Model& m, TrainForward& fwd,
              const std::vector<std::vector<float>>& d_logprobs, Grads& grads);

}  // namespace qarl::model
