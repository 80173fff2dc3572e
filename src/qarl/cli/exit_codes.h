// Process exit codes of the qarl command. Scripts rely on them; keep them stable.
#pragma once

namespace qarl::cli {
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;   // the operation failed at run time (I/O, refit, training)
constexpr int kExitUsage = 2;     // bad command line, unknown option, incompatible settings
constexpr int kExitBadInput = 3;  // malformed or inconsistent input: file, recipe, tensor
constexpr int kExitInternal = 70; // a bug in qarl (an internal invariant failed)
}  // namespace qarl::cli
