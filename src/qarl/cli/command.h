// Subcommand registry. Each subcommand lives in its own file in src/qarl/cli/ and registers
// itself with QARL_REGISTER_COMMAND; main.cpp builds the command line from the registry.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace qarl::cli {

// Adds the subcommand's options to `app` and returns the function that runs it. The
// runner returns the process exit code (see exit_codes.h) or throws qarl::Error.
using Setup = std::function<std::function<int()>(CLI::App& app)>;

struct Command {
  std::string name;
  std::string description;
  Setup setup;
};

bool register_command(Command command);
const std::vector<Command>& registered_commands();

}  // namespace qarl::cli

#define QARL_CONCAT_INNER(a, b) a##b
#define QARL_CONCAT(a, b) QARL_CONCAT_INNER(a, b)
// Variadic so that the setup lambda may contain unparenthesized commas (brace initializers).
#define QARL_REGISTER_COMMAND(name, description, ...) \
  static const bool QARL_CONCAT(qarl_command_registered_, __LINE__) = \
      ::qarl::cli::register_command({name, description, __VA_ARGS__})
