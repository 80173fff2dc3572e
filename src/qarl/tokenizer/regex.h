// A compiled PCRE2 pattern (UTF + UCP, JIT when available) that finds all non-overlapping
// matches, as tokenizers' Split pre-tokenizer does with Oniguruma.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qarl::tokenizer {

class Regex {
 public:
  // Throws Error quoting PCRE2's message and the offset in the pattern.
  explicit Regex(const std::string& pattern);
  const std::string& pattern() const { return pattern_; }
  // Appends [start, end) byte ranges of the matches in `text` (valid UTF-8), left to right.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>* out) const;

 private:
  std::string pattern_;
  std::shared_ptr<void> code_;  // pcre2_code_8*
};

// The pattern rewritten so that PCRE2 matches as Oniguruma does (\\s spelled out).
std::string onig_compatible_pattern(const std::string& pattern);

// The GPT-2 pattern, which tokenizers' ByteLevel pre-tokenizer uses when use_regex is true.
extern const char* const kGpt2SplitPattern;

}  // namespace qarl::tokenizer
