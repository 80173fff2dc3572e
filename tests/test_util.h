// Helpers shared by the tests: temporary directories, running the qarl binary, random data.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "qarl/core/tensor.h"
#include "qarl/kernels/cuda/device.h"

// Skips a GPU test, with the reason, where no CUDA device is usable (also in builds without
// CUDA, where kernels::gpu::available() is false).
#define SKIP_WITHOUT_GPU()                                                                     \
  do {                                                                                         \
    if (!::qarl::kernels::gpu::available())                                                    \
      GTEST_SKIP() << "no usable CUDA device: " << ::qarl::kernels::gpu::unavailable_reason(); \
  } while (0)

namespace qarl::test {

// A fresh directory under $TMPDIR, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct RunResult {
  int exit_code;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs `build/qarl <args>` through the shell; args are passed verbatim.
RunResult run_qarl(const std::string& args);

// Where the tests find the qarl binary, tests/data and the repository. The paths are baked in
// at build time; the environment (QARL_TEST_BINARY, QARL_TEST_DATA_DIR, QARL_TEST_SOURCE_DIR)
// overrides them so a binary built on one machine runs its tests on another
// (scripts/gpu/run.sh with QARL_GPU_PREBUILT).
std::string qarl_binary();
std::string refit_peer_binary();  // tests/refit/refit_peer (QARL_TEST_REFIT_PEER overrides)
std::string data_path(const std::string& rel);  // tests/data/<rel>
std::string source_path(const std::string& rel);  // <repo>/<rel>

// Fresh random data: each call draws from a new seed unless one is given.
std::vector<float> random_normal(size_t n, float scale = 1.0f, uint64_t seed = 0);
// A new seed per call (time, counter, pid); tests print it (SCOPED_TRACE). With the
// environment variable QARL_TEST_SEED set, every call returns that value instead, which
// replays a failure of a test that derives its inputs from one fresh_seed() call.
uint64_t fresh_seed();

}  // namespace qarl::test
