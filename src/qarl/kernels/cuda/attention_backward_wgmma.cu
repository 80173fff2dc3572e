// The fused attention backward's two product kernels on Hopper's warpgroup MMA (wgmma),
// head_dim 128: dK, dV (attn_bwd_dkdv_wgmma: the same work, tile walk and per-element
// arithmetic as attn_bwd_dkdv in attention_backward_dkdv.cu, read that header first, with one
// warpgroup per block of 64 keys instead of four warps issuing mma.sync) and dQ
// (attn_bwd_dq_wgmma: attn_bwd_dq of attention_backward_dq.cu, one warpgroup per query tile).
//
// Why the results are the same bits as the mma.sync kernel: every product is the same chain
// of k16 steps in the same order (S^T and dP^T over head_dim, dV and dK over the query tiles'
// columns, tile after tile), and a wgmma k16 step gives mma.sync.m16n8k16's bits, with A in
// shared memory or in registers, B K-major or N-major (bench/gpu/wgmma_probe.cu,
// bench/gpu/wgmma_forms_probe.cu; H200 runs in tests/data/cuda/s7_*). The softmax gradient is
// the same code per element. Where the mma.sync kernel skips a 32-column step whose P is all
// zero, this one adds the zero products (acc + 0 = acc: an accumulator that starts at +0
// never becomes -0), so dK and dV agree; only zero dS entries there may differ in sign in the
// workspace, which the dq kernel's products absorb the same way.
// dQ: the same k16 chain over the keys (blocks, then 16-key steps, ascending); where the
// mma.sync kernel's warp stops at its last row's position, the warpgroup goes on to the
// tile's last row, adding products of zero dS (keys after a row's position are masked).
// CudaAttention.BackwardLayoutsAgreeBitwise checks dq, dk, dv against the mma.sync kernels.
//
// Layout: operands in shared memory in the 128-byte swizzle layout (wgmma_ptx.cuh), each
// 64 x 128 bf16 matrix as two 64-column blocks of [64 rows][128 bytes] (8 KiB apart): K and V
// of the key block, and two stages of the query tile's Q and dO (cp.async, double-buffered as
// in the mma.sync kernel). Per query tile:
//   S^T = K Q^T, dP^T = V dO^T   (wgmma m64n64k16, both operands K-major, 8 steps each)
//   P^T, dS^T in registers (the accumulator layout is mma.sync's C fragment, so the A
//   fragments for the next products are the same packing as the mma.sync kernel's)
//   dV += P^T dO, dK += dS^T Q   (wgmma m64n128k16, A from registers, B N-major, 4 steps each)
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "qarl/kernels/cuda/attention_internal.h"
#include "qarl/kernels/cuda/attention_mma.cuh"
#include "qarl/kernels/cuda/launch.h"
#include "qarl/kernels/cuda/launch_config.cuh"
#include "qarl/kernels/cuda/attention_wgmma.cuh"
#include "qarl/kernels/cuda/wgmma_ptx.cuh"

namespace qarl::kernels::gpu::attn {
namespace {

using wg::kD;
using wg::wgmma_rs_n128;
constexpr int kKeys = 64, kCols = kTileRows;
constexpr int kMatBytes = kKeys * kD * 2;  // one 64 x 128 bf16 matrix: 16 KiB
static_assert(kCols == kKeys, "the Q / dO tiles and the K / V blocks share one layout");
constexpr size_t kSmemBytes = 1024 /* alignment */ + size_t(kMatBytes) * 6 + 2 * kCols * sizeof(float2) +
                              kCols * sizeof(int);



__global__ void __launch_bounds__(128, 1) attn_bwd_dkdv_wgmma(const BwdTile* __restrict__ tiles, const BwdArgs a) {
#if QARL_HAS_WGMMA
  extern __shared__ uint4 smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  uint8_t* ks = smem;
  uint8_t* vs = ks + kMatBytes;
  uint8_t* stage0 = vs + kMatBytes;  // stage st: Q at stage0 + st * 2 * kMatBytes, dO after it
  float2* stat_stage = reinterpret_cast<float2*>(stage0 + 4 * kMatBytes);
  int* col_row = reinterpret_cast<int*>(stat_stage + 2 * kCols);

  const BwdTile t = tiles[blockIdx.x];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
  const int group = a.group, H = a.n_heads;
  const int rpt = kCols / group, n_cols = rpt * group;
  const int key_first = t.block * kKeys, warp_key0 = key_first + warp * 16;
  const int n_qt = (t.T + rpt - 1) / rpt, qt0 = key_first / rpt;
  const int64_t ds_qt = int64_t((t.T + kKeyBlock - 1) / kKeyBlock) * kDsTile;
  bf16* ds_row0 = a.ds + t.ds_off + int64_t(warp_key0 / kKeyBlock) * kDsTile +
                  (warp_key0 % kKeyBlock + g) * kCols + 2 * tq;

  for (int c = tid; c < kCols; c += 128) col_row[c] = c < n_cols ? c / group : (1 << 29);

  const bf16* kbase = a.k + t.kv_row0 * a.kv_stride + int64_t(t.kv_head) * kD;
  const bf16* vbase = a.v + t.kv_row0 * a.kv_stride + int64_t(t.kv_head) * kD;
  for (int c = tid; c < kKeys * 16; c += 128) {
    const int r = c >> 4, ch = c & 15, key = key_first + r;
    const bool ok = key < t.T;  // keys past the sequence: zeros (masked below)
    const int64_t off = int64_t(ok ? key : 0) * a.kv_stride + ch * 8;
    copy8(reinterpret_cast<uint16_t*>(ks + wg::swizzled<kKeys>(r, ch)), kbase + off, ok, a.vec_kv, a.k);
    copy8(reinterpret_cast<uint16_t*>(vs + wg::swizzled<kKeys>(r, ch)), vbase + off, ok, a.vec_kv, a.v);
  }
  auto load_tile = [&](int qt, int st) {
    uint8_t* qs = stage0 + st * 2 * kMatBytes;
    uint8_t* dos = qs + kMatBytes;
    for (int c = tid; c < kCols * 16; c += 128) {
      const int cl = c >> 4, ch = c & 15, p = qt * rpt + cl / group;
      const bool ok = cl < n_cols && p < t.T;
      const int64_t row = int64_t(t.q_row0) + (ok ? p : 0);
      const int64_t hc = int64_t(t.kv_head * group + cl % group) * kD + ch * 8;
      copy8(reinterpret_cast<uint16_t*>(qs + wg::swizzled<kKeys>(cl, ch)), a.q + row * a.q_stride + hc, ok, a.vec_q, a.q);
      copy8(reinterpret_cast<uint16_t*>(dos + wg::swizzled<kKeys>(cl, ch)), a.dout + row * a.o_stride + hc, ok, a.vec_do,
            a.dout);
    }
    float2* stats = stat_stage + st * kCols;
    for (int c = tid; c < kCols; c += 128) {
      const int p = qt * rpt + c / group;
      const bool ok = c < n_cols && p < t.T;
      const int64_t i = (int64_t(t.q_row0) + (ok ? p : 0)) * H + t.kv_head * group + c % group;
      const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(stats + c));
      asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(s),
                   "l"(ok ? static_cast<const void*>(a.stats + i) : static_cast<const void*>(a.stats)),
                   "r"(ok ? 8 : 0));
    }
    cp_async_commit();
  };

  float dk[64], dv[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) dk[i] = dv[i] = 0.0f;

  load_tile(qt0, 0);
  for (int qt = qt0; qt < n_qt; ++qt) {
    const int st = (qt - qt0) & 1;
    if (qt + 1 < n_qt) {
      load_tile(qt + 1, st ^ 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    wgmma::fence_proxy_async();  // this thread's smem writes (cp.async, st.shared) -> wgmma reads
    __syncthreads();
    const uint8_t* qs = stage0 + st * 2 * kMatBytes;
    const uint8_t* dos = qs + kMatBytes;
    const float2* stats = stat_stage + st * kCols;
    const int pos0 = qt * rpt;
    bf16* ds_row = ds_row0 + int64_t(qt) * ds_qt;

    float s[32], dp[32];
#pragma unroll
    for (int i = 0; i < 32; ++i) s[i] = dp[i] = 0.0f;
    wgmma::fence_operand(s);
    wgmma::fence_operand(dp);
    wgmma::fence();
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
      wgmma::wgmma_m64n64k16(s, wg::desc_kmajor<kKeys>(ks, 0, kk), wg::desc_kmajor<kKeys>(qs, 0, kk));
    }
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
      wgmma::wgmma_m64n64k16(dp, wg::desc_kmajor<kKeys>(vs, 0, kk), wg::desc_kmajor<kKeys>(dos, 0, kk));
    }
    wgmma::commit();
    wgmma::wait<0>();
    wgmma::fence_operand(s);
    wgmma::fence_operand(dp);

    // P^T, dS^T (the mma.sync kernel's softmax_grad, per element): accumulator i = 4n + e is
    // key warp_key0 + g + 8 * (e >> 1), column 8n + 2tq + (e & 1).
    uint32_t pf[4][4], dsf[4][4];
    auto softmax_grad = [&](auto masked) {
#pragma unroll
      for (int n = 0; n < 8; ++n) {
        float p[4], d[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = n * 8 + 2 * tq + (e & 1);
          const float2 sd = stats[col];
          p[e] = fast_exp2(__fmaf_rn(s[4 * n + e], a.scale_log2, -sd.x));
          if constexpr (decltype(masked)::value) {
            const int key = warp_key0 + g + 8 * (e >> 1), pos = pos0 + col_row[col];
            p[e] = key <= pos && pos < t.T ? p[e] : 0.0f;
          }
          d[e] = p[e] * (dp[4 * n + e] - sd.y);
        }
        pf[n >> 1][(n & 1) * 2 + 0] = pack_bf16(p[0], p[1]);
        pf[n >> 1][(n & 1) * 2 + 1] = pack_bf16(p[2], p[3]);
        dsf[n >> 1][(n & 1) * 2 + 0] = pack_bf16(d[0], d[1]);
        dsf[n >> 1][(n & 1) * 2 + 1] = pack_bf16(d[2], d[3]);
      }
    };
    // Unmasked when every column is valid and at or after every key of the warpgroup
    // (uniform across the warpgroup: the wgmma below needs all four warps).
    if (n_cols == kCols && pos0 + rpt - 1 < t.T && key_first + kKeys - 1 <= pos0)
      softmax_grad(std::false_type{});
    else
      softmax_grad(std::true_type{});
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      uint32_t* w0 = reinterpret_cast<uint32_t*>(ds_row + j * 16);
      uint32_t* w1 = reinterpret_cast<uint32_t*>(ds_row + 8 * kCols + j * 16);
      w0[0] = dsf[j][0];
      w1[0] = dsf[j][1];
      w0[4] = dsf[j][2];
      w1[4] = dsf[j][3];
    }

    wgmma::fence_operand(dv);
    wgmma::fence_operand(dk);
    wgmma::fence();
#pragma unroll
    for (int j = 0; j < 4; ++j) wgmma_rs_n128(dv, pf[j], wg::desc_nmajor<kKeys>(dos, 16 * j));
#pragma unroll
    for (int j = 0; j < 4; ++j) wgmma_rs_n128(dk, dsf[j], wg::desc_nmajor<kKeys>(qs, 16 * j));
    wgmma::commit();
    wgmma::wait<0>();
    wgmma::fence_operand(dv);
    wgmma::fence_operand(dk);
    __syncthreads();  // this stage is refilled by the next iteration's prefetch
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int key = warp_key0 + g + 8 * i;
    if (key >= t.T) continue;
    const int64_t off = (t.kv_row0 + key) * a.dkv_stride + int64_t(t.kv_head) * kD + 2 * tq;
#pragma unroll
    for (int n = 0; n < 16; ++n) {
      a.dk[off + n * 8] = dk[4 * n + 2 * i] * a.scale;
      a.dk[off + n * 8 + 1] = dk[4 * n + 2 * i + 1] * a.scale;
      a.dv[off + n * 8] = dv[4 * n + 2 * i];
      a.dv[off + n * 8 + 1] = dv[4 * n + 2 * i + 1];
    }
  }
#else
  __trap();
#endif
}

constexpr int kLdt = kTileRows + 8;  // dS tile smem row stride (elements), as attn_bwd_dq's
constexpr size_t kDqSmemBytes = 1024 + 2 * (size_t(kMatBytes) + size_t(kKeyBlock) * kLdt * 2);

// dQ = scale * dS K for one query tile (64 (row, head) columns) of one sequence and KV head:
// per key block, K (N-major B, swizzled) and the dS tile ([key][column], A fragments through
// ldmatrix.trans as in attn_bwd_dq) stream through two shared-memory stages.
__global__ void __launch_bounds__(128, 4) attn_bwd_dq_wgmma(const BwdTile* __restrict__ tiles, const BwdArgs a) {
#if QARL_HAS_WGMMA
  extern __shared__ uint4 smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  constexpr size_t kStage = size_t(kMatBytes) + size_t(kKeyBlock) * kLdt * 2;  // K block, then dS tile

  const BwdTile t = tiles[blockIdx.x];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
  const int group = a.group, rpt = kTileRows / group;
  const int qt = t.block, r_first = qt * rpt;
  const int n_rows = max(0, min(rpt, t.T - r_first)), n_m = n_rows * group;
  bool valid[2];
  int64_t row[2];
  int head[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int m = warp * 16 + g + 8 * i;
    valid[i] = m < n_m;
    const int rl = valid[i] ? m / group : 0;
    row[i] = int64_t(t.q_row0) + r_first + rl;
    head[i] = t.kv_head * group + (valid[i] ? m % group : 0);
  }
  const int last_pos = min(t.T, (qt + 1) * rpt) - 1;  // the tile's last row's position
  const int n_kb = last_pos / kKeyBlock + 1;
  const bf16* kbase = a.k + t.kv_row0 * a.kv_stride + int64_t(t.kv_head) * kD;
  const int64_t ds_qt = int64_t((t.T + kKeyBlock - 1) / kKeyBlock) * kDsTile;
  auto load_block = [&](int kb, int st) {
    uint8_t* ks = smem + st * kStage;
    uint16_t* dss = reinterpret_cast<uint16_t*>(ks + kMatBytes);
    for (int c = tid; c < kKeyBlock * 16; c += 128) {
      const int r = c >> 4, ch = c & 15, key = kb * kKeyBlock + r;
      const bool ok = key <= last_pos;  // later keys: zeros
      copy8(reinterpret_cast<uint16_t*>(ks + wg::swizzled<kKeys>(r, ch)), kbase + int64_t(ok ? key : 0) * a.kv_stride + ch * 8,
            ok, a.vec_kv, a.k);
    }
    for (int c = tid; c < kKeyBlock * (kTileRows / 8); c += 128) {
      const int r = c / (kTileRows / 8), col = (c % (kTileRows / 8)) * 8, key = kb * kKeyBlock + r;
      const bool ok = key <= last_pos;  // the dk/dv kernel wrote nothing past the tile's rows
      const bf16* src = a.ds + t.ds_off + qt * ds_qt + kb * kDsTile + r * kTileRows + col;
      cp_async16(dss + r * kLdt + col, ok ? src : a.ds, ok);
    }
    cp_async_commit();
  };

  float acc[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = 0.0f;
  load_block(0, 0);
  for (int kb = 0; kb < n_kb; ++kb) {
    if (kb + 1 < n_kb) {
      load_block(kb + 1, (kb + 1) & 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    wgmma::fence_proxy_async();
    __syncthreads();
    const uint8_t* ks = smem + (kb & 1) * kStage;
    const uint16_t* dss = reinterpret_cast<const uint16_t*>(ks + kMatBytes);
    const int steps = min(kKeyBlock / 16, (last_pos - kb * kKeyBlock) / 16 + 1);  // uniform
    uint32_t af[4][4];
#pragma unroll
    for (int c = 0; c < 4; ++c)
      if (c < steps)
        ldmatrix_x4_trans(af[c], dss + (c * 16 + (lane >> 4) * 8 + (lane & 7)) * kLdt + warp * 16 +
                                     ((lane >> 3) & 1) * 8);
    wgmma::fence_operand(acc);
    wgmma::fence();
    if (steps == 4) {
#pragma unroll
      for (int c = 0; c < 4; ++c) wgmma_rs_n128(acc, af[c], wg::desc_nmajor<kKeys>(ks, 16 * c));
    } else {
      for (int c = 0; c < steps; ++c) wgmma_rs_n128(acc, af[c], wg::desc_nmajor<kKeys>(ks, 16 * c));
    }
    wgmma::commit();
    wgmma::wait<0>();
    wgmma::fence_operand(acc);
    __syncthreads();  // this stage is refilled by the next iteration's prefetch
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (!valid[i]) continue;
    float* o = a.dq + row[i] * a.dq_stride + int64_t(head[i]) * kD + 2 * tq;
#pragma unroll
    for (int n = 0; n < 16; ++n) {
      o[n * 8] = acc[4 * n + 2 * i] * a.scale;
      o[n * 8 + 1] = acc[4 * n + 2 * i + 1] * a.scale;
    }
  }
#else
  __trap();
#endif
}

}  // namespace

bool backward_dkdv_wgmma_usable(int head_dim) { return head_dim == kD && wgmma::device_supported(); }

void launch_backward_dq_wgmma(const BwdTile* tiles, int n_tiles, const BwdArgs& a, void* stream) {
  if (n_tiles == 0) return;
  opt_in_dynamic_smem<attn_bwd_dq_wgmma>(kDqSmemBytes);
  attn_bwd_dq_wgmma<<<n_tiles, 128, kDqSmemBytes, static_cast<cudaStream_t>(stream)>>>(tiles, a);
  check_last_launch("attention backward (dq; wgmma)");
}

void launch_backward_dkdv_wgmma(const BwdTile* tiles, int n_tiles, const BwdArgs& a, void* stream) {
  if (n_tiles == 0) return;
  opt_in_dynamic_smem<attn_bwd_dkdv_wgmma>(kSmemBytes);
  attn_bwd_dkdv_wgmma<<<n_tiles, 128, kSmemBytes, static_cast<cudaStream_t>(stream)>>>(tiles, a);
  check_last_launch("attention backward (dk, dv; wgmma)");
}

}  // namespace qarl::kernels::gpu::attn
