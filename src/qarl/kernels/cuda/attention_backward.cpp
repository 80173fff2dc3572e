// attention_backward (attention_gpu.h): the host side of the fused tensor-core backward
// (FlashAttention-2 style, no fp32 score matrix in memory). Checks, the tile plan and its
// upload, then three launches on the stream:
//   attention_backward_dq.cu    stats: lse*log2(e) and dsum = rowsum(dO*O) per (row, head);
//   attention_backward_dkdv.cu  dK, dV per block of 64 (or 128) keys of one KV head, looping
//                               over the query tiles from the diagonal to the end of the
//                               sequence; it also writes dS (bf16) to the workspace;
//   attention_backward_dq.cu    dQ = dS K per tile of 64 (query row, q head) pairs.
// S and dP are computed once (5 GEMM-sized products; the previous layout recomputed them in
// its dq kernel: 7), with no atomics: each result element is summed by one thread in a fixed
// order, so the result is bitwise reproducible. P and dS are rounded to bf16 for the tensor
// cores (dQ reads the same bf16 dS that dK uses); S, dP and every sum stay fp32. The dS tiles
// take T^2 * n_heads * 2 bytes per sequence (268 MB at 8 x 1024, 16 heads). The simple form
// this replaced (cuBLAS TF32 over materialized S and dP) and the two-kernel form are in git
// history; the CPU reference is kernels/cpu/attention.h. On an sm_90 device with head_dim 128
// the dk/dv and dq products run on wgmma instead (attention_backward_wgmma.cu: the same
// tiles, chains and bits).
#include "qarl/kernels/cuda/attention_gpu.h"

#include <algorithm>
#include <cstring>

#include "qarl/core/error.h"

#ifdef QARL_HAVE_CUDA
#include <cuda_runtime.h>

#include "qarl/kernels/cuda/attention_internal.h"

namespace qarl::kernels::gpu {
namespace {

bool aligned(const void* p, size_t n) { return reinterpret_cast<uintptr_t>(p) % n == 0; }

}  // namespace

void attention_backward(const std::vector<AttnSegment>& segs,
                        const std::vector<int64_t>& kv_first_row, const bf16* q,
                        int64_t q_stride, const bf16* k, const bf16* v, int64_t kv_stride,
                        const bf16* out, const bf16* dout, int64_t o_stride, const float* lse,
                        int n_heads, int n_kv_heads, int head_dim, float scale, float* dq,
                        int64_t dq_stride, float* dk, float* dv, int64_t dkv_stride,
                        AttentionWorkspace& ws, void* stream) {
  if (segs.size() != kv_first_row.size())
    throw usage_err("attention backward: {} segments but {} K/V row offsets", segs.size(),
                    kv_first_row.size());
  const int D = head_dim;
  if (D != 16 && D != 32 && D != 64 && D != 128)
    throw usage_err("attention backward: head_dim {} is not supported (16, 32, 64 or 128)", D);
  if (n_kv_heads <= 0 || n_heads <= 0 || n_heads % n_kv_heads != 0)
    throw usage_err("attention backward: {} query heads are not a multiple of {} KV heads",
                    n_heads, n_kv_heads);
  const int H = n_heads, HK = n_kv_heads, group = H / HK;
  if (group > attn::kTileRows)
    throw usage_err("attention backward: {} query heads per KV head (at most {})", group,
                    attn::kTileRows);
  if (q_stride % 2 || kv_stride % 2 || o_stride % 2 || q_stride < int64_t(H) * D ||
      o_stride < int64_t(H) * D || kv_stride < int64_t(HK) * D || dq_stride < int64_t(H) * D ||
      dkv_stride < int64_t(HK) * D)
    throw usage_err("attention backward: strides q {} / k,v {} / out {} must be even and hold "
                    "the heads; dq {} / dk,dv {} must hold them", q_stride, kv_stride, o_stride,
                    dq_stride, dkv_stride);
  if (!aligned(q, 4) || !aligned(k, 4) || !aligned(v, 4) || !aligned(out, 4) ||
      !aligned(dout, 4))
    throw usage_err("attention backward: bf16 inputs must be 4-byte aligned");
  // The plan. Element 0 is a header (H, HK, D, group in the int fields; the number of dk/dv
  // tiles and their warps in the int64 ones) so that an identical upload implies an identical
  // layout of the stats and dS areas too.
  const int rpt = attn::kTileRows / group;
  int dkv_warps = 4;  // 64 keys per CTA
  if (attn::tuning().dkdv_warps == 4 || attn::tuning().dkdv_warps == 8)
    dkv_warps = attn::tuning().dkdv_warps;
  const int kv_block = 16 * dkv_warps;
  int dq_warps = 4;  // one query tile per CTA
  if (attn::tuning().dq_warps == 4 || attn::tuning().dq_warps == 8)
    dq_warps = attn::tuning().dq_warps;
  const int dq_rows = rpt * (dq_warps / 4);  // query rows per dq CTA
  std::vector<attn::BwdTile> dq_tiles, dkv_tiles;
  int64_t rows = 0;     // stats rows: past the last query row of any segment
  int64_t ds_elems = 0;  // dS tile elements
  for (size_t i = 0; i < segs.size(); ++i) {
    const AttnSegment& s = segs[i];
    if (s.n_rows < 0 || s.first_pos != 0 || s.first_row < 0 || kv_first_row[i] < 0)
      throw usage_err("attention backward: segment of sequence {} must start at position 0 "
                      "(first_pos {}, n_rows {}, first_row {}, K/V row {})", s.seq, s.first_pos,
                      s.n_rows, s.first_row, kv_first_row[i]);
    if (s.n_rows == 0) continue;
    rows = std::max<int64_t>(rows, int64_t(s.first_row) + s.n_rows);
    for (int h = 0; h < HK; ++h) {
      for (int b = 0; b * kv_block < s.n_rows; ++b)
        dkv_tiles.push_back({s.first_row, s.n_rows, h, b, kv_first_row[i], ds_elems});
      for (int b = 0; b * dq_rows < s.n_rows; ++b)
        dq_tiles.push_back({s.first_row, s.n_rows, h, b, kv_first_row[i], ds_elems});
      ds_elems += attn::ds_tiles_per_head(s.n_rows, group) * attn::kDsTile;
    }
  }
  if (dq_tiles.empty()) return;
  if (dq_tiles.size() + dkv_tiles.size() > size_t(1) << 30)
    throw usage_err("attention backward: too many tiles");
  // Most work first (load balance; the order changes no value): a key block's work grows with
  // the queries after it, a dq tile's with its last position.
  std::stable_sort(dkv_tiles.begin(), dkv_tiles.end(), [&](const auto& a, const auto& b) {
    return a.T - a.block * kv_block > b.T - b.block * kv_block;
  });
  std::stable_sort(dq_tiles.begin(), dq_tiles.end(), [&](const auto& a, const auto& b) {
    return std::min(a.T, (a.block + 1) * dq_rows) > std::min(b.T, (b.block + 1) * dq_rows);
  });
  std::vector<attn::BwdTile> plan;
  plan.reserve(1 + dq_tiles.size() + dkv_tiles.size());
  plan.push_back({H, HK, D, group, int64_t(dkv_tiles.size()), int64_t(dkv_warps * 16 + dq_warps)});
  plan.insert(plan.end(), dkv_tiles.begin(), dkv_tiles.end());
  plan.insert(plan.end(), dq_tiles.begin(), dq_tiles.end());
  const size_t plan_bytes = plan.size() * sizeof(attn::BwdTile);
  const size_t stats_off = (plan_bytes + 255) / 256 * 256;
  const size_t ds_off = (stats_off + size_t(rows) * H * sizeof(float2) + 255) / 256 * 256;
  const size_t total = ds_off + size_t(ds_elems) * sizeof(bf16);
  char* base;
  if (ws.holds_upload(plan.data(), plan_bytes)) {  // the previous layer's plan, still there
    base = static_cast<char*>(ws.data());
  } else {
    base = static_cast<char*>(ws.reserve(total));
    cudaError_t e = cudaMemcpyAsync(base, plan.data(), plan_bytes, cudaMemcpyHostToDevice,
                                    static_cast<cudaStream_t>(stream));
    if (e != cudaSuccess)
      throw runtime_err("attention backward: tile upload failed: {}", cudaGetErrorString(e));
    ws.remember_upload(plan.data(), plan_bytes);
  }
  const attn::BwdTile* d_tiles = reinterpret_cast<const attn::BwdTile*>(base) + 1;
  attn::BwdArgs a{};
  a.q = q, a.k = k, a.v = v, a.out = out, a.dout = dout, a.lse = lse;
  a.stats = reinterpret_cast<float2*>(base + stats_off);
  a.ds = reinterpret_cast<bf16*>(base + ds_off);
  a.dq = dq, a.dk = dk, a.dv = dv;
  a.q_stride = q_stride, a.kv_stride = kv_stride, a.o_stride = o_stride;
  a.dq_stride = dq_stride, a.dkv_stride = dkv_stride;
  a.stat_rows = rows;
  a.n_heads = H, a.group = group;
  a.scale = scale;
  a.scale_log2 = float(double(scale) * 1.4426950408889634);
  a.vec_q = aligned(q, 16) && q_stride % 8 == 0;
  a.vec_do = aligned(dout, 16) && o_stride % 8 == 0;
  a.vec_kv = aligned(k, 16) && aligned(v, 16) && kv_stride % 8 == 0;
  attn::launch_backward_stats(a, D, stream);
  if (dkv_warps == 4 && attn::tuning().dkdv_wgmma != 0 && attn::backward_dkdv_wgmma_usable(D))
    attn::launch_backward_dkdv_wgmma(d_tiles, int(dkv_tiles.size()), a, stream);
  else
    attn::launch_backward_dkdv(d_tiles, int(dkv_tiles.size()), dkv_warps, a, D, stream);
  if (!attn::tuning().bwd_skip_dq) {
    if (dq_warps == 4 && attn::tuning().dq_wgmma != 0 && attn::backward_dkdv_wgmma_usable(D))
      attn::launch_backward_dq_wgmma(d_tiles + dkv_tiles.size(), int(dq_tiles.size()), a, stream);
    else
      attn::launch_backward_dq(d_tiles + dkv_tiles.size(), int(dq_tiles.size()), dq_warps, a, D,
                               stream);
  }
}

}  // namespace qarl::kernels::gpu
#endif  // QARL_HAVE_CUDA
