// Deterministic GEMM (see gemm.h for the per-element contract). Structure (BLIS-like):
// threads take 2-D tiles of C (kMC rows x kNC columns); inside a tile, K is walked in kKC
// blocks in increasing order, and a register-blocked micro-kernel (MR rows x 32 columns)
// continues each element's fma chain from the value it left in C.
#include "qarl/kernels/cpu/gemm.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "qarl/core/env.h"
#include "qarl/core/error.h"

namespace qarl::kernels {
namespace {

constexpr int NR = kGemmNR;
constexpr int64_t kKC = 256;  // K block: a 256 x 32 B panel block is 32 KiB (L1)
constexpr int64_t kMC = 48;   // rows per thread tile (multiple of 6)
constexpr int64_t kNC = 256;  // columns per thread tile (8 panels)

enum class Isa { Scalar, Avx2, Avx512 };

Isa detect_isa() {
  const std::string want = env_choice("QARL_GEMM_ISA").value_or("");  // core/env.h
  __builtin_cpu_init();
  bool has512 = __builtin_cpu_supports("avx512f");
  bool has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (want == "scalar") return Isa::Scalar;
  if (want == "avx2" && has2) return Isa::Avx2;
  if (has512 && (want.empty() || want == "avx512")) return Isa::Avx512;
  if (has2) return Isa::Avx2;
  return Isa::Scalar;
}

std::atomic<int> g_isa{-1};

Isa current_isa() {
  int v = g_isa.load(std::memory_order_relaxed);
  if (v < 0) {
    v = int(detect_isa());
    g_isa.store(v);
  }
  return Isa(v);
}

// ---- micro-kernels: R rows x 32 columns over kc steps of k ---------------------------------
// a: A(row0, k0) with strides; b: packed panel at k0; c: C(row0, col0); nvalid columns stored.

template <int R>
__attribute__((target("avx512f"))) void micro_avx512(const float* a, int64_t ars, int64_t acs,
                                                     const float* b, int64_t kc, float* c,
                                                     int64_t ldc, int nvalid, bool load_c) {
  __m512 acc0[R], acc1[R];
  __mmask16 m0 = nvalid >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nvalid) - 1);
  __mmask16 m1 = nvalid >= 32 ? __mmask16(0xFFFF)
                              : (nvalid <= 16 ? __mmask16(0) : __mmask16((1u << (nvalid - 16)) - 1));
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    if (load_c) {
      acc0[r] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
      acc1[r] = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
    } else {
      acc0[r] = _mm512_setzero_ps();
      acc1[r] = _mm512_setzero_ps();
    }
  }
  for (int64_t k = 0; k < kc; ++k) {
    __m512 b0 = _mm512_loadu_ps(b + k * NR);
    __m512 b1 = _mm512_loadu_ps(b + k * NR + 16);
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      __m512 av = _mm512_set1_ps(a[r * ars + k * acs]);
      acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, acc0[r]);
    _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc1[r]);
  }
}

// AVX2: R rows x 32 columns as 4 ymm per row (R <= 3 keeps 12 accumulators).
template <int R>
__attribute__((target("avx2,fma"))) void micro_avx2(const float* a, int64_t ars, int64_t acs,
                                                    const float* b, int64_t kc, float* c,
                                                    int64_t ldc, int nvalid, bool load_c) {
  __m256 acc[R][4];
  alignas(32) float tmp[NR];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    if (load_c) {
      if (nvalid == NR) {
        #pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) acc[r][q] = _mm256_loadu_ps(c + r * ldc + 8 * q);
      } else {
        std::memset(tmp, 0, sizeof(tmp));
        std::memcpy(tmp, c + r * ldc, sizeof(float) * nvalid);
        #pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) acc[r][q] = _mm256_load_ps(tmp + 8 * q);
      }
    } else {
      #pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) acc[r][q] = _mm256_setzero_ps();
    }
  }
  for (int64_t k = 0; k < kc; ++k) {
    __m256 b0 = _mm256_loadu_ps(b + k * NR);
    __m256 b1 = _mm256_loadu_ps(b + k * NR + 8);
    __m256 b2 = _mm256_loadu_ps(b + k * NR + 16);
    __m256 b3 = _mm256_loadu_ps(b + k * NR + 24);
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      __m256 av = _mm256_broadcast_ss(a + r * ars + k * acs);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
      acc[r][2] = _mm256_fmadd_ps(av, b2, acc[r][2]);
      acc[r][3] = _mm256_fmadd_ps(av, b3, acc[r][3]);
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    if (nvalid == NR) {
      #pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) _mm256_storeu_ps(c + r * ldc + 8 * q, acc[r][q]);
    } else {
      #pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) _mm256_store_ps(tmp + 8 * q, acc[r][q]);
      std::memcpy(c + r * ldc, tmp, sizeof(float) * nvalid);
    }
  }
}

void micro_scalar(int R, const float* a, int64_t ars, int64_t acs, const float* b, int64_t kc,
                  float* c, int64_t ldc, int nvalid, bool load_c) {
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < nvalid; ++j) {
      float s = load_c ? c[r * ldc + j] : 0.0f;
      for (int64_t k = 0; k < kc; ++k) s = std::fma(a[r * ars + k * acs], b[k * NR + j], s);
      c[r * ldc + j] = s;
    }
}

using MicroFn = void (*)(const float*, int64_t, int64_t, const float*, int64_t, float*, int64_t,
                         int, bool);


constexpr MicroFn k512[7] = {nullptr,          micro_avx512<1>, micro_avx512<2>, micro_avx512<3>,
                             micro_avx512<4>,  micro_avx512<5>, micro_avx512<6>};
constexpr MicroFn k2[4] = {nullptr, micro_avx2<1>, micro_avx2<2>, micro_avx2<3>};

// One thread tile: rows [i0, i1), panels covering columns [j0, j1). For each K block the
// tile's rows of A are packed k-major into micro-panels of mr rows (contiguous broadcasts,
// no 4 KiB aliasing between rows); zero rows pad a short last micro-panel.
void run_tile(Isa isa, const GemmA& A, const PackedB& B, float* C, int64_t ldc, int64_t i0,
              int64_t i1, int64_t j0, int64_t j1, bool accumulate) {
  const int64_t K = B.K;
  const int mr = isa == Isa::Avx512 ? 6 : isa == Isa::Avx2 ? 3 : 4;
  thread_local std::vector<float> apack;
  const int64_t n_micro = (i1 - i0 + mr - 1) / mr;
  apack.resize(size_t(n_micro * mr * kKC));
  for (int64_t k0 = 0; k0 < K || (K == 0 && k0 == 0); k0 += kKC) {
    const int64_t kc = std::min(kKC, K - k0);
    const bool load_c = accumulate || k0 > 0;
    for (int64_t t = 0; t < n_micro; ++t) {
      float* dst = apack.data() + t * mr * kKC;
      for (int r = 0; r < mr; ++r) {
        const int64_t i = i0 + t * mr + r;
        if (i < i1) {
          const float* src = A.data + i * A.row_stride + k0 * A.col_stride;
          for (int64_t k = 0; k < kc; ++k) dst[k * mr + r] = src[k * A.col_stride];
        } else {
          for (int64_t k = 0; k < kc; ++k) dst[k * mr + r] = 0.0f;
        }
      }
    }
    for (int64_t j = j0; j < j1; j += NR) {
      const float* bp = B.data.data() + ((j / NR) * K + k0) * NR;
      const int nvalid = int(std::min<int64_t>(NR, j1 - j));
      for (int64_t t = 0; t < n_micro; ++t) {
        const int64_t i = i0 + t * mr;
        const int r = int(std::min<int64_t>(mr, i1 - i));
        const float* ap = apack.data() + t * mr * kKC;
        float* cp = C + i * ldc + j;
        if (isa == Isa::Avx512)
          k512[r](ap, 1, mr, bp, kc, cp, ldc, nvalid, load_c);
        else if (isa == Isa::Avx2)
          k2[r](ap, 1, mr, bp, kc, cp, ldc, nvalid, load_c);
        else
          micro_scalar(r, ap, 1, mr, bp, kc, cp, ldc, nvalid, load_c);
      }
    }
    if (K == 0) break;
  }
}

}  // namespace

std::string gemm_isa() {
  switch (current_isa()) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "scalar";
  }
}

void set_gemm_isa(const std::string& isa) {
  if (isa.empty()) {
    g_isa.store(int(detect_isa()));
    return;
  }
  __builtin_cpu_init();
  if (isa == "avx512" && __builtin_cpu_supports("avx512f")) g_isa.store(int(Isa::Avx512));
  else if (isa == "avx2" && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    g_isa.store(int(Isa::Avx2));
  else if (isa == "scalar") g_isa.store(int(Isa::Scalar));
  else throw usage_err("gemm ISA '{}' is not available on this CPU", isa);
}

void pack_b_from_kn(const float* B, int64_t K, int64_t N, int64_t ldb, PackedB& out) {
  out.K = K;
  out.N = N;
  const int64_t panels = (N + NR - 1) / NR;
  out.data.assign(size_t(panels * K * NR), 0.0f);
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t nv = std::min<int64_t>(NR, N - p * NR);
    for (int64_t k = 0; k < K; ++k) {
      float* dst = out.data.data() + (p * K + k) * NR;
      const float* src = B + k * ldb + p * NR;
      for (int64_t j = 0; j < nv; ++j) dst[j] = src[j];
    }
  }
}

void pack_b_from_nk_multi(const std::vector<const float*>& Ws, const std::vector<int64_t>& Ns,
                          int64_t K, PackedB& out) {
  int64_t N = 0;
  for (auto n : Ns) N += n;
  // Row n of the fused weight -> (matrix, row).
  std::vector<const float*> rows(static_cast<size_t>(N));
  int64_t at = 0;
  for (size_t m = 0; m < Ws.size(); ++m)
    for (int64_t r = 0; r < Ns[m]; ++r) rows[size_t(at++)] = Ws[m] + r * K;
  out.K = K;
  out.N = N;
  const int64_t panels = (N + NR - 1) / NR;
  out.data.assign(size_t(panels * K * NR), 0.0f);
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t nv = std::min<int64_t>(NR, N - p * NR);
    float* base = out.data.data() + p * K * NR;
    for (int64_t j = 0; j < nv; ++j) {
      const float* src = rows[size_t(p * NR + j)];
      for (int64_t k = 0; k < K; ++k) base[k * NR + j] = src[k];
    }
  }
}

void pack_b_from_nk(const float* W, int64_t N, int64_t K, PackedB& out) {
  pack_b_from_nk_multi({W}, {N}, K, out);
}

void gemm(GemmA A, int64_t M, const PackedB& B, float* C, int64_t ldc, bool accumulate) {
  if (M <= 0 || B.N <= 0) return;
  const Isa isa = current_isa();
  const int64_t N = B.N;
  const int64_t tm = (M + kMC - 1) / kMC, tn = (N + kNC - 1) / kNC;
  const int64_t tiles = tm * tn;
  // Small problems stay on one thread (tile order never matters for the result).
  const bool parallel = double(M) * double(N) * double(B.K) > 2e5 && tiles > 1;
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t ti = t % tm, tj = t / tm;
    const int64_t i0 = ti * kMC, i1 = std::min(M, i0 + kMC);
    const int64_t j0 = tj * kNC, j1 = std::min(N, j0 + kNC);
    run_tile(isa, A, B, C, ldc, i0, i1, j0, j1, accumulate);
  }
}

void gemm_reference(GemmA A, int64_t M, const float* B, int64_t K, int64_t N, int64_t ldb,
                    float* C, int64_t ldc, bool accumulate) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      float s = accumulate ? C[i * ldc + j] : 0.0f;
      for (int64_t k = 0; k < K; ++k)
        s = std::fma(A.data[i * A.row_stride + k * A.col_stride], B[k * ldb + j], s);
      C[i * ldc + j] = s;
    }
}

}  // namespace qarl::kernels
