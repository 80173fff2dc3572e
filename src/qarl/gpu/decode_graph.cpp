#include "qarl/gpu/decode_graph.h"

#include <cstring>

#include <cuda_runtime.h>

#include "qarl/core/error.h"
#include "qarl/core/log.h"
#include "qarl/gpu/forward_internal.h"
#include "qarl/kernels/cuda/attention_internal.h"

namespace qarl::gpu {
namespace kg = kernels::gpu;

namespace {
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw runtime_err("decode step: {} failed: {}", what, cudaGetErrorString(e));
}
}  // namespace

// Buffers of one batch size. inputs (device) and host (pinned) hold, as int32: tokens[B],
// pos[B], seq[B], then B * n_kv_heads attn::Tile (8 int32 each).
struct DecodeGraphs::Graph {
  int B = 0;
  int n_tiles = 0;
  size_t bytes = 0;
  ForwardScratch fs;
  Tensor inputs;
  int32_t* host = nullptr;
  cudaGraphExec_t exec = nullptr;
  uint64_t last_use = 0;
  ~Graph() {
    if (exec) cudaGraphExecDestroy(exec);
    if (host) cudaFreeHost(host);
  }
  ForwardRows rows() const {
    ForwardRows in;
    const int32_t* d = inputs.data_as<int32_t>();
    in.R = B;
    in.tokens = d;
    in.pos = d + B;
    in.seq = d + 2 * B;
    in.tiles = d + 3 * B;
    in.n_tiles = n_tiles;
    in.logit_runs.push_back({0, B});
    in.n_logits = B;
    return in;
  }
};

DecodeGraphs::DecodeGraphs(GpuModel& m, PagedCache& cache, bool use_graphs)
    : m_(m), cache_(cache), use_graphs_(use_graphs) {
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  stream_ = s;
  cudaEvent_t e = nullptr;
  check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
  ready_ = e;
}

DecodeGraphs::~DecodeGraphs() {
  if (stream_) cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));
  graphs_.clear();
  if (ready_) cudaEventDestroy(static_cast<cudaEvent_t>(ready_));
  if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

DecodeGraphs::Graph& DecodeGraphs::graph_for(int B) {
  for (auto& g : graphs_)
    if (g->B == B) return *g;
  if (int(graphs_.size()) >= kMaxGraphs) {  // evict the least recently used
    size_t lru = 0;
    for (size_t i = 1; i < graphs_.size(); ++i)
      if (graphs_[i]->last_use < graphs_[lru]->last_use) lru = i;
    graphs_.erase(graphs_.begin() + std::ptrdiff_t(lru));
  }
  auto g = std::make_unique<Graph>();
  g->B = B;
  g->n_tiles = B * m_.config().num_key_value_heads;
  g->bytes = size_t(3 * B + 8 * g->n_tiles) * 4;
  g->inputs = Tensor::empty({int64_t(g->bytes / 4)}, DType::I32, Device::CUDA);
  check(cudaMallocHost(&g->host, g->bytes), "cudaMallocHost");
  graphs_.push_back(std::move(g));
  return *graphs_.back();
}

const Tensor& DecodeGraphs::step(const std::vector<int32_t>& tokens, const std::vector<int32_t>& pos,
                                 const std::vector<int32_t>& seq) {
  const int B = int(tokens.size());
  if (B == 0 || pos.size() != tokens.size() || seq.size() != tokens.size())
    throw err("decode step: {} tokens, {} positions, {} slots", tokens.size(), pos.size(), seq.size());
  const int nkv = m_.config().num_key_value_heads;
  cudaStream_t s = static_cast<cudaStream_t>(stream_);
  Graph& g = graph_for(B);
  g.last_use = ++clock_;
  // This step's rows and attention plan: one tile per (row, KV head), as attention_forward
  // plans a one-row segment (the tile order changes no value).
  std::memcpy(g.host, tokens.data(), size_t(B) * 4);
  std::memcpy(g.host + B, pos.data(), size_t(B) * 4);
  std::memcpy(g.host + 2 * B, seq.data(), size_t(B) * 4);
  auto* tiles = reinterpret_cast<kg::attn::Tile*>(g.host + 3 * B);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < nkv; ++h) tiles[b * nkv + h] = kg::attn::Tile{seq[size_t(b)], b, 1, pos[size_t(b)], h, 0, 0, 0};
  cache_.sync_tables();  // legacy stream
  check(cudaEventRecord(static_cast<cudaEvent_t>(ready_), nullptr), "cudaEventRecord");
  check(cudaStreamWaitEvent(s, static_cast<cudaEvent_t>(ready_), 0), "cudaStreamWaitEvent");
  check(cudaMemcpyAsync(g.inputs.data(), g.host, g.bytes, cudaMemcpyHostToDevice, s), "input upload");

  const bool was_last = last_B_ == B;
  last_B_ = B;
  if (g.exec) {
    check(cudaGraphLaunch(g.exec, s), "cudaGraphLaunch");
    ++graph_steps_;
    return g.fs.logits;
  }
  const ForwardRows in = g.rows();
  run_forward(m_, in, cache_, g.fs, nullptr, s);  // eager (also allocates g.fs for B rows)
  if (use_graphs_ && was_last && !capture_failed_) {
    // Capture the same enqueues for the next steps of this batch size. Nothing runs during
    // capture; the buffers exist (the eager run above made them), so nothing is allocated.
    cudaGraph_t graph = nullptr;
    check(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), "cudaStreamBeginCapture");
    std::string failed;
    try {
      run_forward(m_, in, cache_, g.fs, nullptr, s);
    } catch (const std::exception& e) {
      failed = e.what();
    }
    cudaError_t e = cudaStreamEndCapture(s, &graph);
    if (failed.empty() && e != cudaSuccess) failed = cudaGetErrorString(e);
    if (failed.empty()) {
      e = cudaGraphInstantiate(&g.exec, graph, 0);
      if (e != cudaSuccess) {
        failed = cudaGetErrorString(e);
        g.exec = nullptr;
      }
    }
    if (graph) cudaGraphDestroy(graph);
    if (!failed.empty()) {
      cudaGetLastError();  // clear a sticky capture error; the eager path keeps working
      capture_failed_ = true;
      log_warn("decode step: CUDA graph capture failed ({}); decoding without graphs", failed);
    } else {
      ++captures_;
    }
  }
  return g.fs.logits;
}

}  // namespace qarl::gpu
