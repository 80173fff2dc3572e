// Deterministic tensor sets for the transport round trips, generated identically in the test
// process and in the peer process (tests/refit/refit_peer.cpp) from (case, seed).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "qarl/refit/stream.h"

namespace qarl::refit::test {

// "mixed": 0-d bf16 amax then a transposed-then-contiguous fp32 [5,4] (the NeMo-RL case),
// bf16, fp32, int64, f16, u8, 0-d fp32 and int64, an empty tensor, odd sizes, one tensor
// larger than the small buffers used in tests (oversized path).
// "large": `total_mb` of bf16/fp32 weights of transformer-like shapes plus K/V amax scalars.
// "odd": the same with sizes that are multiples of nothing (hidden 1021, MLP 2803).
std::vector<NamedTensor> make_case(const std::string& name, uint64_t seed, double total_mb = 0);
RefitMetadata metadata_of(const std::vector<NamedTensor>& tensors);
// Empty when equal; else a description of the first difference.
std::string compare_streams(const std::vector<NamedTensor>& want, const std::vector<NamedTensor>& got);

}  // namespace qarl::refit::test
