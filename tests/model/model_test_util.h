// Shared helpers for the model tests: tiny configs of each family, a paged KVStore like the
// rollout engine's (odd block size, blocks scattered in a pool), recipes from text.
#pragma once
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "qarl/core/error.h"
#include "qarl/core/rng.h"
#include "qarl/io/hf_config.h"
#include "qarl/model/forward.h"
#include "qarl/model/model.h"
#include "qarl/quant/recipe.h"

namespace qarl::test {

inline io::HFConfig tiny_config(io::ModelFamily family) {
  io::HFConfig c;
  c.family = family;
  c.vocab_size = 97;
  c.hidden_size = 48;
  c.intermediate_size = 40;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 256;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  switch (family) {
    case io::ModelFamily::Llama:
      c.architecture = "LlamaForCausalLM";
      c.model_type = "llama";
      c.rope_scaling.type = "llama3";
      c.rope_scaling.factor = 8.0;
      c.rope_scaling.original_max_position_embeddings = 32;
      break;
    case io::ModelFamily::Qwen2:
      c.architecture = "Qwen2ForCausalLM";
      c.model_type = "qwen2";
      c.attention_bias = true;
      break;
    case io::ModelFamily::Qwen3:
      c.architecture = "Qwen3ForCausalLM";
      c.model_type = "qwen3";
      c.qk_norm = true;
      c.tie_word_embeddings = true;
      c.head_dim = 32;  // q_dim 128 != hidden 48
      break;
  }
  return c;
}

// Random biases/norm weights so that every parameter matters (random_init zeroes biases).
inline void perturb_all(model::Model& m, uint64_t seed) {
  SequentialRng rng(seed, 7);
  for (const auto& n : m.param_names()) {
    if (!(n.ends_with(".bias") || n.ends_with("norm.weight"))) continue;
    float* p = m.param(n).data_as<float>();
    for (int64_t i = 0; i < m.param(n).numel(); ++i) p[i] += 0.2f * rng.normal();
  }
  m.weights_changed();
}

inline quant::QuantRecipe kv_recipe(const std::string& cfg) {
  return quant::QuantRecipe::parse(
      "quant_cfg:\n  - {quantizer_name: '*', enable: false}\n  - quantizer_name: '*[kv]_bmm_quantizer'\n"
      "    cfg: " + cfg + "\n",
      "<test recipe>");
}

// A paged K/V store: block_size tokens per block, blocks taken from a shared pool in an
// interleaved order so that sequences' blocks are not contiguous.
class PagedStore : public model::KVStore {
 public:
  PagedStore(int n_layers, int n_seqs, int row, int block_size, int max_blocks_per_seq)
      : row_(row), bs_(block_size), n_seqs_(n_seqs), maxb_(max_blocks_per_seq),
        pool_k_(size_t(n_layers) * n_seqs * maxb_ * block_size * row, 12345.0f),
        pool_v_(pool_k_.size(), -777.0f),
        kp_(size_t(n_layers * n_seqs)), vp_(size_t(n_layers * n_seqs)) {
    for (int l = 0; l < n_layers; ++l)
      for (int s = 0; s < n_seqs; ++s)
        for (int b = 0; b < maxb_; ++b) {
          // block b of seq s lives at pool slot (b * n_seqs + (n_seqs - 1 - s)) of the layer.
          const size_t slot = size_t(l) * n_seqs * maxb_ + size_t(b) * n_seqs + size_t(n_seqs - 1 - s);
          kp_[size_t(l * n_seqs + s)].push_back(pool_k_.data() + slot * size_t(bs_ * row_));
          vp_[size_t(l * n_seqs + s)].push_back(pool_v_.data() + slot * size_t(bs_ * row_));
        }
  }
  // Maps batch index -> the store's sequence id for the next forward.
  std::vector<int> seq_of;
  void write(int layer, int seq, int pos, int n, const float* k, const float* v) override {
    const int s = seq_of.empty() ? seq : seq_of[size_t(seq)];
    for (int i = 0; i < n; ++i) {
      const int t = pos + i;
      std::memcpy(const_cast<float*>(kp_[size_t(layer * n_seqs_ + s)][size_t(t / bs_)]) + (t % bs_) * row_,
                  k + int64_t(i) * row_, sizeof(float) * size_t(row_));
      std::memcpy(const_cast<float*>(vp_[size_t(layer * n_seqs_ + s)][size_t(t / bs_)]) + (t % bs_) * row_,
                  v + int64_t(i) * row_, sizeof(float) * size_t(row_));
    }
  }
  model::KVView view(int layer, int seq, int n_tokens) override {
    const int s = seq_of.empty() ? seq : seq_of[size_t(seq)];
    model::KVView w;
    w.block_size = bs_;
    w.n_tokens = n_tokens;
    w.row_stride = row_;
    w.k_blocks = kp_[size_t(layer * n_seqs_ + s)].data();
    w.v_blocks = vp_[size_t(layer * n_seqs_ + s)].data();
    return w;
  }

 private:
  int row_, bs_, n_seqs_, maxb_;
  std::vector<float> pool_k_, pool_v_;
  std::vector<std::vector<const float*>> kp_, vp_;
};

}  // namespace qarl::test
