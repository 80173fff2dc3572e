#include "qarl/core/rng.h"

#include <cmath>

namespace qarl {

Philox4 philox4x32(std::array<uint32_t, 2> key, Philox4 c) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = uint64_t(kM0) * c[0];
    uint64_t p1 = uint64_t(kM1) * c[2];
    c = {uint32_t(p1 >> 32) ^ c[1] ^ key[0], uint32_t(p1), uint32_t(p0 >> 32) ^ c[3] ^ key[1],
         uint32_t(p0)};
    key[0] += kW0;
    key[1] += kW1;
  }
  return c;
}

uint32_t CounterRng::u32(uint64_t step, uint64_t index) const {
  // counter = (index / 4, stream, step) in its four words; key = seed.
  uint64_t block = index / 4;
  Philox4 ctr = {uint32_t(block), uint32_t(block >> 32) ^ uint32_t(stream_ >> 32),
                 uint32_t(stream_), uint32_t(step) ^ (uint32_t(step >> 32) * 0x9E3779B9u)};
  Philox4 r = philox4x32({uint32_t(seed_), uint32_t(seed_ >> 32)}, ctr);
  return r[index % 4];
}

float CounterRng::uniform(uint64_t step, uint64_t index) const {
  return float(u32(step, index) >> 8) * (1.0f / 16777216.0f);
}

double CounterRng::uniform_f64(uint64_t step, uint64_t index) const {
  uint64_t hi = u32(step, 2 * index), lo = u32(step, 2 * index + 1);
  return double(((hi << 32) | lo) >> 11) * (1.0 / 9007199254740992.0);
}

float CounterRng::normal(uint64_t step, uint64_t index) const {
  double u1 = (double(u32(step, 2 * index) >> 8) + 0.5) / 16777216.0;  // (0, 1)
  double u2 = double(u32(step, 2 * index + 1) >> 8) / 16777216.0;
  return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

uint64_t SequentialRng::below(uint64_t n) {
  // Rejection sampling: unbiased for any n.
  uint64_t limit = (uint64_t(1) << 32) / n * n;
  for (;;) {
    uint64_t r = next_u32();
    if (n > (uint64_t(1) << 32)) r = (r << 32) | next_u32();
    else if (r >= limit) continue;
    return r % n;
  }
}

}  // namespace qarl
