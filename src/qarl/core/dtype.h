// Element types of tensors, with the names safetensors uses on disk.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace qarl {

enum class DType : uint8_t { F64, F32, BF16, F16, F8_E4M3, U8, I8, I16, I32, I64, BOOL };

size_t dtype_size(DType t);
// The safetensors spelling: "F32", "BF16", "F8_E4M3", ...
std::string_view dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view name);
bool dtype_is_float(DType t);  // F64, F32, BF16, F16, F8_E4M3

}  // namespace qarl
