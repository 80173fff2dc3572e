// The cuBLASLt path of the cuBLAS products (gemm_cublas.cpp issues them; gemm.h: GemmAutotune).
// Per key (device, product, m, n, k, lda, ldb, ldc, C's type, beta 0 or 1, each pointer's
// alignment up to 16 bytes, timed or not) the first call builds the descriptors, asks
// cublasLtMatmulAlgoGetHeuristic for up to 8 algorithms that fit the 32 MiB workspace, and
// keeps the first (QARL_GEMM_AUTOTUNE=0) or, timed (=1, the default), the fastest: 1 warm-up
// and 3 runs each between CUDA events on the call's stream, into a scratch copy of C (never C
// itself: with beta = 1 the runs would add into it); a winner other than the heuristic's
// first must beat it again in 3 interleaved rounds. The choice is then fixed for the process,
// so the same inputs give the same bits call after call (bitwise-reproducible training).
// During CUDA graph capture nothing can be timed, allocated or synchronized: a key not yet
// cached runs the heuristic's first algorithm and stays uncached (decode runs each batch size
// eagerly before capturing it, so its keys are normally cached by then).
// Split-K partial sums are never rounded to bf16, as CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_
// REDUCTION guarantees on the legacy path: the reduction-scheme mask allows COMPUTE_TYPE
// (fp32 partials in the workspace), and INPLACE (partials added in C's type) for F32 C only.
#ifdef QARL_HAVE_CUDA
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "qarl/core/error.h"
#include "qarl/core/log.h"
#include "qarl/kernels/cuda/gemm_internal.h"

namespace qarl::kernels::gpu::detail {
namespace {

constexpr int kCandidates = 8, kTimedRuns = 3, kConfirmRounds = 3;

struct Key {
  int device;
  CublasProduct product;
  int m, n, k, lda, ldb, ldc;
  Elem c_t;
  bool accumulate;
  int align_a, align_b, align_c, align_c_in;  // align_c_in: 0 in place
  bool timed;
  auto tie() const {
    return std::tie(device, product, m, n, k, lda, ldb, ldc, c_t, accumulate, align_a, align_b, align_c,
                    align_c_in, timed);
  }
  bool operator<(const Key& o) const { return tie() < o.tie(); }
};

void check(cublasStatus_t s, const std::string& what, const char* call) {
  if (s != CUBLAS_STATUS_SUCCESS) throw runtime_err("{}: {} failed: {}", what, call, cublasLtGetStatusString(s));
}
void check(cudaError_t e, const std::string& what, const char* call) {
  if (e != cudaSuccess) throw runtime_err("{}: {} failed: {}", what, call, cudaGetErrorString(e));
}

// The descriptors of one key: host objects (creating them neither allocates device memory
// nor synchronizes, so the capture path may build them too).
struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

struct Entry {
  Plan plan;
  bool has_algo = false;  // false: cuBLASLt offered nothing; the caller takes cublasGemmEx
  cublasLtMatmulAlgo_t algo{};
};

struct LtState {
  std::map<int, cublasLtHandle_t> handle;         // device -> handle
  std::map<Key, std::unique_ptr<Entry>> cache;    // key -> fixed choice
  std::vector<std::string> lines;                 // gemm_algo_choices(), one per cache entry
};
LtState& state() {  // guarded by cublas_mutex()
  static LtState* s = new LtState;  // never destroyed: handles outlive static destructors
  return *s;
}

// The pointer's alignment in bytes, up to 16 (what cuBLASLt's vector loads ask for).
int alignment(const void* p) {
  int a = 16;
  while (a > 1 && uintptr_t(p) % uintptr_t(a) != 0) a /= 2;
  return a;
}

cudaDataType_t cuda_type(Elem t) { return t == Elem::F32 ? CUDA_R_32F : CUDA_R_16BF; }

void make_plan(Plan& p, const ColumnGemm& g, const std::string& what) {
  check(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), what, "cublasLtMatmulDescCreate");
  const cublasOperation_t ta = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), what, "TRANSA");
  check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), what, "TRANSB");
  // Stored (not op'd) shapes, column-major: op(A) is m x k, op(B) k x n, C m x n.
  check(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, g.trans_a ? g.k : g.m, g.trans_a ? g.m : g.k, g.lda),
        what, "cublasLtMatrixLayoutCreate(A)");
  check(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, g.trans_b ? g.n : g.k, g.trans_b ? g.k : g.n, g.ldb),
        what, "cublasLtMatrixLayoutCreate(B)");
  check(cublasLtMatrixLayoutCreate(&p.c, cuda_type(g.c_t), g.m, g.n, g.ldc), what, "cublasLtMatrixLayoutCreate(C)");
}

// Up to kCandidates algorithms for g, best first by cuBLASLt's own estimate; 0 when none.
int heuristic(cublasLtHandle_t lt, const Plan& p, const ColumnGemm& g, size_t workspace_bytes,
              cublasLtMatmulHeuristicResult_t* out, const std::string& what) {
  cublasLtMatmulPreference_t pref = nullptr;
  check(cublasLtMatmulPreferenceCreate(&pref), what, "cublasLtMatmulPreferenceCreate");
  std::unique_ptr<std::remove_pointer_t<cublasLtMatmulPreference_t>, cublasStatus_t (*)(cublasLtMatmulPreference_t)>
      guard(pref, cublasLtMatmulPreferenceDestroy);
  const uint64_t ws = workspace_bytes;
  const uint32_t schemes = g.c_t == Elem::F32
                               ? uint32_t(CUBLASLT_REDUCTION_SCHEME_INPLACE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE)
                               : uint32_t(CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE);
  const uint32_t al_a = uint32_t(alignment(g.a)), al_b = uint32_t(alignment(g.b)), al_d = uint32_t(alignment(g.c));
  const uint32_t al_c = g.c_in ? uint32_t(alignment(g.c_in)) : al_d;  // C: the addend's buffer
  const std::pair<cublasLtMatmulPreferenceAttributes_t, const void*> attrs[] = {
      {CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &schemes}, {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b},    {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d}};
  check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws), what,
        "cublasLtMatmulPreferenceSetAttribute(workspace)");
  for (const auto& [attr, v] : attrs)
    check(cublasLtMatmulPreferenceSetAttribute(pref, attr, v, sizeof(uint32_t)), what,
          "cublasLtMatmulPreferenceSetAttribute");
  int n = 0;
  const cublasStatus_t s =
      cublasLtMatmulAlgoGetHeuristic(lt, p.op, p.a, p.b, p.c, p.c, pref, kCandidates, out, &n);
  if (s == CUBLAS_STATUS_NOT_SUPPORTED) return 0;
  check(s, what, "cublasLtMatmulAlgoGetHeuristic");
  return n;
}

// One product with `algo` into c (C's layout), on `stream`; the addend is g.c_in when set
// (out of place: cuBLASLt reads C and writes D), else c itself.
cublasStatus_t matmul(cublasLtHandle_t lt, const Plan& p, const cublasLtMatmulAlgo_t& algo, const ColumnGemm& g,
                      void* c, void* ws, size_t ws_bytes, void* stream) {
  const float alpha = 1.0f, beta = g.accumulate ? 1.0f : 0.0f;
  const void* addend = g.c_in ? g.c_in : c;
  return cublasLtMatmul(lt, p.op, &alpha, g.a, p.a, g.b, p.b, &beta, addend, p.c, c, p.c, &algo, ws, ws_bytes,
                        static_cast<cudaStream_t>(stream));
}

// Milliseconds per run of each candidate (infinity where it fails), timed into a scratch
// copy of C's extent placed at C's offset modulo 256 (same alignment as C). Empty when the
// scratch cannot be allocated (the caller keeps the heuristic's first).
std::vector<double> time_candidates(cublasLtHandle_t lt, const Plan& p, const ColumnGemm& g,
                                    const cublasLtMatmulHeuristicResult_t* cand, int n, void* ws,
                                    size_t ws_bytes, void* stream, const std::string& what,
                                    int* chosen) {
  *chosen = 0;
  const size_t bytes = (size_t(g.ldc) * size_t(g.n - 1) + size_t(g.m)) * (g.c_t == Elem::F32 ? 4 : 2) + 256;
  void* raw = nullptr;
  if (cudaMalloc(&raw, bytes) != cudaSuccess) {
    cudaGetLastError();  // out of memory is not sticky: clear it and go untimed
    log_warn("{}: no memory for a {} byte timing scratch; using cuBLASLt's first algorithm", what, bytes);
    return {};
  }
  cudaEvent_t ev[2] = {nullptr, nullptr};
  auto cleanup = [&] {
    cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
    for (cudaEvent_t e : ev)
      if (e) cudaEventDestroy(e);
    cudaFree(raw);
  };
  std::vector<double> ms(size_t(n), std::numeric_limits<double>::infinity());
  try {
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    void* scratch = static_cast<char*>(raw) + uintptr_t(g.c) % 256;
    check(cudaMemsetAsync(raw, 0, bytes, s), what, "cudaMemsetAsync(timing scratch)");  // finite old C
    check(cudaEventCreate(&ev[0]), what, "cudaEventCreate");
    check(cudaEventCreate(&ev[1]), what, "cudaEventCreate");
    for (int i = 0; i < n; ++i) {
      if (matmul(lt, p, cand[i].algo, g, scratch, ws, ws_bytes, stream) != CUBLAS_STATUS_SUCCESS) continue;
      check(cudaEventRecord(ev[0], s), what, "cudaEventRecord");
      bool ok = true;
      for (int r = 0; r < kTimedRuns && ok; ++r)
        ok = matmul(lt, p, cand[i].algo, g, scratch, ws, ws_bytes, stream) == CUBLAS_STATUS_SUCCESS;
      check(cudaEventRecord(ev[1], s), what, "cudaEventRecord");
      check(cudaEventSynchronize(ev[1]), what, "cudaEventSynchronize");
      float t = 0;
      check(cudaEventElapsedTime(&t, ev[0], ev[1]), what, "cudaEventElapsedTime");
      if (ok) ms[size_t(i)] = double(t) / kTimedRuns;
    }
  } catch (...) {
    cleanup();
    throw;
  }
  // Confirm a winner other than the heuristic's first against it, the two interleaved (a
  // run of each per round): one pass over the candidates can flatter one (on the H200 the
  // lm_head weight gradient's "fastest" measured 3.5 ms there and 4.5 ms in steady use, the
  // first 3.8). The winner stays only if it is also faster here.
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (ms[size_t(i)] < ms[size_t(best)]) best = i;
  if (best != 0 && !(ms[0] < std::numeric_limits<double>::infinity())) *chosen = best;  // the first failed
  if (best != 0 && ms[0] < std::numeric_limits<double>::infinity()) {
    try {
      cudaStream_t s = static_cast<cudaStream_t>(stream);
      void* scratch = static_cast<char*>(raw) + uintptr_t(g.c) % 256;
      double sum[2] = {0, 0};
      for (int round = 0; round < kConfirmRounds; ++round)
        for (int which = 0; which < 2; ++which) {
          const int c = which == 0 ? 0 : best;
          check(cudaEventRecord(ev[0], s), what, "cudaEventRecord");
          check(matmul(lt, p, cand[c].algo, g, scratch, ws, ws_bytes, stream), what, "cublasLtMatmul");
          check(cudaEventRecord(ev[1], s), what, "cudaEventRecord");
          check(cudaEventSynchronize(ev[1]), what, "cudaEventSynchronize");
          float t = 0;
          check(cudaEventElapsedTime(&t, ev[0], ev[1]), what, "cudaEventElapsedTime");
          sum[which] += t;
        }
      if (sum[1] < sum[0]) *chosen = best;
    } catch (...) {
      cleanup();
      throw;
    }
  }
  cleanup();
  return ms;
}

std::string algo_text(const cublasLtMatmulAlgo_t& a) {
  auto get = [&](cublasLtMatmulAlgoConfigAttributes_t attr) {
    int32_t v = -1;  // every attribute read here is a 32-bit integer
    size_t written = 0;
    cublasLtMatmulAlgoConfigGetAttribute(&a, attr, &v, sizeof v, &written);
    return v;
  };
  return fmt::format("algo {} tile {} stages {} splitK {} reduction {}", get(CUBLASLT_ALGO_CONFIG_ID),
                     get(CUBLASLT_ALGO_CONFIG_TILE_ID), get(CUBLASLT_ALGO_CONFIG_STAGES_ID),
                     get(CUBLASLT_ALGO_CONFIG_SPLITK_NUM), get(CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME));
}

std::string key_text(const Key& k) {
  return fmt::format("{} m={} n={} k={} lda={} ldb={} ldc={} C={} beta={}{} align={}/{}/{} dev={} {}",
                     cublas_product_name(k.product), k.m, k.n, k.k, k.lda, k.ldb, k.ldc,
                     k.c_t == Elem::F32 ? "F32" : "BF16", k.accumulate ? 1 : 0,
                     k.align_c_in ? fmt::format(" (addend apart, align {})", k.align_c_in) : "", k.align_a,
                     k.align_b, k.align_c, k.device, k.timed ? "timed" : "heuristic");
}

cublasLtHandle_t lt_handle(LtState& st, int device, const std::string& what) {
  auto it = st.handle.find(device);
  if (it != st.handle.end()) return it->second;
  cublasLtHandle_t h = nullptr;
  check(cublasLtCreate(&h), what, "cublasLtCreate");
  return st.handle.emplace(device, h).first->second;
}

}  // namespace

bool lt_matmul(int device, const ColumnGemm& g, bool timed, void* ws, size_t ws_bytes, void* stream,
               const std::string& what) {
  LtState& st = state();
  cublasLtHandle_t lt = lt_handle(st, device, what);
  const Key key{device, g.product, g.m, g.n, g.k, g.lda, g.ldb, g.ldc, g.c_t, g.accumulate,
                alignment(g.a), alignment(g.b), alignment(g.c), g.c_in ? alignment(g.c_in) : 0, timed};
  auto it = st.cache.find(key);
  if (it == st.cache.end()) {
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    check(cudaStreamIsCapturing(static_cast<cudaStream_t>(stream), &cap), what, "cudaStreamIsCapturing");
    cublasLtMatmulHeuristicResult_t cand[kCandidates] = {};
    if (cap != cudaStreamCaptureStatusNone) {  // capturing: the heuristic's first, not cached
      Plan plan;
      make_plan(plan, g, what);
      if (heuristic(lt, plan, g, ws_bytes, cand, what) == 0) return false;
      check(matmul(lt, plan, cand[0].algo, g, g.c, ws, ws_bytes, stream), what, "cublasLtMatmul");
      return true;
    }
    auto e = std::make_unique<Entry>();
    make_plan(e->plan, g, what);
    const int n = heuristic(lt, e->plan, g, ws_bytes, cand, what);
    std::string line = key_text(key) + ": ";
    if (n > 0) {
      int best = 0;
      std::vector<double> ms;
      if (timed && n > 1) ms = time_candidates(lt, e->plan, g, cand, n, ws, ws_bytes, stream, what, &best);
      if (!ms.empty() && !(ms[size_t(best)] < std::numeric_limits<double>::infinity()))
        throw runtime_err("{}: none of cuBLASLt's {} algorithms ran", what, n);
      e->has_algo = true;
      e->algo = cand[best].algo;
      line += fmt::format("candidate {} of {}, {}", best, n, algo_text(e->algo));
      if (!ms.empty()) {
        line += "; ms per candidate:";
        for (double t : ms) line += fmt::format(" {:.4f}", t);
      }
    } else {
      line += "no cuBLASLt algorithm; cublasGemmEx";
    }
    log_debug("cuBLAS GEMM {}", line);
    st.lines.push_back(std::move(line));
    it = st.cache.emplace(key, std::move(e)).first;
  }
  const Entry& e = *it->second;
  if (!e.has_algo) return false;
  check(matmul(lt, e.plan, e.algo, g, g.c, ws, ws_bytes, stream), what, "cublasLtMatmul");
  return true;
}

std::vector<std::string> lt_cache_lines() {
  std::lock_guard<std::mutex> lock(cublas_mutex());
  return state().lines;
}

}  // namespace qarl::kernels::gpu::detail
#endif  // QARL_HAVE_CUDA
