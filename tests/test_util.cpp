#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "qarl/core/fs.h"
#include "qarl/core/rng.h"

namespace qarl::test {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base ? base : "/tmp") + "/qarl-test-XXXXXX";
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}
TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

RunResult run_qarl(const std::string& args) {
  TempDir d;
  std::string cmd = qarl_binary() + " " + args + " >" + d.file("out") + " 2>" +
                    d.file("err") + " </dev/null";
  int status = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(d.file("out"));
  r.err = read_file(d.file("err"));
  return r;
}

static std::string env_or(const char* name, const char* built_in) {
  const char* v = std::getenv(name);
  return v && *v ? v : built_in;
}
std::string qarl_binary() { return env_or("QARL_TEST_BINARY", QARL_BINARY); }
#ifdef QARL_REFIT_PEER  // qarl_tests only; the peer programs that share this file have none
std::string refit_peer_binary() { return env_or("QARL_TEST_REFIT_PEER", QARL_REFIT_PEER); }
#else
std::string refit_peer_binary() { return env_or("QARL_TEST_REFIT_PEER", ""); }
#endif
std::string data_path(const std::string& rel) {
  return env_or("QARL_TEST_DATA_DIR", QARL_TEST_DATA_DIR) + "/" + rel;
}
std::string source_path(const std::string& rel) {
  return env_or("QARL_TEST_SOURCE_DIR", QARL_SOURCE_DIR) + "/" + rel;
}

uint64_t fresh_seed() {
  // QARL_TEST_SEED=<the seed a failure printed> replays that failure's inputs.
  if (const char* fixed = std::getenv("QARL_TEST_SEED"); fixed && *fixed)
    return std::strtoull(fixed, nullptr, 10);
  static std::atomic<uint64_t> counter{0};
  uint64_t t = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
  return t ^ (counter++ * 0x9E3779B97F4A7C15ull) ^ uint64_t(getpid());
}

std::vector<float> random_normal(size_t n, float scale, uint64_t seed) {
  SequentialRng rng(seed ? seed : fresh_seed());
  std::vector<float> v(n);
  for (auto& x : v) x = rng.normal() * scale;
  return v;
}

}  // namespace qarl::test
