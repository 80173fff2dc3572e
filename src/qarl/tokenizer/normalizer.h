// tokenizer.json "normalizer": null, NFC, or a Sequence of those. NFC comes from utf8proc
// (Debian libutf8proc-dev).
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace qarl::tokenizer {

class Normalizer {
 public:
  // Parses the JSON value (null allowed); throws Error naming unsupported types.
  static Normalizer from_json(const nlohmann::json& j);
  static Normalizer none() { return Normalizer(); }
  static Normalizer nfc() { Normalizer n; n.nfc_ = true; return n; }
  bool is_identity() const { return !nfc_; }
  // `text` must be valid UTF-8.
  std::string apply(std::string_view text) const;

 private:
  bool nfc_ = false;
};

std::string nfc(std::string_view text);
// The same, utf8proc over the whole text (nfc() normalizes only the non-ASCII runs).
std::string nfc_reference(std::string_view text);

}  // namespace qarl::tokenizer
