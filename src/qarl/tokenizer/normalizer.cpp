#include "qarl/tokenizer/normalizer.h"

#include <cstdlib>

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include "qarl/core/error.h"

namespace qarl::tokenizer {

std::string nfc(std::string_view text) {
  // Pure ASCII is already NFC; skipping utf8proc there keeps common text fast.
  bool ascii = true;
  for (char c : text) {
    if (uint8_t(c) >= 0x80) { ascii = false; break; }
  }
  if (ascii) return std::string(text);
  utf8proc_uint8_t* out = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                    utf8proc_ssize_t(text.size()), &out,
                                    utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) throw err("NFC normalization failed: {}", utf8proc_errmsg(n));
  std::string s(reinterpret_cast<char*>(out), size_t(n));
  std::free(out);
  return s;
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
