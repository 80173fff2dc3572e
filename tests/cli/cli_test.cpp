#include <gtest/gtest.h>

#include "test_util.h"

namespace qarl {
namespace {

TEST(Cli, HelpVersionAndUsageErrors) {
  auto r = test::run_qarl("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("qarl"), std::string::npos);
  r = test::run_qarl("--version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("qarl 0."), std::string::npos);
  r = test::run_qarl("no-such-command");
  EXPECT_EQ(r.exit_code, 2);
  r = test::run_qarl("version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("cuda:"), std::string::npos);
}

}  // namespace
}  // namespace qarl
