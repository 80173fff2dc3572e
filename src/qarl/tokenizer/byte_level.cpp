#include "qarl/tokenizer/byte_level.h"

#include <vector>

#include "qarl/tokenizer/utf8.h"

namespace qarl::tokenizer {

namespace {
struct Tables {
  std::array<uint32_t, 256> cp{};
  std::array<std::string, 256> text;
  std::vector<int16_t> reverse = std::vector<int16_t>(512, -1);
  Tables() {
    // GPT-2's bytes_to_unicode(): bytes in '!'..'~', '¡'..'¬', '®'..'ÿ' map to themselves,
    // the rest to 256, 257, ... in byte order.
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      cp[b] = keep ? uint32_t(b) : next++;
      append_utf8(text[b], cp[b]);
      reverse[cp[b]] = int16_t(b);
    }
  }
};
const Tables& tables() {
  static const Tables t;
  return t;
}
}  // namespace

uint32_t byte_to_codepoint(uint8_t b) { return tables().cp[b]; }
const std::string& byte_to_unicode(uint8_t b) { return tables().text[b]; }
int codepoint_to_byte(uint32_t cp) { return cp < 512 ? tables().reverse[cp] : -1; }

std::string bytes_to_byte_level(std::string_view bytes) {
  const auto& t = tables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += t.text[uint8_t(c)];
  return out;
}

bool byte_level_to_bytes(std::string_view text, std::string* out) {
  size_t mark = out->size();
  for (size_t i = 0; i < text.size();) {
    uint32_t cp;
    int n = decode_utf8(text, i, &cp);
    int b = codepoint_to_byte(cp);
    if (b < 0) {
      out->resize(mark);
      out->append(text);
      return false;
    }
    *out += char(b);
    i += n;
  }
  return true;
}

}  // namespace qarl::tokenizer
