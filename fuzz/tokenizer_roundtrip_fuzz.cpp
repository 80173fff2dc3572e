// libFuzzer target for encoding and decoding (tokenizer/tokenizer.h) with fuzz_tokenizer.h's
// tokenizer (qarl's tiny one plus merges inside and across UTF-8 characters).
// Checked:
//   - valid UTF-8 text: decode(encode(text)) == NFC(text) (the tiny tokenizer normalizes to
//     NFC, as Qwen2's does; NFC by utf8proc over the whole text), with and without special
//     tokens in the text (<|im_start|> etc. are matched as added tokens), every id known;
//     and nfc() (which skips ASCII runs) equals utf8proc over the whole text;
//   - invalid UTF-8 text: encode throws Error(Input), nothing else;
//   - decode of arbitrary ids (past the vocabulary too) returns valid UTF-8 and never throws;
//     skipping special tokens equals decoding the ids without them.
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_tokenizer.h"
#include "qarl/core/error.h"
#include "qarl/tokenizer/normalizer.h"
#include "qarl/tokenizer/tokenizer.h"
#include "qarl/tokenizer/utf8.h"

using namespace qarl;
using namespace qarl::tokenizer;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Tokenizer& t = fuzz_tokenizer();
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (is_valid_utf8(text)) {
    const std::string normalized = nfc_reference(text);
    if (nfc(text) != normalized) __builtin_trap();
    for (bool add_special : {false, true}) {
      const std::vector<int32_t> ids = t.encode(text, add_special);
      for (int32_t id : ids)
        if (!t.has_id(id)) __builtin_trap();
      if (!add_special && t.decode(ids, false) != normalized) __builtin_trap();
    }
  } else {
    try {
      t.encode(text, false);
      __builtin_trap();  // invalid UTF-8 must be refused
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::Input) __builtin_trap();
    }
  }
  // The bytes as ids (two bytes each), decoded.
  std::vector<int32_t> ids, plain;
  for (size_t i = 0; i + 1 < size; i += 2) {
    const int32_t id = int32_t(data[i] | (data[i + 1] << 8)) % int32_t(t.id_space() + 16);
    ids.push_back(id);
    if (!t.is_special(id)) plain.push_back(id);
  }
  const std::string all = t.decode(ids, false), skipped = t.decode(ids, true);
  if (!is_valid_utf8(all) || !is_valid_utf8(skipped)) __builtin_trap();
  if (skipped != t.decode(plain, false)) __builtin_trap();
  return 0;
}
