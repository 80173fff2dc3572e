// UTF-8 helpers for the tokenizer: code point iteration, encoding, and the lossy repair that
// Hugging Face decoders apply to byte sequences (Rust's String::from_utf8_lossy).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace qarl::tokenizer {

// Appends the UTF-8 encoding of code point `cp` (must be a valid scalar value).
void append_utf8(std::string& out, uint32_t cp);

// Decodes the code point starting at s[i] of valid UTF-8 and returns its byte length.
// For an invalid sequence returns length 1 and cp = U+FFFD (callers that need exactness
// validate first with is_valid_utf8).
int decode_utf8(std::string_view s, size_t i, uint32_t* cp);

bool is_valid_utf8(std::string_view s);

// Rust's String::from_utf8_lossy (which tokenizers' ByteLevel decoder uses) and Python's
// bytes.decode('utf-8', errors='replace') agree: every maximal subpart of an ill-formed
// sequence (Unicode "substitution of maximal subparts") becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes);

// Length of the longest prefix of `bytes` that does not end inside a possibly incomplete
// (still completable) multi-byte sequence. Used by streaming decoders: the tail after it may
// become valid once more bytes arrive.
size_t utf8_complete_prefix(std::string_view bytes);

}  // namespace qarl::tokenizer
