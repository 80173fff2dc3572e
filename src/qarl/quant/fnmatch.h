// Python's fnmatch.fnmatchcase, which ModelOpt uses to match quantizer names: `*` any run
// (dots and slashes included), `?` one character, `[seq]` / `[!seq]` sets with ranges, a `[`
// without a closing `]` is literal, no backslash escapes, case-sensitive (POSIX behaviour).
#pragma once
#include <string_view>

namespace qarl::quant {

bool fnmatch(std::string_view name, std::string_view pattern);

}  // namespace qarl::quant
