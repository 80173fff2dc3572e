#include <gtest/gtest.h>

#include <cmath>

#include "qarl/core/error.h"
#include "qarl/rl/advantages.h"

using namespace qarl::rl;

TEST(Advantages, GroupNormalizedHandComputed) {
  // Group 1: [1, 0, 0, 1]: mean 0.5, unbiased std sqrt(1/3); group 2 all equal -> 0.
  const std::vector<double> r = {1, 0, 0, 1, 2, 2, 2, 2};
  AdvantageOptions o;
  o.group_size = 4;
  o.std_epsilon = 0;
  auto a = grpo_advantages(r, o);
  const double s = std::sqrt(1.0 / 3.0);
  EXPECT_DOUBLE_EQ(a[0], 0.5 / s);
  EXPECT_DOUBLE_EQ(a[1], -0.5 / s);
  EXPECT_DOUBLE_EQ(a[2], -0.5 / s);
  EXPECT_DOUBLE_EQ(a[3], 0.5 / s);
  for (int i = 4; i < 8; ++i) EXPECT_EQ(a[i], 0.0);
}

TEST(Advantages, EpsilonAndNoStd) {
  const std::vector<double> r = {3, 1, 2};
  AdvantageOptions o;
  o.group_size = 3;
  o.std_epsilon = 0.5;  // std of {3,1,2} is 1 -> divide by 1.5
  auto a = grpo_advantages(r, o);
  EXPECT_DOUBLE_EQ(a[0], 1.0 / 1.5);
  EXPECT_DOUBLE_EQ(a[1], -1.0 / 1.5);
  EXPECT_DOUBLE_EQ(a[2], 0.0);
  o.normalize_std = false;
  a = grpo_advantages(r, o);
  EXPECT_DOUBLE_EQ(a[0], 1.0);
  EXPECT_DOUBLE_EQ(a[1], -1.0);
}

TEST(Advantages, LeaveOneOut) {
  const std::vector<double> r = {1, 0, 0, 1};
  AdvantageOptions o;
  o.group_size = 4;
  o.leave_one_out = true;
  o.normalize_std = false;
  auto a = grpo_advantages(r, o);
  // r=1: baseline mean of {0,0,1} = 1/3; r=0: baseline mean of {1,0,1} = 2/3.
  EXPECT_DOUBLE_EQ(a[0], 1.0 - 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(a[1], -2.0 / 3.0);
  EXPECT_DOUBLE_EQ(a[3], 2.0 / 3.0);
}

TEST(Advantages, BadSizes) {
  AdvantageOptions o;
  o.group_size = 3;
  std::vector<double> r = {1, 2, 3, 4};
  EXPECT_THROW(grpo_advantages(r, o), qarl::Error);
  o.group_size = 0;
  EXPECT_THROW(grpo_advantages(r, o), qarl::Error);
  o.group_size = 1;  // one sample per group: nothing to compare with
  auto a = grpo_advantages(r, o);
  for (double v : a) EXPECT_EQ(v, 0.0);
}
