// Shared set-up of the GPU model tests (tests/gpu/*_test.cpp): the skip without a device, and
// small random models whose weights are exactly bf16 (so the GPU's bf16 working copies hold
// the CPU model's weights and the two can be compared).
#pragma once
#include <gtest/gtest.h>

#include "qarl/core/half.h"
#include "qarl/kernels/cuda/device.h"
#include "test_util.h"
#include "../model/model_test_util.h"

namespace qarl::test {

// tiny_config(family) at the GPU attention kernel's head size (64; the kernels take 64 and
// 128) with 4 query and 2 K/V heads, and the given vocabulary / hidden / MLP sizes.
inline io::HFConfig gpu_test_config(io::ModelFamily f, int vocab, int hidden, int intermediate) {
  io::HFConfig c = tiny_config(f);
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = intermediate;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 64;
  return c;
}

// A random model with perturbed norms/biases and every weight rounded to bf16.
inline model::Model bf16_exact_model(const io::HFConfig& c, uint64_t seed) {
  model::Model m = model::Model::random_init(c, seed);
  perturb_all(m, seed + 1);
  for (const auto& n : m.param_names()) {
    float* p = m.param(n).data_as<float>();
    for (int64_t i = 0; i < m.param(n).numel(); ++i) p[i] = bf16_to_f32(f32_to_bf16(p[i]));
  }
  m.weights_changed();
  return m;
}

}  // namespace qarl::test
