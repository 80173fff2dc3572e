#include "qarl/rl/distill_loss.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "qarl/core/error.h"

namespace qarl::rl {

DistillKl parse_distill_kl(const std::string& s) {
  if (s == "reverse") return DistillKl::Reverse;
  if (s == "forward") return DistillKl::Forward;
  throw usage_err("unknown distillation KL '{}' (expected reverse or forward)", s);
}

namespace {
// log_softmax of x (in place, double).
void log_softmax(std::vector<double>& x) {
  const double mx = *std::max_element(x.begin(), x.end());
  double s = 0;
  for (double v : x) s += std::exp(v - mx);
  const double lse = mx + std::log(s);
  for (double& v : x) v -= lse;
}
}  // namespace

template <typename T>
DistillResult<T> distill_loss(std::span<const T> student_logits, std::span<const T> teacher_logits,
                              std::span<const T> mask, int64_t vocab, const DistillOptions& o) {
  if (vocab <= 0) throw usage_err("distill_loss: vocab must be positive");
  const size_t V = size_t(vocab), N = mask.size();
  if (student_logits.size() != N * V || teacher_logits.size() != N * V)
    throw usage_err("distill_loss: logits have {} / {} values, expected {} positions x {} vocab",
                    student_logits.size(), teacher_logits.size(), N, V);
  if (o.top_k < 0 || size_t(o.top_k) > V)
    throw usage_err("distill_loss: top_k {} out of range [0, {}]", o.top_k, V);
  if (!(o.temperature > 0)) throw usage_err("distill_loss: temperature must be positive");
  DistillResult<T> r;
  r.d_student_logits.assign(N * V, T(0));
  for (size_t i = 0; i < N; ++i) r.valid_tokens += double(mask[i]);
  const double norm = o.global_valid_tokens > 0 ? o.global_valid_tokens : r.valid_tokens;
  if (r.valid_tokens == 0) return r;

  std::vector<size_t> idx(V);
  std::vector<double> ls, lt;
  for (size_t i = 0; i < N; ++i) {
    const double m = double(mask[i]);
    if (m == 0) continue;
    const T* s = student_logits.data() + i * V;
    const T* t = teacher_logits.data() + i * V;
    std::iota(idx.begin(), idx.end(), size_t(0));
    size_t K = V;
    if (o.top_k > 0) {
      K = size_t(o.top_k);
      // Teacher's top-k, ties broken by the lower token id (deterministic).
      std::partial_sort(idx.begin(), idx.begin() + std::ptrdiff_t(K), idx.end(),
                        [&](size_t a, size_t b) { return t[a] > t[b] || (t[a] == t[b] && a < b); });
    }
    ls.resize(K);
    lt.resize(K);
    for (size_t k = 0; k < K; ++k) {
      ls[k] = double(s[idx[k]]) / o.temperature;
      lt[k] = double(t[idx[k]]) / o.temperature;
    }
    log_softmax(ls);
    log_softmax(lt);
    double kl = 0;
    const double scale = m / norm;
    T* d = r.d_student_logits.data() + i * V;
    if (o.kl == DistillKl::Reverse) {
      for (size_t k = 0; k < K; ++k) kl += std::exp(ls[k]) * (ls[k] - lt[k]);
      // d/ds_j sum_v q_v (log q_v - log p_v) = q_j ((log q_j - log p_j) - KL), then 1/T.
      for (size_t k = 0; k < K; ++k)
        d[idx[k]] = T(scale * std::exp(ls[k]) * ((ls[k] - lt[k]) - kl) / o.temperature);
    } else {
      for (size_t k = 0; k < K; ++k) kl += std::exp(lt[k]) * (lt[k] - ls[k]);
      for (size_t k = 0; k < K; ++k)
        d[idx[k]] = T(scale * (std::exp(ls[k]) - std::exp(lt[k])) / o.temperature);
    }
    r.loss += scale * kl;
  }
  return r;
}

template DistillResult<float> distill_loss(std::span<const float>, std::span<const float>,
                                           std::span<const float>, int64_t, const DistillOptions&);
template DistillResult<double> distill_loss(std::span<const double>, std::span<const double>,
                                            std::span<const double>, int64_t, const DistillOptions&);

}  // namespace qarl::rl
