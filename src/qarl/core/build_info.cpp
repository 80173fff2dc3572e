#include "qarl/core/build_info.h"

#include <fmt/format.h>

namespace qarl {

bool built_with_cuda() {
#ifdef QARL_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

std::string build_info() {
  return fmt::format("compiler: {}\ncuda: {}\ncpu avx2: {}  avx512f: {}", __VERSION__,
                     built_with_cuda() ? "yes (sm_90a)" : "no (CPU-only build)",
                     __builtin_cpu_supports("avx2") ? "yes" : "no",
                     __builtin_cpu_supports("avx512f") ? "yes" : "no");
}

}  // namespace qarl
