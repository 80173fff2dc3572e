// Greedy token choice on the device: per row of fp32 logits, the index rollout::argmax_token
// returns (the first index of the largest non-NaN value; 0 when every value is NaN) and the
// logit at that index (its bits, read back from the row). The rollout copies these two
// numbers per row instead of the whole row (151936 floats on Qwen3) for greedy requests.
// CUDA builds only. Test: tests/kernels/cuda_argmax_test.cpp.
#pragma once
#include <cstdint>

namespace qarl::kernels::gpu {

// Device scratch (bytes) launch_argmax_rows needs for `rows` rows of `vocab` logits.
int64_t argmax_scratch_bytes(int64_t rows, int64_t vocab);

// logits: [rows, vocab] fp32 with row stride ld (device); writes index[r] and value[r] (device).
void launch_argmax_rows(const float* logits, int64_t ld, int64_t rows, int64_t vocab,
                        void* scratch, int32_t* index, float* value, void* stream);

}  // namespace qarl::kernels::gpu
