#include "qarl/kernels/cpu/attention.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace qarl::kernels {

float attn_dot(const float* a, const float* b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  for (int l = 0; i < n; ++i, ++l) acc[l] += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

void attention_row(const float* q, const model::KVView& kv, int kv_head, int n_keys,
                   int head_dim, float scale, float* out, float* lse) {
  const int64_t hoff = int64_t(kv_head) * head_dim;
  float acc[1024];
  for (int d = 0; d < head_dim; ++d) acc[d] = 0.0f;
  float m = -std::numeric_limits<float>::infinity();
  float l = 0.0f;
  float s[kAttnKeyBlock];
  for (int j0 = 0; j0 < n_keys; j0 += kAttnKeyBlock) {
    const int nb = n_keys - j0 < kAttnKeyBlock ? n_keys - j0 : kAttnKeyBlock;
    float bm = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < nb; ++j) {
      s[j] = attn_dot(q, kv.k_row(j0 + j) + hoff, head_dim) * scale;
      bm = s[j] > bm ? s[j] : bm;
    }
    const float mn = bm > m ? bm : m;
    const float corr = std::exp(m - mn);  // exp(-inf) = 0 on the first block
    l *= corr;
    for (int d = 0; d < head_dim; ++d) acc[d] *= corr;
    for (int j = 0; j < nb; ++j) {
      const float p = std::exp(s[j] - mn);
      l += p;
      const float* vr = kv.v_row(j0 + j) + hoff;
      for (int d = 0; d < head_dim; ++d) acc[d] += p * vr[d];
    }
    m = mn;
  }
  const float inv = 1.0f / l;
  for (int d = 0; d < head_dim; ++d) out[d] = acc[d] * inv;
  if (lse) *lse = m + std::log(l);
}

void attention_forward(const float* q, int64_t q_stride, int n_rows, int first_pos,
                       const model::KVView& kv, int n_heads, int n_kv_heads, int head_dim,
                       float scale, float* out, int64_t out_stride, float* lse) {
  const int group = n_heads / n_kv_heads;
  const int64_t work = int64_t(n_rows) * n_heads;
#pragma omp parallel for schedule(dynamic, 4) if (work * (first_pos + n_rows) > 4096)
  for (int64_t w = 0; w < work; ++w) {
    const int r = int(w / n_heads), h = int(w % n_heads);
    attention_row(q + r * q_stride + int64_t(h) * head_dim, kv, h / group, first_pos + r + 1,
                  head_dim, scale, out + r * out_stride + int64_t(h) * head_dim,
                  lse ? lse + w : nullptr);
  }
}

void attention_backward(const float* q, const float* k, const float* v, const float* o,
                        const float* dout, const float* lse, int T, int n_heads, int n_kv_heads,
                        int head_dim, float scale, float* dq, float* dk, float* dv) {
  const int group = n_heads / n_kv_heads;
  const int64_t qs = int64_t(n_heads) * head_dim, ks = int64_t(n_kv_heads) * head_dim;
  std::memset(dk, 0, sizeof(float) * size_t(int64_t(T) * ks));
  std::memset(dv, 0, sizeof(float) * size_t(int64_t(T) * ks));
  // One KV head per task: its dk/dv rows are only touched by that task (fixed order).
#pragma omp parallel for schedule(static)
  for (int g = 0; g < n_kv_heads; ++g) {
    for (int hh = 0; hh < group; ++hh) {
      const int h = g * group + hh;
      for (int i = 0; i < T; ++i) {
        const float* qi = q + i * qs + int64_t(h) * head_dim;
        const float* doi = dout + i * qs + int64_t(h) * head_dim;
        const float* oi = o + i * qs + int64_t(h) * head_dim;
        const float L = lse[int64_t(i) * n_heads + h];
        double Di = 0.0;
        for (int d = 0; d < head_dim; ++d) Di += double(doi[d]) * double(oi[d]);
        float* dqi = dq + i * qs + int64_t(h) * head_dim;
        for (int d = 0; d < head_dim; ++d) dqi[d] = 0.0f;
        for (int j = 0; j <= i; ++j) {
          const float* kj = k + j * ks + int64_t(g) * head_dim;
          const float* vj = v + j * ks + int64_t(g) * head_dim;
          const float pij = std::exp(attn_dot(qi, kj, head_dim) * scale - L);
          const float dpij = attn_dot(doi, vj, head_dim);
          const float ds = pij * (dpij - float(Di)) * scale;
          float* dvj = dv + j * ks + int64_t(g) * head_dim;
          float* dkj = dk + j * ks + int64_t(g) * head_dim;
          for (int d = 0; d < head_dim; ++d) {
            dvj[d] += pij * doi[d];
            dkj[d] += ds * qi[d];
            dqi[d] += ds * kj[d];
          }
        }
      }
    }
  }
}

}  // namespace qarl::kernels
