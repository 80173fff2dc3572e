// Internal: the one forward pass behind forward_tokens(), score_sequences() and
// forward_train(). When `acts` is given, the activations backward() needs are kept there.
#pragma once
#include <span>
#include <vector>

#include "qarl/model/forward.h"

namespace qarl::model::detail {

struct LayerActs {
  std::vector<float> x_in;          // [R, H] residual stream entering the layer
  std::vector<float> rstd1, h1;     // input norm: [R], [R, H]
  std::vector<float> qkv_lin;       // [R, qd+2kd] projection output (before q/k norm, RoPE)
  std::vector<float> q_rstd, k_rstd;  // q/k norm (Qwen3): [R*nh], [R*nkv]
  std::vector<float> qkv;           // [R, qd+2kd] after q/k norm and RoPE (k, v unquantized)
  std::vector<float> k, v;          // [R, kd] after the K/V quantizers
  std::vector<float> attn, lse;     // [R, qd], [R*nh]
  std::vector<float> x_mid;         // [R, H] after the attention residual
  std::vector<float> rstd2, h2;     // post-attention norm
  std::vector<float> gu, act;       // [R, 2I], [R, I]
};

struct Activations {
  std::vector<LayerActs> layers;
  std::vector<float> x_final, rstd_f, h_final;  // [R, H], [R], [R, H]
  std::vector<float> logits;                    // [R, V]
  std::vector<int32_t> tokens, positions;       // [R]
  std::vector<int> seq_offset, seq_len;         // per chunk
};

// Runs the forward. With acts: logits for every row (n_logits ignored, all rows).
std::vector<float> run_forward(const Model& m, std::span<const SeqChunk> chunks, KVStore& kv,
                               Activations* acts);

// A KVStore for chunks that start at position 0: the keys are the chunk's own rows, which
// stay in the forward's buffers during the layer. write() records pointers, view() returns
// one block.
class SelfKV : public KVStore {
 public:
  explicit SelfKV(int n_seqs) : k_(size_t(n_seqs)), v_(size_t(n_seqs)), stride_(0) {}
  void write(int layer, int seq, int pos, int n, const float* k, const float* v) override;
  KVView view(int layer, int seq, int n_tokens) override;
  void set_row_stride(int64_t s) { stride_ = s; }

 private:
  std::vector<const float*> k_, v_;
  int64_t stride_;
};

}  // namespace qarl::model::detail
