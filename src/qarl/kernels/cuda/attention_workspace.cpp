// AttentionWorkspace and the host side of attention_forward (attention_gpu.h): argument
// checks, the tile plan and its upload. The kernel is attention_forward.cu.
#include "qarl/kernels/cuda/attention_gpu.h"

#include <algorithm>
#include <cstring>

#include "qarl/core/error.h"

#ifdef QARL_HAVE_CUDA
#include <cuda_runtime.h>

#include "qarl/kernels/cuda/attention_internal.h"

namespace qarl::kernels::gpu {

attn::Tuning& attn::tuning() {
  static Tuning t;
  return t;
}

AttentionWorkspace::~AttentionWorkspace() {
  if (ptr_) cudaFree(ptr_);
}

bool AttentionWorkspace::holds_upload(const void* host, size_t bytes) const {
  return ptr_ && !uploaded_.empty() && uploaded_.size() == bytes &&
         std::memcmp(uploaded_.data(), host, bytes) == 0;
}

void AttentionWorkspace::remember_upload(const void* host, size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(host);
  uploaded_.assign(p, p + bytes);
}

void* AttentionWorkspace::reserve(size_t bytes) {
  uploaded_.clear();
  if (bytes <= size_ && ptr_) return ptr_;
  // Earlier launches may still read the old buffer: let them finish before it goes.
  if (ptr_) {
    cudaDeviceSynchronize();
    cudaFree(ptr_);
    ptr_ = nullptr;
    size_ = 0;
  }
  const size_t want = std::max<size_t>(bytes + bytes / 4, 1 << 16);
  cudaError_t e = cudaMalloc(&ptr_, want);
  if (e != cudaSuccess) {
    ptr_ = nullptr;
    throw runtime_err("attention workspace: cudaMalloc of {} bytes failed: {}", want,
                      cudaGetErrorString(e));
  }
  size_ = want;
  return ptr_;
}

void attention_forward(const bf16* q, int64_t q_stride, const std::vector<AttnSegment>& segs,
                       const PagedKV& kv, int n_heads, float scale, bf16* out,
                       int64_t out_stride, float* lse, AttentionWorkspace& ws, void* stream) {
  const int D = kv.head_dim;
  if (D != 16 && D != 32 && D != 64 && D != 128)
    throw usage_err("attention forward: head_dim {} is not supported (16, 32, 64 or 128)", D);
  if (kv.n_kv_heads <= 0 || n_heads <= 0 || n_heads % kv.n_kv_heads != 0)
    throw usage_err("attention forward: {} query heads are not a multiple of {} KV heads",
                    n_heads, kv.n_kv_heads);
  const int group = n_heads / kv.n_kv_heads;
  if (group > attn::kTileRows)
    throw usage_err("attention forward: {} query heads per KV head (at most {})", group,
                    attn::kTileRows);
  if (kv.block_size <= 0)
    throw usage_err("attention forward: KV block size {} must be positive", kv.block_size);
  if (q_stride % 2 || out_stride % 2 || q_stride < int64_t(n_heads) * D ||
      out_stride < int64_t(n_heads) * D)
    throw usage_err("attention forward: q/out strides {}/{} must be even and >= {}", q_stride,
                    out_stride, int64_t(n_heads) * D);
  // The plan: each segment in tiles of rows_per_tile rows x the group's heads, per KV head.
  // Tiles of 8 warps (128 (row, head) pairs: half the K/V traffic per row) where a segment
  // fills one, else of 4 (decode, short chunks). A row's bits do not depend on the choice:
  // every warp runs the same instructions on its own 16 rows.
  int max_rows = 0;
  for (const AttnSegment& s : segs) max_rows = std::max(max_rows, s.n_rows);
  int warps = int64_t(max_rows) * group >= 8 * 16 ? 8 : 4;
  if (attn::tuning().fwd_warps == 4 || attn::tuning().fwd_warps == 8)
    warps = attn::tuning().fwd_warps;
  const int rows_per_tile = 16 * warps / group;
  std::vector<attn::Tile> tiles;
  for (const AttnSegment& s : segs) {
    if (s.n_rows < 0 || s.first_pos < 0 || s.first_row < 0 || s.seq < 0)
      throw usage_err("attention forward: bad segment (seq {}, first_row {}, n_rows {}, "
                      "first_pos {})", s.seq, s.first_row, s.n_rows, s.first_pos);
    const int64_t n_keys = int64_t(s.first_pos) + s.n_rows;
    if (s.n_rows > 0 && (n_keys + kv.block_size - 1) / kv.block_size > kv.max_blocks_per_seq)
      throw usage_err("attention forward: sequence {} needs {} keys, more than {} blocks of {}",
                      s.seq, n_keys, kv.max_blocks_per_seq, kv.block_size);
    for (int r = 0; r < s.n_rows; r += rows_per_tile)
      for (int h = 0; h < kv.n_kv_heads; ++h)
        tiles.push_back({s.seq, s.first_row + r, std::min(rows_per_tile, s.n_rows - r),
                         s.first_pos + r, h, 0, 0, 0});
  }
  if (tiles.empty()) return;
  // Longest key ranges first (load balance; the order changes no value).
  std::stable_sort(tiles.begin(), tiles.end(), [](const attn::Tile& a, const attn::Tile& b) {
    return a.first_pos + a.n_rows > b.first_pos + b.n_rows;
  });
  if (tiles.size() > size_t(1) << 30) throw usage_err("attention forward: too many tiles");
  const size_t plan_bytes = tiles.size() * sizeof(attn::Tile);
  attn::Tile* d_tiles;
  if (ws.holds_upload(tiles.data(), plan_bytes)) {  // the previous layer's plan, still there
    d_tiles = static_cast<attn::Tile*>(ws.data());
  } else {
    d_tiles = static_cast<attn::Tile*>(ws.reserve(plan_bytes));
    cudaError_t e = cudaMemcpyAsync(d_tiles, tiles.data(), plan_bytes, cudaMemcpyHostToDevice,
                                    static_cast<cudaStream_t>(stream));
    if (e != cudaSuccess)
      throw runtime_err("attention forward: tile upload failed: {}", cudaGetErrorString(e));
    ws.remember_upload(tiles.data(), plan_bytes);
  }
  attn::launch_forward_tiles(d_tiles, int(tiles.size()), warps, q, q_stride, kv, group, scale,
                             out, out_stride, lse, stream);
}

}  // namespace qarl::kernels::gpu

#else  // !QARL_HAVE_CUDA: the declarations link, and say why they cannot run.

namespace qarl::kernels::gpu {

AttentionWorkspace::~AttentionWorkspace() = default;
void* AttentionWorkspace::reserve(size_t) {
  throw runtime_err("attention workspace: qarl was built without CUDA");
}
void launch_kv_write(const PagedKV&, const bf16*, const bf16*, int64_t, const int32_t*,
                     const int32_t*, int64_t, void*) {
  throw runtime_err("attention kv write: qarl was built without CUDA");
}
void attention_forward(const bf16*, int64_t, const std::vector<AttnSegment>&, const PagedKV&,
                       int, float, bf16*, int64_t, float*, AttentionWorkspace&, void*) {
  throw runtime_err("attention forward: qarl was built without CUDA");
}
void attention_backward(const std::vector<AttnSegment>&, const std::vector<int64_t>&,
                        const bf16*, int64_t, const bf16*, const bf16*, int64_t, const bf16*,
                        const bf16*, int64_t, const float*, int, int, int, float, float*,
                        int64_t, float*, float*, int64_t, AttentionWorkspace&, void*) {
  throw runtime_err("attention backward: qarl was built without CUDA");
}

}  // namespace qarl::kernels::gpu
#endif  // QARL_HAVE_CUDA
