#include "qarl/tokenizer/utf8.h"

namespace qarl::tokenizer {

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

namespace {
// The well-formed byte sequences of Unicode table 3-7. For lead byte `b`, returns the total
// length and the allowed range of the second byte; length 0 for bytes that cannot lead.
int sequence_shape(uint8_t b, uint8_t* lo, uint8_t* hi) {
  *lo = 0x80;
  *hi = 0xBF;
  if (b < 0x80) return 1;
  if (b < 0xC2) return 0;
  if (b < 0xE0) return 2;
  if (b < 0xF0) {
    if (b == 0xE0) *lo = 0xA0;
    if (b == 0xED) *hi = 0x9F;  // no surrogates
    return 3;
  }
  if (b < 0xF5) {
    if (b == 0xF0) *lo = 0x90;
    if (b == 0xF4) *hi = 0x8F;  // nothing above U+10FFFF
    return 4;
  }
  return 0;
}

// Length of the valid sequence at s[i] (> 0), or -(length of the maximal ill-formed subpart).
int scan(std::string_view s, size_t i) {
  uint8_t lo, hi;
  int n = sequence_shape(uint8_t(s[i]), &lo, &hi);
  if (n == 0) return -1;
  for (int k = 1; k < n; ++k) {
    if (i + k >= s.size()) return -k;
    uint8_t c = uint8_t(s[i + k]);
    if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) return -k;
  }
  return n;
}
}  // namespace

int decode_utf8(std::string_view s, size_t i, uint32_t* cp) {
  int n = scan(s, i);
  if (n < 0) {
    *cp = 0xFFFD;
    return 1;
  }
  const auto* p = reinterpret_cast<const uint8_t*>(s.data() + i);
  switch (n) {
    case 1: *cp = p[0]; break;
    case 2: *cp = (uint32_t(p[0] & 0x1F) << 6) | (p[1] & 0x3F); break;
    case 3: *cp = (uint32_t(p[0] & 0x0F) << 12) | (uint32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F); break;
    default:
      *cp = (uint32_t(p[0] & 0x07) << 18) | (uint32_t(p[1] & 0x3F) << 12) |
            (uint32_t(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
  }
  return n;
}

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    int n = scan(s, i);
    if (n < 0) return false;
    i += n;
  }
  return true;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    int n = scan(s, i);
    if (n > 0) {
      out.append(s.data() + i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += -n;
    }
  }
  return out;
}

size_t utf8_complete_prefix(std::string_view s) {
  // Only the last 3 bytes can start an unfinished sequence.
  size_t start = s.size() > 3 ? s.size() - 3 : 0;
  for (size_t i = start; i < s.size(); ++i) {
    uint8_t lo, hi;
    int n = sequence_shape(uint8_t(s[i]), &lo, &hi);
    if (n <= 1 || i + n <= s.size()) continue;
    // A lead byte whose sequence runs past the end: incomplete if what is there is valid so far.
    int got = scan(s.substr(0, s.size()), i);
    if (got == -int(s.size() - i)) return i;
  }
  return s.size();
}

}  // namespace qarl::tokenizer
