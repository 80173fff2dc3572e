// The CUDA device as qarl sees it. Usable from any build: without CUDA (or without a GPU)
// available() is false and the rest throw a clear qarl::Error.
#pragma once
#include <functional>
#include <string>

#include "qarl/core/tensor.h"

namespace qarl::kernels::gpu {

bool built_with_cuda();
// Built with CUDA and at least one device can be used (cudaGetDeviceCount > 0).
bool available();
// Why not available(), for skip messages: "" when available.
std::string unavailable_reason();
std::string device_name();  // "NVIDIA H200, 132 SMs, 139.8 GiB"
void synchronize();
// dst <- src on the default stream (asynchronous; same byte count, any devices).
void copy_async(const Tensor& dst, const Tensor& src);         // cudaDeviceSynchronize, throwing on an asynchronous error

// Times `fn` (which enqueues work on the default stream) with CUDA events: `warmup` calls,
// then `reps` timed calls, each timed separately; returns the median in seconds.
double time_median_s(const std::function<void()>& fn, int warmup, int reps);

}  // namespace qarl::kernels::gpu
