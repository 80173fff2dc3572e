// Rotary position embedding, Hugging Face rotate_half convention: for i < d/2,
//   y_i       = x_i c_i - x_{i+d/2} s_i,    y_{i+d/2} = x_{i+d/2} c_i + x_i s_i,
// with c_i = cos(p * inv_freq_i), s_i = sin(p * inv_freq_i) computed in fp32 (p * inv_freq is
// one fp32 product, as torch's matmul of a length-1 inner dimension). The angle depends only
// on (position, i), so every path computes identical values.
#pragma once
#include <cstdint>
#include <vector>

namespace qarl::kernels {

// inv_freq_i = 1 / theta^(2i/d) (d = head_dim), with Llama 3 scaling when factor > 0.
struct RopeScalingParams {
  bool llama3 = false;
  double factor = 1.0, low_freq_factor = 1.0, high_freq_factor = 4.0,
         original_max_position_embeddings = 8192;
};
std::vector<float> rope_inv_freq(int head_dim, double theta, const RopeScalingParams& s);

// The angles of one position: c[i] = cos(p * inv_freq[i]), s[i] = sin(...) for i < half, with
// p = float(position) and one fp32 product, exactly what rope_forward/backward use.
void rope_cos_sin(int64_t position, const float* inv_freq, int half, float* c, float* s);

// Host tables for the GPU kernels: cos/sin[p * half + i] = rope_cos_sin(p, ...) for every
// position p in [0, max_pos) (bitwise the values the CPU kernels compute).
struct RopeTables {
  int64_t max_pos = 0;
  int half = 0;
  std::vector<float> cos, sin;  // [max_pos * half]
};
RopeTables rope_tables(const std::vector<float>& inv_freq, int64_t max_pos);

// x: rows of n_heads * head_dim floats (row stride `stride`), rotated in place; row r is at
// position positions[r].
void rope_forward(float* x, int64_t rows, int64_t stride, int n_heads, int head_dim,
                  const int32_t* positions, const float* inv_freq);
// The transpose rotation applied to gradients, in place.
void rope_backward(float* dx, int64_t rows, int64_t stride, int n_heads, int head_dim,
                   const int32_t* positions, const float* inv_freq);

}  // namespace qarl::kernels
