// `qarl version`: the version and how this binary was built (CUDA or CPU only).
#include <cstdio>

#include "qarl/cli/command.h"
#include "qarl/core/build_info.h"

namespace {
QARL_REGISTER_COMMAND("version", "Print the version and build configuration", [](CLI::App&) {
  return [] {
    std::printf("qarl %s\n%s\n", QARL_VERSION, qarl::build_info().c_str());
    return 0;
  };
});
}  // namespace
