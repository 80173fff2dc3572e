#include "qarl/rl/pg_loss.h"

#include <algorithm>
#include <cmath>

#include "qarl/core/error.h"

namespace qarl::rl {

namespace {
template <typename T>
void check_size(std::span<const T> s, size_t n, const char* what, bool required) {
  if (s.empty() && !required) return;
  if (s.size() != n)
    throw usage_err("clipped_pg_loss: '{}' has {} values, expected {}", what, s.size(), n);
}
}  // namespace

template <typename T>
PgLossResult<T> clipped_pg_loss(const PgBatch<T>& b, const PgLossOptions& o) {
  const size_t n = size_t(b.batch * b.seq_len);
  check_size(b.logp, n, "logp", true);
  check_size(b.old_logp, n, "old_logp", true);
  check_size(b.advantages, n, "advantages", true);
  check_size(b.mask, n, "mask", true);
  check_size(b.gen_logp, n, "gen_logp", o.tis_cap.has_value());
  check_size(b.ref_logp, n, "ref_logp", o.kl_coef != 0);
  if (o.clip_low < 0 || o.clip_high < 0) throw usage_err("clip_low/clip_high must be >= 0");
  if (o.tis_cap && !(*o.tis_cap > 0)) throw usage_err("tis_cap must be positive");

  PgLossResult<T> r;
  r.d_logp.assign(n, T(0));
  // Per-sequence valid token counts (for the sequence mean) and the local normalizers.
  std::vector<double> seq_tokens(size_t(b.batch), 0.0);
  for (int64_t s = 0; s < b.batch; ++s)
    for (int64_t t = 0; t < b.seq_len; ++t) seq_tokens[size_t(s)] += double(b.mask[size_t(s * b.seq_len + t)]);
  for (double c : seq_tokens) { r.valid_tokens += c; r.valid_sequences += (c > 0); }
  const double tok_norm = o.global_valid_tokens > 0 ? o.global_valid_tokens : r.valid_tokens;
  const double seq_norm = o.global_valid_sequences > 0 ? o.global_valid_sequences : r.valid_sequences;
  if (r.valid_tokens == 0) return r;  // nothing to learn from: zero loss and gradient

  const double lo = 1.0 - o.clip_low, hi = 1.0 + o.clip_high;
  double ratio_sum = 0, clipped = 0, w_sum = 0, oob = 0;
  for (int64_t s = 0; s < b.batch; ++s) {
    if (seq_tokens[size_t(s)] == 0) continue;
    // Weight of one token's term in the aggregate.
    const double scale = o.aggregation == LossAggregation::TokenMean
                             ? 1.0 / tok_norm
                             : 1.0 / (seq_tokens[size_t(s)] * seq_norm);
    for (int64_t t = 0; t < b.seq_len; ++t) {
      const size_t i = size_t(s * b.seq_len + t);
      const double m = double(b.mask[i]);
      if (m == 0) continue;
      const double A = double(b.advantages[i]);
      const double ratio = std::exp(double(b.logp[i]) - double(b.old_logp[i]));
      const double clamped = std::clamp(ratio, lo, hi);
      const double loss1 = -A * ratio, loss2 = -A * clamped;
      const bool in_range = ratio >= lo && ratio <= hi;
      double clip_loss, d_clip;
      if (loss1 > loss2) { clip_loss = loss1; d_clip = -A * ratio; }
      else if (loss1 < loss2) { clip_loss = loss2; d_clip = 0; clipped += m; }
      else { clip_loss = loss1; d_clip = in_range ? -A * ratio : 0; }
      double w = 1.0;
      if (o.tis_cap) {
        w = std::exp(double(b.old_logp[i]) - double(b.gen_logp[i]));
        if (!std::isfinite(w)) w = 0;  // nan_to_num(nan=0, posinf=0) as NeMo-RL
        if (w > *o.tis_cap) { w = *o.tis_cap; oob += m; }
      }
      double d = w * d_clip;
      r.actor_loss += m * scale * w * clip_loss;
      if (o.kl_coef != 0) {
        const KlValue kl = kl_estimate(double(b.logp[i]), double(b.ref_logp[i]), o.kl_type, o.kl_clamp);
        r.kl_penalty += m * scale * o.kl_coef * kl.value;
        d += o.kl_coef * kl.d_logprobs;
      }
      r.d_logp[i] = T(m * scale * d);
      ratio_sum += m * ratio;
      w_sum += m * w;
    }
  }
  r.loss = r.actor_loss + r.kl_penalty;
  r.probs_ratio_mean = ratio_sum / r.valid_tokens;
  r.clip_fraction = clipped / r.valid_tokens;
  r.sampling_importance_ratio = w_sum / r.valid_tokens;
  r.is_oob_ratio = oob / r.valid_tokens;
  return r;
}

template <typename T>
std::vector<T> broadcast_sequence_values(std::span<const double> per_sequence, int64_t seq_len) {
  std::vector<T> out(per_sequence.size() * size_t(seq_len));
  for (size_t s = 0; s < per_sequence.size(); ++s)
    for (int64_t t = 0; t < seq_len; ++t) out[s * size_t(seq_len) + size_t(t)] = T(per_sequence[s]);
  return out;
}

template PgLossResult<float> clipped_pg_loss(const PgBatch<float>&, const PgLossOptions&);
template PgLossResult<double> clipped_pg_loss(const PgBatch<double>&, const PgLossOptions&);
template std::vector<float> broadcast_sequence_values(std::span<const double>, int64_t);
template std::vector<double> broadcast_sequence_values(std::span<const double>, int64_t);

}  // namespace qarl::rl
