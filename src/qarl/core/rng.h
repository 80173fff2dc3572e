// Deterministic counter-based RNG: Philox-4x32-10 (Salmon et al., SC'11), the generator
// cuRAND and PyTorch use. A random number is a pure function of (key, counter), so the
// stream of a request depends only on (seed, request id, step) and never on what else runs
// in the same batch, thread, or device.
#pragma once
#include <array>
#include <cstdint>

namespace qarl {

using Philox4 = std::array<uint32_t, 4>;

// One Philox-4x32-10 block: 4 random 32-bit words for (key, counter).
Philox4 philox4x32(std::array<uint32_t, 2> key, Philox4 counter);

// A named stream: (seed, stream, step) select a counter block; index picks the word.
class CounterRng {
 public:
  CounterRng(uint64_t seed, uint64_t stream) : seed_(seed), stream_(stream) {}
  // Uniform 32-bit word number `index` of step `step`.
  uint32_t u32(uint64_t step, uint64_t index) const;
  // Uniform float in [0, 1): 24 random bits, so every value is exactly representable.
  float uniform(uint64_t step, uint64_t index) const;
  // Uniform double in [0, 1) from 53 random bits.
  double uniform_f64(uint64_t step, uint64_t index) const;
  // Standard normal (Box-Muller on two uniforms of the same block).
  float normal(uint64_t step, uint64_t index) const;

 private:
  uint64_t seed_, stream_;
};

// A sequential generator over the same Philox function, for initialization and shuffles
// where a plain stream of numbers is enough. Its whole state is (seed, stream, position).
class SequentialRng {
 public:
  SequentialRng(uint64_t seed, uint64_t stream = 0) : rng_(seed, stream) {}
  uint32_t next_u32() { return rng_.u32(0, pos_++); }
  float uniform() { return rng_.uniform(0, pos_++); }
  float normal() { float v = rng_.normal(1, pos_); ++pos_; return v; }
  uint64_t below(uint64_t n);  // uniform integer in [0, n)
  uint64_t position() const { return pos_; }
  void set_position(uint64_t p) { pos_ = p; }

 private:
  CounterRng rng_;
  uint64_t pos_ = 0;
};

}  // namespace qarl
