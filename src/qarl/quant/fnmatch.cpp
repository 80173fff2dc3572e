#include "qarl/quant/fnmatch.h"

#include <cstddef>

namespace qarl::quant {

namespace {
// Matches name[0] against the set starting at pattern[p] == '['. Returns the index after
// the closing ']' and sets `hit`, or npos when the '[' has no closing bracket (literal).
size_t match_set(std::string_view pattern, size_t p, char c, bool& hit) {
  size_t j = p + 1;
  bool negate = false;
  if (j < pattern.size() && pattern[j] == '!') { negate = true; ++j; }
  size_t first = j;
  if (j < pattern.size() && pattern[j] == ']') ++j;  // a leading ']' is a member
  while (j < pattern.size() && pattern[j] != ']') ++j;
  if (j >= pattern.size()) return std::string_view::npos;
  bool in = false;
  for (size_t k = first; k < j; ++k) {
    if (k + 2 < j && pattern[k + 1] == '-') {
      if (pattern[k] <= c && c <= pattern[k + 2]) in = true;
      k += 2;
    } else if (pattern[k] == c) {
      in = true;
    }
  }
  hit = in != negate;
  return j + 1;
}
}  // namespace

bool fnmatch(std::string_view name, std::string_view pattern) {
  // Iterative matcher with single-star backtracking (linear-ish, no recursion).
  size_t n = 0, p = 0;
  size_t star_p = std::string_view::npos, star_n = 0;
  while (n < name.size()) {
    if (p < pattern.size()) {
      char pc = pattern[p];
      if (pc == '*') { star_p = p++; star_n = n; continue; }
      if (pc == '?') { ++p; ++n; continue; }
      if (pc == '[') {
        bool hit = false;
        size_t next = match_set(pattern, p, name[n], hit);
        if (next == std::string_view::npos) {
          if (name[n] == '[') { ++p; ++n; continue; }
        } else if (hit) {
          p = next; ++n; continue;
        }
      } else if (pc == name[n]) {
        ++p; ++n; continue;
      }
    }
    if (star_p == std::string_view::npos) return false;
    p = star_p + 1;
    n = ++star_n;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace qarl::quant
