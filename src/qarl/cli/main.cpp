// The qarl command: `qarl <subcommand> [options]`. Subcommands register themselves (one file
// each in this folder); this file only wires the registry into CLI11 and maps errors to exit
// codes.
#include <cstdio>
#include <exception>
#include <map>

#include <CLI/CLI.hpp>

#include "qarl/cli/command.h"
#include "qarl/cli/exit_codes.h"
#include "qarl/core/env.h"
#include "qarl/core/error.h"
#include "qarl/core/log.h"

namespace qarl::cli {

namespace {
std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}
}  // namespace

bool register_command(Command command) {
  registry().push_back(std::move(command));
  return true;
}
const std::vector<Command>& registered_commands() { return registry(); }

static int exit_code_for(const Error& e) {
  switch (e.kind()) {
    case ErrorKind::Usage: return kExitUsage;
    case ErrorKind::Input: return kExitBadInput;
    case ErrorKind::Runtime: return kExitFailure;
    case ErrorKind::Internal: return kExitInternal;
  }
  return kExitFailure;
}

}  // namespace qarl::cli

int main(int argc, char** argv) {
  using namespace qarl;
  using namespace qarl::cli;
  CLI::App app{
      "qarl: quantization-aware reinforcement learning of LLMs with a simulated low-precision "
      "(FP8 / NVFP4) KV cache.\nRun `qarl <command> --help` for a command's options."};
  app.set_version_flag("--version", std::string("qarl ") + QARL_VERSION);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "error | warn | info | debug (or QARL_LOG)")
      ->check(CLI::IsMember({"error", "warn", "info", "debug"}));
  app.require_subcommand(0, 1);
  app.footer(environment_help());

  auto commands = registered_commands();
  std::sort(commands.begin(), commands.end(),
            [](const Command& a, const Command& b) { return a.name < b.name; });
  std::map<CLI::App*, std::function<int()>> runners;
  for (const auto& c : commands) {
    CLI::App* sub = app.add_subcommand(c.name, c.description);
    runners[sub] = c.setup(*sub);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);  // prints help / version / the parse error
    return rc == 0 ? kExitOk : kExitUsage;
  } catch (const Error& e) {
    std::fprintf(stderr, "qarl: error: %s\n", e.what());
    return exit_code_for(e);
  }
  try {
    check_environment();  // a bad QARL_* value stops here, before anything runs
  } catch (const Error& e) {
    std::fprintf(stderr, "qarl: error: %s\n", e.what());
    return exit_code_for(e);
  }
  if (app.count("--log-level")) {
    LogLevel l;
    parse_log_level(log_level, &l);
    set_log_level(l);
  }
  auto subs = app.get_subcommands();
  if (subs.empty()) {
    std::fputs(app.help().c_str(), stdout);
    return kExitUsage;
  }
  try {
    return runners.at(subs[0])();
  } catch (const Error& e) {
    std::fprintf(stderr, "qarl %s: error: %s\n", subs[0]->get_name().c_str(), e.what());
    return exit_code_for(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qarl %s: error: %s\n", subs[0]->get_name().c_str(), e.what());
    return kExitFailure;
  }
}
