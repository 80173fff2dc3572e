#include <filesystem>

#include <gtest/gtest.h>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "test_util.h"

namespace qarl {
namespace {

TEST(Fs, AtomicWriteReplacesWholeFileAndLeavesNoTemp) {
  test::TempDir d;
  write_file_atomic(d.file("a.txt"), "first");
  write_file_atomic(d.file("a.txt"), "second");
  EXPECT_EQ(read_file(d.file("a.txt")), "second");
  // a failing writer leaves the old file intact and no temporary behind
  EXPECT_THROW(write_file_atomic(d.file("a.txt"),
                                 [](std::FILE*) { throw runtime_err("boom"); }),
               Error);
  EXPECT_EQ(read_file(d.file("a.txt")), "second");
  int n = 0;
  for (auto& e : std::filesystem::directory_iterator(d.path())) { (void)e; ++n; }
  EXPECT_EQ(n, 1);
}

TEST(Fs, MissingFileNamesIt) {
  try {
    read_file("/nonexistent/qarl.bin");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/qarl.bin"), std::string::npos);
  }
}

}  // namespace
}  // namespace qarl
