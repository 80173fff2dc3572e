#include "qarl/tokenizer/added_tokens.h"

#include <algorithm>

#include <utf8proc.h>

#include "qarl/tokenizer/utf8.h"

namespace qarl::tokenizer {

bool is_unicode_whitespace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens) : tokens_(tokens) {
  for (uint32_t i = 0; i < tokens_.size(); ++i) {
    if (tokens_[i].content.empty()) continue;
    by_first_byte_[uint8_t(tokens_[i].content[0])].push_back(i);
  }
  for (auto& v : by_first_byte_)
    std::stable_sort(v.begin(), v.end(), [&](uint32_t a, uint32_t b) {
      return tokens_[a].content.size() > tokens_[b].content.size();
    });
}

namespace {
// Word characters for single_word: Rust regex's Unicode \w (tokenizers tests "\w$" / "^\w"):
// letters, marks, decimal and letter numbers, connector punctuation, ZWNJ/ZWJ.
bool is_word_char(uint32_t cp) {
  if (cp == 0x200C || cp == 0x200D) return true;
  switch (utf8proc_category(utf8proc_int32_t(cp))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

uint32_t last_codepoint(std::string_view s) {
  size_t i = s.size() - 1;
  while (i > 0 && (uint8_t(s[i]) & 0xC0) == 0x80) --i;
  uint32_t cp;
  decode_utf8(s, i, &cp);
  return cp;
}
}  // namespace

void AddedTokenMatcher::split(std::string_view text, std::vector<TextPiece>* out) const {
  if (tokens_.empty()) {
    if (!text.empty()) out->push_back({0, text.size(), -1});
    return;
  }
  size_t emitted = 0;  // end of what has been emitted so far
  size_t pos = 0;      // where the search continues (aho-corasick: after the last match)
  while (pos < text.size()) {
    // Leftmost-longest: the first position with any match, the longest token there.
    const AddedToken* hit = nullptr;
    size_t at = pos;
    for (; at < text.size() && !hit; ++at) {
      for (uint32_t i : by_first_byte_[uint8_t(text[at])]) {
        const std::string& c = tokens_[i].content;
        if (text.compare(at, c.size(), c) == 0) {
          hit = &tokens_[i];
          break;
        }
      }
    }
    if (!hit) break;
    --at;
    size_t start = at, stop = at + hit->content.size();
    pos = stop;
    if (start < emitted) continue;  // overlaps text an earlier rstrip swallowed
    if (hit->single_word) {
      bool start_ok = start == 0 || !is_word_char(last_codepoint(text.substr(0, start)));
      uint32_t next_cp = 0;
      if (stop < text.size()) decode_utf8(text, stop, &next_cp);
      bool stop_ok = stop == text.size() || !is_word_char(next_cp);
      if (!start_ok || !stop_ok) continue;
    }
    if (hit->lstrip) {
      size_t s = start;
      while (s > emitted) {
        size_t p = s - 1;
        while (p > 0 && (uint8_t(text[p]) & 0xC0) == 0x80) --p;
        uint32_t cp;
        decode_utf8(text, p, &cp);
        if (!is_unicode_whitespace(cp)) break;
        s = p;
      }
      start = s;
    }
    if (hit->rstrip) {
      while (stop < text.size()) {
        uint32_t cp;
        int n = decode_utf8(text, stop, &cp);
        if (!is_unicode_whitespace(cp)) break;
        stop += n;
      }
    }
    if (start > emitted) out->push_back({emitted, start, -1});
    out->push_back({start, stop, hit->id});
    emitted = stop;
  }
  if (emitted < text.size()) out->push_back({emitted, text.size(), -1});
}

}  // namespace qarl::tokenizer
