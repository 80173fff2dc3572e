#include "qarl/quant/triton_rcp.h"

#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "qarl/core/error.h"

namespace qarl::quant {

namespace detail {
extern const unsigned char kTritonRcpDeltaZlib[];
extern const size_t kTritonRcpDeltaZlibSize;
}  // namespace detail

namespace {

// Deltas packed 2 bits per mantissa (0: 0, 1: +1, 3: -1): 2 MiB.
const std::vector<uint8_t>& rcp_deltas() {
  static const std::vector<uint8_t> table = [] {
    std::vector<uint8_t> raw(size_t(1) << 23);
    uLongf len = uLongf(raw.size());
    int rc = uncompress(raw.data(), &len, detail::kTritonRcpDeltaZlib,
                        uLong(detail::kTritonRcpDeltaZlibSize));
    QARL_ASSERT(rc == Z_OK && len == raw.size(), "embedded Triton rcp table is corrupt (zlib {})", rc);
    std::vector<uint8_t> packed(raw.size() / 4, 0);
    for (size_t i = 0; i < raw.size(); ++i)
      packed[i >> 2] |= uint8_t((raw[i] & 3u) << ((i & 3) * 2));
    return packed;
  }();
  return table;
}

}  // namespace

float triton_rcp(float b) {
  uint32_t u;
  std::memcpy(&u, &b, 4);
  const uint32_t exp = (u >> 23) & 0xffu;
  float r = 1.0f / b;
  if (exp == 0 || exp >= 253) return r;  // zero/denormal, |b| >= 2^126, inf, NaN
  const uint32_t m = u & 0x7fffffu;
  const uint32_t code = (rcp_deltas()[m >> 2] >> ((m & 3) * 2)) & 3u;
  uint32_t rb;
  std::memcpy(&rb, &r, 4);
  rb += code == 1 ? 1u : code == 3 ? uint32_t(-1) : 0u;  // +-1 ulp in magnitude
  std::memcpy(&r, &rb, 4);
  return r;
}

}  // namespace qarl::quant
