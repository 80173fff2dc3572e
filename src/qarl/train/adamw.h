// AdamW over named fp32 parameters, the PyTorch torch.optim.AdamW formula (decoupled
// weight decay, bias correction, eps outside the square root):
//   p <- p - lr * wd * p
//   m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
//   p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// The optimizer owns fp32 master weights (a copy of the model's parameters, whatever their
// dtype) and the moments; after step() the model copies master(name) into its weights.
// The state (master weights, moments, step) is exported as named tensors for checkpoints.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "qarl/core/tensor.h"

namespace qarl::train {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
};

class AdamW {
 public:
  explicit AdamW(AdamWOptions o = {});

  // Registers a parameter; `initial` (CPU, any float dtype) is copied into an fp32 master.
  // `decay` false exempts it from weight decay (norms, biases). Error on a duplicate name.
  void add_param(const std::string& name, const Tensor& initial, bool decay = true);

  // One update with learning rate `lr`. `grads` must hold an fp32 CPU tensor of the right
  // shape for every registered parameter (Error naming the tensor otherwise); nothing is
  // changed unless all are valid.
  void step(const std::map<std::string, Tensor>& grads, double lr);

  const Tensor& master(const std::string& name) const;  // fp32 master weight
  std::vector<std::string> names() const { return order_; }
  int64_t step_count() const { return step_; }
  const AdamWOptions& options() const { return o_; }

  // Checkpoint state: "<name>.master", "<name>.exp_avg", "<name>.exp_avg_sq" (fp32), in
  // registration order, and the step. load_state() checks that every tensor is present
  // with the registered shape and fp32, and that no unknown tensor is there, then replaces
  // the state all at once (Error naming the tensor and `source`; nothing changed on error).
  std::vector<std::pair<std::string, Tensor>> state_tensors() const;
  void load_state(const std::map<std::string, Tensor>& tensors, int64_t step,
                  const std::string& source);

 private:
  struct Slot {
    Tensor master, m, v;
    bool decay = true;
  };
  AdamWOptions o_;
  int64_t step_ = 0;
  std::vector<std::string> order_;
  std::map<std::string, Slot> slots_;
};

}  // namespace qarl::train
