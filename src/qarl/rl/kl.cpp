#include "qarl/rl/kl.h"

#include <cmath>

#include "qarl/core/error.h"

namespace qarl::rl {

KlType parse_kl_type(const std::string& s) {
  if (s == "k1") return KlType::K1;
  if (s == "k2") return KlType::K2;
  if (s == "k3") return KlType::K3;
  throw usage_err("unknown KL estimator '{}' (expected k1, k2 or k3)", s);
}

const char* kl_type_name(KlType t) {
  switch (t) {
    case KlType::K1: return "k1";
    case KlType::K2: return "k2";
    case KlType::K3: return "k3";
  }
  return "?";
}

KlValue kl_estimate(double logprobs, double logprobs_reference, KlType t, KlClamp clamp) {
  double logr = logprobs_reference - logprobs;
  double dlogr = -1.0;  // d logr / d logprobs
  if (clamp.input) {
    const double c = *clamp.input;
    if (logr > c) { logr = c; dlogr = 0; }
    else if (logr < -c) { logr = -c; dlogr = 0; }
  }
  double v = 0, dv_dlogr = 0;
  switch (t) {
    case KlType::K1: v = -logr; dv_dlogr = -1; break;
    case KlType::K2: v = 0.5 * logr * logr; dv_dlogr = logr; break;
    case KlType::K3: v = std::exp(logr) - 1.0 - logr; dv_dlogr = std::exp(logr) - 1.0; break;
  }
  if (clamp.output) {
    const double c = *clamp.output;
    if (v > c) { v = c; dv_dlogr = 0; }
    else if (v < -c) { v = -c; dv_dlogr = 0; }
  }
  return {v, dv_dlogr * dlogr};
}

}  // namespace qarl::rl
