// `qarl bench`: the registry lists the fake-quant cases, a quick CPU run writes sane records,
// and asking for CUDA without a usable device is a usage error naming the reason.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "qarl/core/fs.h"
#include "qarl/kernels/cuda/device.h"
#include "test_util.h"

namespace qarl {
namespace {

TEST(BenchCli, ListsCases) {
  auto r = test::run_qarl("bench --list");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("fake_quant   cpu"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("fake_quant   cuda"), std::string::npos) << r.out;
}

TEST(BenchCli, QuickCpuRunWritesRecords) {
  test::TempDir dir;
  auto r = test::run_qarl("bench --backend cpu --quick --reps 1 --rows 256 --json " + dir.file("b.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(read_file(dir.file("b.json")));
  ASSERT_EQ(j.size(), 2u) << j.dump();
  EXPECT_EQ(j[0]["name"], "fake_quant_fp8");
  EXPECT_EQ(j[1]["name"], "fake_quant_nvfp4");
  for (const auto& rec : j) {
    EXPECT_EQ(rec["backend"], "cpu");
    EXPECT_EQ(rec["shape"], "[256, 128]");
    EXPECT_DOUBLE_EQ(rec["bytes"].get<double>(), 2.0 * 256 * 128 * 2);
    EXPECT_GT(rec["gbps"].get<double>(), 0.0);
    EXPECT_GT(rec["limit_gbps"].get<double>(), 0.0);
  }
}

// --filter takes comma-separated parts, any of which may match; none matching runs nothing.
TEST(BenchCli, FilterTakesSeveralParts) {
  test::TempDir dir;
  auto r = test::run_qarl("bench --backend cpu --quick --reps 1 --rows 64 --filter nothing,quant --json " +
                          dir.file("b.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(read_file(dir.file("b.json"))).size(), 2u);
  r = test::run_qarl("bench --backend cpu --quick --reps 1 --rows 64 --filter nothing,none --json " +
                     dir.file("c.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(read_file(dir.file("c.json"))).size(), 0u);
}

TEST(BenchCli, CudaWithoutDeviceIsAUsageError) {
  if (kernels::gpu::available()) GTEST_SKIP() << "a CUDA device is present";
  auto r = test::run_qarl("bench --backend cuda --quick");
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("cuda"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace qarl
