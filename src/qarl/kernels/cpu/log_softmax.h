// Log-softmax over a vocabulary row at a temperature: logp = log_softmax(logits / T), with a
// fixed reduction order per row (max, then sum of exp in index order in double). Token
// logprobs, their backward and mean cross-entropy.
#pragma once
#include <cstdint>

namespace qarl::kernels {

// Row statistics: z_i = logits_i / T (division skipped for T == 1, which is exact anyway);
// returns log-sum-exp of z.
float log_sum_exp_row(const float* logits, int64_t vocab, float temperature);
// logp of `token`: z_token - lse.
float token_logprob(const float* logits, int64_t vocab, float temperature, int64_t token);
// Full row of log-probabilities.
void log_softmax_row(const float* logits, int64_t vocab, float temperature, float* out);
// d logits for d(logp_token) = g: (g / T) * (onehot(token) - softmax(z)). Written to dlogits.
void token_logprob_backward(const float* logits, int64_t vocab, float temperature,
                            int64_t token, float lse, float g, float* dlogits);

// Mean cross-entropy of rows [rows, vocab] against targets (T = 1); its backward writes
// dlogits = (softmax - onehot) * g / rows.
float cross_entropy_forward(const float* logits, int64_t rows, int64_t vocab,
                            const int32_t* targets);
void cross_entropy_backward(const float* logits, int64_t rows, int64_t vocab,
                            const int32_t* targets, float g, float* dlogits);

}  // namespace qarl::kernels
