#include "qarl/tokenizer/normalizer.h"

#include <cstdlib>

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include "qarl/core/error.h"

namespace qarl::tokenizer {

std::string nfc_reference(std::string_view text) {
  utf8proc_uint8_t* out = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                    utf8proc_ssize_t(text.size()), &out,
                                    utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) throw err("NFC normalization failed: {}", utf8proc_errmsg(n));
  std::string s(reinterpret_cast<char*>(out), size_t(n));
  std::free(out);
  return s;
}

// Only the non-ASCII runs need utf8proc. A boundary before an ASCII character is safe (ASCII
// characters are starters and never the second part of a composition), but an ASCII letter may
// compose with combining marks after it (e + U+0301), so each run takes the ASCII character
// before it along.
std::string nfc(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0, n = text.size();
  while (i < n) {
    size_t j = i;
    while (j < n && uint8_t(text[j]) < 0x80) ++j;
    if (j == n) {
      out.append(text.substr(i));
      break;
    }
    size_t seg = j > i ? j - 1 : j;
    out.append(text.substr(i, seg - i));
    size_t k = j;
    while (k < n && uint8_t(text[k]) >= 0x80) ++k;
    out += nfc_reference(text.substr(seg, k - seg));
    i = k;
  }
  return out;
}

Normalizer Normalizer::from_json(const nlohmann::json& j) {
  Normalizer n;
  if (j.is_null()) return n;
  if (!j.is_object() || !j.contains("type")) throw err("normalizer must be an object with a \"type\"");
  std::string type = j["type"].get<std::string>();
  if (type == "NFC") {
    n.nfc_ = true;
  } else if (type == "Sequence") {
    for (const auto& sub : j.at("normalizers")) n.nfc_ |= from_json(sub).nfc_;
  } else {
    throw err("unsupported normalizer type \"{}\" (qarl supports NFC, Sequence of NFC, or null)",
              type);
  }
  return n;
}

std::string Normalizer::apply(std::string_view text) const {
  return nfc_ ? tokenizer::nfc(text) : std::string(text);
}

}  // namespace qarl::tokenizer
