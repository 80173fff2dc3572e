// The clipped policy-gradient loss of GRPO/PPO on per-token arrays, following NeMo-RL's
// ClippedPGLossFn (nemo_rl/algorithms/loss/loss_functions.py):
//   ratio_t      = exp(logp_t - old_logp_t)
//   clip_loss_t  = max(-A_t * ratio_t, -A_t * clamp(ratio_t, 1 - clip_low, 1 + clip_high))
//   w_t          = min(exp(old_logp_t - gen_logp_t), tis_cap)   (truncated IS; else 1)
//   kl_t         = kl_coef * KL_k(logp_t, ref_logp_t)            (calculate_kl; optional)
//   loss         = agg(w_t * clip_loss_t) + agg(kl_t)
// agg is token-level (sum over valid tokens / number of valid tokens) or sequence-mean (mean
// over valid sequences of each sequence's masked token mean). The normalizers may be global
// (over all micro-batches of a step) so that the gradients of micro-batches add up to the
// gradient of the whole batch. The importance weight is a constant (detached).
// Returns the loss and d loss / d logp_t for every token (0 where masked): the model's
// backward takes that array.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "qarl/rl/kl.h"

namespace qarl::rl {

enum class LossAggregation { TokenMean, SequenceMean };

struct PgLossOptions {
  double clip_low = 0.2;   // ratio_clip_min
  double clip_high = 0.2;  // ratio_clip_max
  LossAggregation aggregation = LossAggregation::TokenMean;
  double kl_coef = 0.0;  // 0: no KL penalty (ref_logp may be empty)
  KlType kl_type = KlType::K3;
  KlClamp kl_clamp{20.0, 10.0};  // NeMo-RL's defaults for the penalty
  std::optional<double> tis_cap;  // truncated importance sampling with gen_logp
  // Global normalizers (0: use this batch's own counts).
  double global_valid_tokens = 0;
  double global_valid_sequences = 0;
};

// Row-major [batch, seq_len] arrays. mask = token_mask * sample_mask (0/1).
template <typename T>
struct PgBatch {
  int64_t batch = 0, seq_len = 0;
  std::span<const T> logp;        // current policy (differentiated)
  std::span<const T> old_logp;    // prev_logprobs (trainer, before the update)
  std::span<const T> gen_logp;    // generation_logprobs (rollout); needed with tis_cap
  std::span<const T> ref_logp;    // reference policy; needed with kl_coef != 0
  std::span<const T> advantages;  // per token (a sequence's advantage repeated)
  std::span<const T> mask;
};

template <typename T>
struct PgLossResult {
  double loss = 0;           // actor loss + KL penalty
  double actor_loss = 0;
  double kl_penalty = 0;
  std::vector<T> d_logp;     // d loss / d logp, [batch * seq_len]
  // Diagnostics (masked token means over this batch).
  double probs_ratio_mean = 0;
  double clip_fraction = 0;         // tokens whose clipped branch was taken
  double sampling_importance_ratio = 0;  // mean IS weight (1 without TIS)
  double is_oob_ratio = 0;          // tokens whose IS weight exceeded the cap
  double valid_tokens = 0, valid_sequences = 0;
};

template <typename T>
PgLossResult<T> clipped_pg_loss(const PgBatch<T>& b, const PgLossOptions& o);

// Helpers for callers: per-sequence advantages broadcast over the tokens of the sequence.
template <typename T>
std::vector<T> broadcast_sequence_values(std::span<const double> per_sequence, int64_t seq_len);

}  // namespace qarl::rl
