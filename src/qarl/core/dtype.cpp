#include "qarl/core/dtype.h"

#include <array>
#include <utility>

namespace qarl {
namespace {
struct DTypeInfo {
  DType type;
  std::string_view name;
  size_t size;
};
constexpr std::array<DTypeInfo, 11> kInfo = {{
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::BF16, "BF16", 2},
    {DType::F16, "F16", 2}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::U8, "U8", 1},
    {DType::I8, "I8", 1}, {DType::I16, "I16", 2}, {DType::I32, "I32", 4},
    {DType::I64, "I64", 8}, {DType::BOOL, "BOOL", 1},
}};
}  // namespace

size_t dtype_size(DType t) { return kInfo[static_cast<size_t>(t)].size; }
std::string_view dtype_name(DType t) { return kInfo[static_cast<size_t>(t)].name; }
std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& i : kInfo)
    if (i.name == name) return i.type;
  return std::nullopt;
}
bool dtype_is_float(DType t) {
  return t == DType::F64 || t == DType::F32 || t == DType::BF16 || t == DType::F16 ||
         t == DType::F8_E4M3;
}

}  // namespace qarl
