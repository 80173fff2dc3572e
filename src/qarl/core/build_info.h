#pragma once
#include <string>

namespace qarl {
// One line per fact: compiler, CUDA support, SIMD level the CPU kernels use.
std::string build_info();
bool built_with_cuda();
}  // namespace qarl
