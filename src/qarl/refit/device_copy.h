// Moving refit bytes between host and device memory, for every transport: a sender may be
// pushed CPU or CUDA tensors, and a receiver yields on the device its consumer asks for.
// Copies run on the legacy default CUDA stream, so they are ordered after the caller's work
// there; a trainer that writes its tensors on another stream synchronizes it before push().
// Without CUDA (or a device) the CUDA paths throw a clear Error; CPU-to-CPU is memcpy.
#pragma once
#include <cstddef>
#include <string>

#include "qarl/core/tensor.h"

namespace qarl::refit {

// dst (host memory) <- src's bytes (CPU: memcpy; CUDA: synchronous cudaMemcpy).
void copy_to_host(void* dst, const Tensor& src);
// dst (device memory) <- src's bytes, enqueued on the legacy default stream (asynchronous
// for device sources; a pageable host source is staged by the driver before returning).
void copy_to_device_async(void* dst, const Tensor& src);
// `t` itself when it already lives on `device`, else a copy there (owned).
Tensor on_device(const Tensor& t, Device device);

// CUDA runtime helpers (throw Error "CUDA <what> failed: <reason>").
bool cuda_device_usable();   // built with CUDA and at least one device
std::string cuda_unusable_reason();  // "" when usable
int cuda_device_count();     // 0 without CUDA
void cuda_sync_default_stream();
void cuda_device_synchronize();
void cuda_set_device(int device);  // cudaSetDevice

}  // namespace qarl::refit
