// Added tokens (special or not) are matched in the text before normalization and
// pre-tokenization, as tokenizers' AddedVocabulary does: leftmost-longest matches, honouring
// single_word, lstrip and rstrip.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qarl::tokenizer {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool single_word = false;  // only match when not inside a word
  bool lstrip = false;       // the match swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool normalized = false;   // matched against the normalized text instead of the raw text
};

// A piece of text: [start, end) in the input, and the added token it is (or -1 for plain text).
struct TextPiece {
  size_t start, end;
  int32_t token_id;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `tokens` must outlive the matcher's use only during construction (contents are copied).
  explicit AddedTokenMatcher(const std::vector<AddedToken>& tokens);
  bool empty() const { return tokens_.empty(); }
  // Splits `text` into plain pieces and token pieces covering it in order.
  void split(std::string_view text, std::vector<TextPiece>* out) const;

 private:
  std::vector<AddedToken> tokens_;
  // For each first byte, indices into tokens_ sorted by decreasing length (longest wins).
  std::vector<std::vector<uint32_t>> by_first_byte_ = std::vector<std::vector<uint32_t>>(256);
};

// The Unicode White_Space property (Rust's char::is_whitespace and regex \s), which lstrip and
// rstrip swallow.
bool is_unicode_whitespace(uint32_t cp);

}  // namespace qarl::tokenizer
