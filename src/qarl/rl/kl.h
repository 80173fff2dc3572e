// Per-token KL estimators between two log-probabilities of the sampled token, exactly as
// NeMo-RL's calculate_kl(logprobs, logprobs_reference, kl_type) (reference-spec 1.5):
//   logr = logprobs_reference - logprobs
//   k1 = -logr,  k2 = logr^2 / 2,  k3 = exp(logr) - 1 - logr
// with optional clamps (NeMo-RL's kl_input_clamp_value on logr, kl_output_clamp_value on
// the result; the mismatch metrics use none).
#pragma once
#include <optional>
#include <string>

namespace qarl::rl {

enum class KlType { K1, K2, K3 };
KlType parse_kl_type(const std::string& s);  // "k1" | "k2" | "k3"; usage Error otherwise
const char* kl_type_name(KlType t);

struct KlClamp {
  std::optional<double> input;   // clamp logr to [-input, input]
  std::optional<double> output;  // clamp the estimate to [-output, output]
};

// The estimate and its derivative with respect to `logprobs` (the reference is constant).
struct KlValue {
  double value;
  double d_logprobs;
};
KlValue kl_estimate(double logprobs, double logprobs_reference, KlType t, KlClamp clamp = {});

}  // namespace qarl::rl
