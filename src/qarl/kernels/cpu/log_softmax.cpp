#include "qarl/kernels/cpu/log_softmax.h"

#include <cmath>
#include <limits>

namespace qarl::kernels {

namespace {
inline float scaled(float x, float t) { return t == 1.0f ? x : x / t; }
}  // namespace

float log_sum_exp_row(const float* logits, int64_t vocab, float temperature) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < vocab; ++i) {
    const float z = scaled(logits[i], temperature);
    m = z > m ? z : m;
  }
  double s = 0.0;
  for (int64_t i = 0; i < vocab; ++i) s += std::exp(double(scaled(logits[i], temperature) - m));
  return m + float(std::log(s));
}

float token_logprob(const float* logits, int64_t vocab, float temperature, int64_t token) {
  // (z_t - m) - log(sum): keep the subtraction of m exact-ish before the log term.
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < vocab; ++i) {
    const float z = scaled(logits[i], temperature);
    m = z > m ? z : m;
  }
  double s = 0.0;
  for (int64_t i = 0; i < vocab; ++i) s += std::exp(double(scaled(logits[i], temperature) - m));
  return (scaled(logits[token], temperature) - m) - float(std::log(s));
}

void log_softmax_row(const float* logits, int64_t vocab, float temperature, float* out) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < vocab; ++i) {
    const float z = scaled(logits[i], temperature);
    m = z > m ? z : m;
  }
  double s = 0.0;
  for (int64_t i = 0; i < vocab; ++i) s += std::exp(double(scaled(logits[i], temperature) - m));
  const float ls = float(std::log(s));
  for (int64_t i = 0; i < vocab; ++i) out[i] = (scaled(logits[i], temperature) - m) - ls;
}

void token_logprob_backward(const float* logits, int64_t vocab, float temperature,
                            int64_t token, float lse, float g, float* dlogits) {
  const float gt = g / temperature;
  for (int64_t i = 0; i < vocab; ++i) {
    const float p = std::exp(scaled(logits[i], temperature) - lse);
    dlogits[i] = -gt * p;
  }
  dlogits[token] += gt;
}

float cross_entropy_forward(const float* logits, int64_t rows, int64_t vocab,
                            const int32_t* targets) {
  double s = 0.0;
  for (int64_t r = 0; r < rows; ++r)
    s -= double(token_logprob(logits + r * vocab, vocab, 1.0f, targets[r]));
  return float(s / double(rows));
}

void cross_entropy_backward(const float* logits, int64_t rows, int64_t vocab,
                            const int32_t* targets, float g, float* dlogits) {
  for (int64_t r = 0; r < rows; ++r) {
    const float lse = log_sum_exp_row(logits + r * vocab, vocab, 1.0f);
    token_logprob_backward(logits + r * vocab, vocab, 1.0f, targets[r], lse,
                           -g / float(rows), dlogits + r * vocab);
  }
}

}  // namespace qarl::kernels
