// Causal grouped-query attention, one kernel for training, prefill and decode.
//
// Batch invariance: the output of a query row depends only on that row, its position p and the
// keys/values 0..p. Keys are visited in increasing order in blocks of kAttnKeyBlock aligned to
// absolute key index (0-15, 16-31, ...), with an fp32 online softmax; dot products use a fixed
// 8-lane order. Where K/V live (contiguous or paged, kv_access.h) does not change arithmetic.
#pragma once
#include <cstdint>

#include "qarl/model/kv_access.h"

namespace qarl::kernels {

inline constexpr int kAttnKeyBlock = 16;

// The fixed-order dot product used for attention scores.
float attn_dot(const float* a, const float* b, int n);

// Queries of one sequence: n_rows rows (row stride q_stride, n_heads*head_dim values each) at
// positions first_pos .. first_pos+n_rows-1; keys 0..position from `kv`. out: same layout as q
// (stride out_stride). lse (optional): [n_rows * n_heads] log-sum-exp of the scaled scores.
// Query head h reads KV head h / (n_heads / n_kv_heads).
void attention_forward(const float* q, int64_t q_stride, int n_rows, int first_pos,
                       const model::KVView& kv, int n_heads, int n_kv_heads, int head_dim,
                       float scale, float* out, int64_t out_stride, float* lse);

// One (query row, head) pair; attention_forward is a loop over these.
void attention_row(const float* q, const model::KVView& kv, int kv_head, int n_keys,
                   int head_dim, float scale, float* out, float* lse);

// Backward for one sequence of T tokens with contiguous q [T, n_heads*hd], k, v
// [T, n_kv*hd], o, dout like q, lse [T*n_heads] from the forward. dq written, dk/dv written.
void attention_backward(const float* q, const float* k, const float* v, const float* o,
                        const float* dout, const float* lse, int T, int n_heads, int n_kv_heads,
                        int head_dim, float scale, float* dq, float* dk, float* dv);

}  // namespace qarl::kernels
