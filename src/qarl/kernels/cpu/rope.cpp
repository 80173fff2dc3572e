#include "qarl/kernels/cpu/rope.h"

#include <cmath>

namespace qarl::kernels {

std::vector<float> rope_inv_freq(int head_dim, double theta, const RopeScalingParams& s) {
  const int half = head_dim / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i) {
    // torch: 1.0 / (base ** (arange(0, dim, 2).float() / dim)) in fp32.
    const float expo = float(2 * i) / float(head_dim);
    inv[size_t(i)] = 1.0f / std::pow(float(theta), expo);
  }
  if (s.llama3) {
    // transformers _compute_llama3_parameters (fp32 tensors, python-float constants).
    const double old_ctx = s.original_max_position_embeddings;
    const double low_wl = old_ctx / s.low_freq_factor, high_wl = old_ctx / s.high_freq_factor;
    for (int i = 0; i < half; ++i) {
      const float f = inv[size_t(i)];
      const float wavelen = float(2.0 * M_PI) / f;
      float g = double(wavelen) > low_wl ? f / float(s.factor) : f;
      const float smooth = (float(old_ctx) / wavelen - float(s.low_freq_factor)) /
                           float(s.high_freq_factor - s.low_freq_factor);
      const float smoothed = (1.0f - smooth) * g / float(s.factor) + smooth * g;
      const bool medium = !(double(wavelen) < high_wl) && !(double(wavelen) > low_wl);
      inv[size_t(i)] = medium ? smoothed : g;
    }
  }
  return inv;
}

void rope_cos_sin(int64_t position, const float* inv_freq, int half, float* c, float* s) {
  const float p = float(position);
  for (int i = 0; i < half; ++i) {
    const float a = p * inv_freq[i];
    c[i] = std::cos(a);
    s[i] = std::sin(a);
  }
}

RopeTables rope_tables(const std::vector<float>& inv_freq, int64_t max_pos) {
  RopeTables t;
  t.max_pos = max_pos < 0 ? 0 : max_pos;
  t.half = int(inv_freq.size());
  const size_t n = size_t(t.max_pos) * inv_freq.size();
  t.cos.resize(n);
  t.sin.resize(n);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t p = 0; p < t.max_pos; ++p)
    rope_cos_sin(p, inv_freq.data(), t.half, t.cos.data() + size_t(p) * size_t(t.half),
                 t.sin.data() + size_t(p) * size_t(t.half));
  return t;
}

namespace {
template <bool kBackward>
void rope_apply(float* x, int64_t rows, int64_t stride, int n_heads, int head_dim,
                const int32_t* positions, const float* inv_freq) {
  const int half = head_dim / 2;
#pragma omp parallel for schedule(static) if (rows * n_heads * head_dim > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    float c[512], s[512];
    rope_cos_sin(positions[r], inv_freq, half, c, s);
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + r * stride + int64_t(h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float x1 = v[i], x2 = v[i + half];
        if (!kBackward) {
          v[i] = x1 * c[i] - x2 * s[i];
          v[i + half] = x2 * c[i] + x1 * s[i];
        } else {
          v[i] = x1 * c[i] + x2 * s[i];
          v[i + half] = x2 * c[i] - x1 * s[i];
        }
      }
    }
  }
}
}  // namespace

void rope_forward(float* x, int64_t rows, int64_t stride, int n_heads, int head_dim,
                  const int32_t* positions, const float* inv_freq) {
  rope_apply<false>(x, rows, stride, n_heads, head_dim, positions, inv_freq);
}
void rope_backward(float* dx, int64_t rows, int64_t stride, int n_heads, int head_dim,
                   const int32_t* positions, const float* inv_freq) {
  rope_apply<true>(dx, rows, stride, n_heads, head_dim, positions, inv_freq);
}

}  // namespace qarl::kernels
