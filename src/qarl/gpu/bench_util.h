// What the GPU model's `qarl bench` cases share (model_bench.cpp, kv_cache_bench.cpp): the
// model shape they run (Qwen3-0.6B's, random init; a 2-layer, small-vocabulary one for
// --quick) and a wall clock.
#pragma once
#include <chrono>

#include "qarl/io/hf_config.h"

namespace qarl::gpu::bench {

inline io::HFConfig qwen3_06b_shape(bool quick) {
  io::HFConfig c;
  c.architecture = "Qwen3ForCausalLM";
  c.family = io::ModelFamily::Qwen3;
  c.model_type = "qwen3";
  c.vocab_size = quick ? 4099 : 151936;
  c.hidden_size = 1024;
  c.intermediate_size = 3072;
  c.num_hidden_layers = quick ? 2 : 28;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.max_position_embeddings = 40960;
  c.rope_theta = 1000000.0;
  c.rms_norm_eps = 1e-6;
  c.qk_norm = true;
  c.tie_word_embeddings = true;
  return c;
}

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace qarl::gpu::bench
