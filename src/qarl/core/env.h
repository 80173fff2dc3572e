// The environment variables qarl reads, in one table: the values each takes and what it does.
// `qarl` checks every one that is set before it runs a command (a value a variable does not
// take is a usage error naming it: exit 2, nothing run), and `qarl --help` lists them. The
// readers across the code (progress.cpp, tensor.cpp, the CPU/GPU GEMMs, the NCCL wire) parse
// through env_choice / env_number below, so a variable has one format. QARL_LOG is read
// before main (log.cpp's static level, which ignores a bad value; the check refuses it).
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qarl {

struct EnvVar {
  const char* name;
  // Either the accepted words ("error|warn|info|debug"), or "<number>" / "<integer>" for a
  // positive number / a non-negative integer.
  const char* values;
  const char* what;
};

const std::vector<EnvVar>& environment_variables();

// Throws a usage Error naming the first listed variable that is set to a value it does not take.
void check_environment();

// The variable's value if set and non-empty, checked against its entry's words (a usage Error
// naming it otherwise); nullopt when unset or empty. `name` must be in the table.
std::optional<std::string> env_choice(const char* name);
// The variable as a number ("<number>": finite and > 0; "<integer>": a whole number >= 0);
// nullopt when unset or empty; a usage Error naming it when malformed.
std::optional<double> env_number(const char* name);

// "NAME  values  what" lines for --help.
std::string environment_help();

}  // namespace qarl
