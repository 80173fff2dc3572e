#include <cmath>
#include <set>

#include <gtest/gtest.h>

#include "qarl/core/rng.h"

namespace qarl {
namespace {

TEST(Rng, PhiloxKnownAnswer) {
  // Known-answer vectors of Philox4x32-10 from the Random123 distribution (kat_vectors).
  auto r = philox4x32({0, 0}, {0, 0, 0, 0});
  EXPECT_EQ(r, (Philox4{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  r = philox4x32({0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu});
  EXPECT_EQ(r, (Philox4{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  r = philox4x32({0xa4093822u, 0x299f31d0u}, {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u});
  EXPECT_EQ(r, (Philox4{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

TEST(Rng, PureFunctionOfCounter) {
  CounterRng a(123, 7), b(123, 7), c(123, 8);
  EXPECT_EQ(a.u32(5, 9), b.u32(5, 9));
  EXPECT_NE(a.u32(5, 9), c.u32(5, 9));
  EXPECT_NE(a.u32(5, 9), a.u32(6, 9));
  double sum = 0;
  for (int i = 0; i < 100000; ++i) {
    float u = a.uniform(1, uint64_t(i));
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.01);
}

TEST(Rng, SequentialBelowIsInRangeAndResumable) {
  SequentialRng r(9);
  std::set<uint64_t> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(r.below(7));
  EXPECT_EQ(seen.size(), 7u);
  uint64_t pos = r.position();
  uint32_t x = r.next_u32();
  r.set_position(pos);
  EXPECT_EQ(r.next_u32(), x);
}

}  // namespace
}  // namespace qarl
