// The device half of GpuModel::forward (gpu_forward.cpp), shared with the captured decode step
// (decode_graph.cpp): the layer stack, final norm and lm_head over rows whose tokens, positions
// and cache slots are already in device memory. forward() packs chunks on the host, uploads
// them and calls run_forward; a decode graph captures run_forward once over persistent buffers
// and replays it, so both paths launch the same kernels with the same arguments (bitwise the
// same logits).
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "qarl/core/tensor.h"
#include "qarl/gpu/gpu_model.h"
#include "qarl/gpu/paged_cache.h"
#include "qarl/gpu/train_state.h"
#include "qarl/kernels/cuda/attention_gpu.h"

namespace qarl::gpu {

// One forward's rows. The attention plan is either host segments (attention_forward uploads
// its tile plan through the workspace) or a device array of n_tiles attn::Tile (what a
// captured step reads, rewritten before each replay).
struct ForwardRows {
  int64_t R = 0;
  const int32_t* tokens = nullptr;  // device [R]
  const int32_t* pos = nullptr;     // device [R]
  const int32_t* seq = nullptr;     // device [R]: cache slot per row
  const std::vector<kernels::gpu::AttnSegment>* segs = nullptr;
  const void* tiles = nullptr;
  int n_tiles = 0;
  std::vector<std::pair<int64_t, int64_t>> logit_runs;  // (first row, rows), in output order
  int64_t n_logits = 0;
};

// Buffers of a non-training forward (allocated on first use, reused while R is unchanged).
struct ForwardScratch {
  int64_t R = -1, n_logits = -1;
  Tensor x, qkv32, rstd_f, hf, logits;
  LayerActs acts;
  kernels::gpu::AttentionWorkspace ws;
};

// Runs the model over `in` on `stream` (nullptr: the legacy stream). With `st` (training,
// stream must be null) the per-layer activations go into st and the logits of every row into
// st->... as GpuModel::forward documents; otherwise into fs (fs.logits [n_logits, V]).
// Enqueues only: no host synchronization and no allocation once fs holds buffers for R.
void run_forward(GpuModel& m, const ForwardRows& in, PagedCache& cache, ForwardScratch& fs,
                 TrainState* st, void* stream);

}  // namespace qarl::gpu
