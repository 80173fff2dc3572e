#include "qarl/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "qarl/core/error.h"

namespace qarl::tokenizer {

const char* const kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Oniguruma (which tokenizers uses) and PCRE2 disagree on \s: Oniguruma's Unicode \s is
// U+0009..U+000D, U+0085 and General_Category Z; PCRE2 with UCP adds \h and \v, which include
// U+180E (MONGOLIAN VOWEL SEPARATOR, a format character since Unicode 6.3). So \s and \S are
// spelled out as Oniguruma defines them.
std::string onig_compatible_pattern(const std::string& p) {
  static const char* kSpace = R"(\t\n\x{0B}\f\r\x{85}\p{Z})";
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char n = p[++i];
      if (n == 's') {
        out += in_class ? std::string(kSpace) : "[" + std::string(kSpace) + "]";
      } else if (n == 'S') {
        if (in_class) throw err("pre-tokenizer regex /{}/: \\S inside a character class is not supported", p);
        out += "[^" + std::string(kSpace) + "]";
      } else {
        out += c;
        out += n;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

Regex::Regex(const std::string& pattern) : pattern_(pattern) {
  int errcode = 0;
  PCRE2_SIZE erroff = 0;
  std::string translated = onig_compatible_pattern(pattern);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                   PCRE2_UTF | PCRE2_UCP, &errcode, &erroff, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(errcode, msg, sizeof msg);
    throw err("pre-tokenizer regex /{}/ does not compile at offset {}: {}", pattern, erroff,
              reinterpret_cast<char*>(msg));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if it fails
  code_ = std::shared_ptr<void>(code, [](void* c) { pcre2_code_free(static_cast<pcre2_code*>(c)); });
}

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>* out) const {
  auto* code = static_cast<pcre2_code*>(code_.get());
  // Match data per thread and pattern-independent size (a pattern here has few groups).
  thread_local std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> md(
      pcre2_match_data_create(16, nullptr), pcre2_match_data_free);
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    int rc = pcre2_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      throw runtime_err("regex /{}/ failed: {}", pattern_, reinterpret_cast<char*>(msg));
    }
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    size_t s = ov[0], e = ov[1];
    if (e == s) {
      // An empty match splits nothing; step over one code point.
      size_t next = s + 1;
      while (next < text.size() && (uint8_t(text[next]) & 0xC0) == 0x80) ++next;
      pos = next;
      continue;
    }
    out->emplace_back(s, e);
    pos = e;
  }
}

}  // namespace qarl::tokenizer
