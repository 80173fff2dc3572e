// Error reporting for the model-op launchers (model_ops_device.cuh), in a host translation
// unit because fmt's checked format strings do not compile under nvcc.
#include "qarl/core/error.h"

namespace qarl::kernels::gpu::ops {

[[noreturn]] void throw_cuda_error(const char* what, const char* message) {
  throw runtime_err("CUDA {} failed: {}", what, message);
}

}  // namespace qarl::kernels::gpu::ops
