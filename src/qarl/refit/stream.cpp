#include "qarl/refit/stream.h"

#include "qarl/core/error.h"

namespace qarl::refit {

size_t metadata_total_bytes(const RefitMetadata& meta) {
  size_t total = 0;
  for (const auto& m : meta) total += m.nbytes();
  return total;
}

namespace {
// FNV-1a, 64-bit: enough to tell two metadata lists apart; not a security measure.
void fnv(uint64_t& h, const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) { h ^= b[i]; h *= 0x100000001b3ull; }
}
}  // namespace

uint64_t metadata_fingerprint(const RefitMetadata& meta) {
  uint64_t h = 0xcbf29ce484222325ull;
  uint64_t count = meta.size();
  fnv(h, &count, sizeof count);
  for (const auto& m : meta) {
    uint64_t len = m.name.size();
    fnv(h, &len, sizeof len);
    fnv(h, m.name.data(), m.name.size());
    uint64_t nd = m.shape.size();
    fnv(h, &nd, sizeof nd);
    for (int64_t d : m.shape) fnv(h, &d, sizeof d);
    auto dt = uint8_t(m.dtype);
    fnv(h, &dt, 1);
  }
  return h;
}

void check_matches_meta(const TensorMeta& m, const std::string& name, const Tensor& t) {
  if (name != m.name)
    throw runtime_err("stream order broken: got '{}' where the metadata expects '{}'", name,
                      m.name).tensor(name);
  if (!t.defined()) throw runtime_err("undefined tensor in the refit stream").tensor(name);
  if (t.shape() != m.shape || t.dtype() != m.dtype)
    throw runtime_err("tensor is {} {} but the metadata says {} {}", dtype_name(t.dtype()),
                      shape_str(t.shape()), dtype_name(m.dtype), shape_str(m.shape))
        .tensor(name);
}

}  // namespace qarl::refit
