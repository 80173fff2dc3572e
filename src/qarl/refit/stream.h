// The refit stream: an ordered sequence of (name, tensor) pairs, and its metadata.
//
// The trainer exports HF-semantic names (see export.h); transports carry the stream without
// looking at names beyond checking order (see transport.h); the rollout side maps names to
// its runtime layout and loads strictly (see name_map.h, loader.h). Both ends of a transport
// hold the same ordered metadata: it is what the packed transport derives batch boundaries
// from, and what the staging transport checks offsets and the final manifest against.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "qarl/core/tensor.h"

namespace qarl::refit {

struct TensorMeta {
  std::string name;
  Shape shape;  // {} for a 0-d tensor (one element)
  DType dtype = DType::F32;
  size_t nbytes() const { return size_t(shape_numel(shape)) * dtype_size(dtype); }
  bool operator==(const TensorMeta&) const = default;
};

// Ordered: the order is the stream order, and both transport ends must agree on it.
using RefitMetadata = std::vector<TensorMeta>;

struct NamedTensor {
  std::string name;
  Tensor tensor;
};

size_t metadata_total_bytes(const RefitMetadata& meta);
// A 64-bit fingerprint of names, shapes and dtypes in order: transports exchange it first so
// that two ends holding different metadata fail at once instead of misreading bytes.
uint64_t metadata_fingerprint(const RefitMetadata& meta);
// Throws an Error naming the tensor unless `t` matches `m` (name, shape, dtype). CPU and CUDA
// tensors both match: every transport accepts either (see device_copy.h).
void check_matches_meta(const TensorMeta& m, const std::string& name, const Tensor& t);

// What one refit moved, for metrics lines: payload bytes (tensor bytes, no padding, no
// checksums), wall seconds from the first byte to the last acknowledgement, and batches.
struct TransferStats {
  size_t bytes = 0;
  double seconds = 0.0;
  size_t batches = 0;
  size_t tensors = 0;
  double gb_per_s() const { return seconds > 0 ? double(bytes) / seconds / 1e9 : 0.0; }
};

}  // namespace qarl::refit
