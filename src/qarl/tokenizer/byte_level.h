// GPT-2's byte-level alphabet: each of the 256 byte values is shown as one printable Unicode
// character (printable Latin-1 bytes as themselves, the others shifted to U+0100..U+0143), so
// that BPE vocabularies can hold arbitrary bytes as text.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace qarl::tokenizer {

// The code point that represents byte `b`.
uint32_t byte_to_codepoint(uint8_t b);
// The UTF-8 text of that code point (what appears in vocab.json / tokenizer.json).
const std::string& byte_to_unicode(uint8_t b);
// The byte that code point `cp` represents, or -1 if `cp` is not in the alphabet.
int codepoint_to_byte(uint32_t cp);

// Maps raw bytes to their byte-level text ("hello world" -> "helloĠworld").
std::string bytes_to_byte_level(std::string_view bytes);
// The reverse, as tokenizers' ByteLevel decoder does for one token: if every character is in
// the alphabet, the bytes they stand for; otherwise (an added token such as "<think>" with
// characters outside it) the token's own UTF-8 bytes. Returns false in that second case.
bool byte_level_to_bytes(std::string_view text, std::string* out);

}  // namespace qarl::tokenizer
