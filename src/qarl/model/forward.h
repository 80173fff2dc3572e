// The model's entry points. forward_tokens() is the one forward definition: the rollout engine
// calls it with new tokens of many sequences (prefill chunks and decode steps mixed) and a
// paged KVStore; the trainer's forward_train() calls it with a contiguous KVStore. A token's
// logits are bitwise identical whatever else is in the batch, how its sequence was chunked,
// and the OpenMP thread count.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "qarl/model/kv_access.h"
#include "qarl/model/model.h"

namespace qarl::model {

// New tokens of one sequence: positions start_pos .. start_pos+n_new-1. Keys 0..start_pos-1
// must already be in the KVStore. Logits are produced for the last n_logits of these tokens.
struct SeqChunk {
  const int32_t* tokens = nullptr;
  int n_new = 0;
  int start_pos = 0;
  int n_logits = 1;
};

// Runs the model on the chunks; K/V rows of the new tokens go to `kv` (after the K/V
// quantizers). Returns logits [sum n_logits, vocab] row-major in chunk order (fp32).
std::vector<float> forward_tokens(const Model& m, std::span<const SeqChunk> chunks, KVStore& kv);

// Log-probabilities at temperature T (log_softmax(logits / T)), one fixed-order row kernel
// shared by scoring and sampling: use these so rollout and trainer agree bitwise.
float token_logprob(const float* logits, int vocab, float temperature, int token);
void log_softmax_row(const float* logits, int vocab, float temperature, float* out);

// Scoring helper: per-token logprobs of each sequence (T-1 values: token t+1 given 0..t).
std::vector<std::vector<float>> score_sequences(const Model& m,
                                                const std::vector<std::vector<int32_t>>& seqs,
                                                float temperature = 1.0f);

}  // namespace qarl::model
