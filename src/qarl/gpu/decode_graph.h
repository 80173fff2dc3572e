// Decode steps as CUDA graphs. A batch-1 decode step of a 0.6B model is ~420 small kernels whose
// launch costs exceed their run time; a captured graph replays them with one launch. The step is
// run_forward (forward_internal.h) over persistent buffers whose per-step values (tokens,
// positions, cache slots, the attention tile plan) are rewritten in device memory before each
// replay, one host-to-device copy; the block tables are the cache's device table (stable
// pointer, updated by sync_tables()). Replays launch exactly the kernels, with exactly the
// arguments, that an eager run_forward of the same rows launches: same bits (tested in
// tests/gpu/gpu_generate_test.cpp against graphs off).
//
// One DecodeGraphs lives for one generate() call: the graphs bake in the model's weights,
// GEMM mode, K/V quantizer scales, RoPE tables and the cache's pools, none of which change
// within a call. A graph is captured for a batch size when it is seen on two consecutive decode
// steps (continuous batching shrinks the batch one sample at a time at the end); up to
// kMaxGraphs are kept.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "qarl/core/tensor.h"
#include "qarl/gpu/gpu_model.h"
#include "qarl/gpu/paged_cache.h"

namespace qarl::gpu {

class DecodeGraphs {
 public:
  static constexpr int kMaxGraphs = 8;
  DecodeGraphs(GpuModel& m, PagedCache& cache, bool use_graphs);
  ~DecodeGraphs();
  DecodeGraphs(const DecodeGraphs&) = delete;
  DecodeGraphs& operator=(const DecodeGraphs&) = delete;

  // One decode step of B rows (row b: token tokens[b] at position pos[b] of cache slot seq[b];
  // the caller reserved the cache blocks). Waits for the legacy stream's earlier work, then
  // enqueues on stream(); returns the logits [B, V] (device, valid until the next step).
  const Tensor& step(const std::vector<int32_t>& tokens, const std::vector<int32_t>& pos,
                     const std::vector<int32_t>& seq);
  void* stream() const { return stream_; }
  int64_t graph_steps() const { return graph_steps_; }  // steps replayed from a graph
  int64_t captures() const { return captures_; }

 private:
  struct Graph;
  Graph& graph_for(int B);

  GpuModel& m_;
  PagedCache& cache_;
  bool use_graphs_;
  void* stream_ = nullptr;
  void* ready_ = nullptr;  // event: the legacy stream's work so far
  std::vector<std::unique_ptr<Graph>> graphs_;
  int last_B_ = -1;
  uint64_t clock_ = 0;
  int64_t graph_steps_ = 0, captures_ = 0;
  bool capture_failed_ = false;
};

}  // namespace qarl::gpu
