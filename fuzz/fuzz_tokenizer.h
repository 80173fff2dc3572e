// The tokenizer the tokenizer fuzz targets share: qarl's tiny tokenizer (256 byte tokens,
// special tokens, NFC, Qwen2's split pattern) plus merges that build multi-byte tokens inside
// one UTF-8 character (0xC3 0xA9 is "é", 0xE2 0x82 0xAC is "€") and across characters, so
// that token boundaries fall everywhere a character or a stop string can be cut.
#pragma once
#include "qarl/tokenizer/tiny_tokenizer.h"
#include "qarl/tokenizer/tokenizer.h"

inline const qarl::tokenizer::Tokenizer& fuzz_tokenizer() {
  static const qarl::tokenizer::Tokenizer t = [] {
    qarl::tokenizer::TinyTokenizerSpec spec;
    spec.merges = {{" ", "+"}, {"\n", "\n"}, {"a", "b"}, {"ab", "c"}, {"\xC3", "\xA9"},
                   {"\xC3\xA9", "x"}, {"x", "\xC3"}, {" ", "a"}, {"1", "2"}, {"12", "3"},
                   {"<", "|"}, {"\xE2", "\x82"}, {"\xE2\x82", "\xAC"}, {" ", " "}, {"  ", " "}};
    return qarl::tokenizer::tokenizer_from_json(qarl::tokenizer::tiny_tokenizer_json(spec), "tiny");
  }();
  return t;
}
