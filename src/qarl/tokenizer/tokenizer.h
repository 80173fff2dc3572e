// qarl's tokenizer: Hugging Face byte-level BPE, loaded from tokenizer.json (or GPT-2's
// vocab.json + merges.txt), encoding and decoding exactly as the tokenizers library does.
//
//   auto tok = qarl::tokenizer::load_tokenizer("/ckpt");      // dir or tokenizer.json
//   std::vector<int32_t> ids = tok.encode("Hello", /*add_special_tokens=*/false);
//   std::string text = tok.decode(ids, /*skip_special_tokens=*/false);
//
// Encoding: added tokens matched on the raw text -> normalizer -> added tokens with
// normalized=true -> pre-tokenizer (Split regex, ByteLevel) -> BPE per word -> post-processor
// (only when add_special_tokens, e.g. Llama 3's <|begin_of_text|>).
// Tokenizer is cheap to copy (shared, immutable state) and safe to use from several threads.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qarl/tokenizer/added_tokens.h"

namespace qarl::tokenizer {

// What tokenizer_config.json (next to tokenizer.json) adds; all optional.
struct TokenizerConfig {
  std::string chat_template;  // the "default" template, or chat_template.jinja's text
  std::string bos_token, eos_token, pad_token;
  bool clean_up_tokenization_spaces = false;  // transformers' decode() post-pass
};

class Tokenizer {
 public:
  // `text` must be valid UTF-8 (Error otherwise).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;
  // Ids that no token has are skipped (as tokenizers does: model vocabularies are often
  // padded beyond the tokenizer's). Invalid UTF-8 becomes U+FFFD per maximal subpart.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // The raw bytes token `id` stands for (before UTF-8 repair); empty for unknown ids.
  const std::string& token_bytes(int32_t id) const;
  // The token's text as in the vocabulary ("Ġworld", "<|im_end|>"); empty if unknown.
  const std::string& id_to_token(int32_t id) const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  bool is_special(int32_t id) const;
  bool has_id(int32_t id) const;
  // One past the largest id (len(tokenizer) in transformers).
  size_t id_space() const;
  const std::vector<AddedToken>& added_tokens() const;
  const TokenizerConfig& config() const;
  const std::string& source() const;  // where it was loaded from, for messages

  // Encodes one pre-tokenized word with the plain reference BPE loop (tests compare it with
  // the heap + cache path that encode() uses).
  std::vector<int32_t> encode_word_reference(std::string_view word_bytes) const;

  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

 private:
  std::shared_ptr<const Impl> impl_;
};

// Loaders. Errors name the file and the unsupported component.
// `path`: a checkpoint directory (tokenizer.json, else vocab.json + merges.txt; plus
// tokenizer_config.json and chat_template.jinja when present) or a tokenizer.json file.
Tokenizer load_tokenizer(const std::string& path);
Tokenizer tokenizer_from_json(std::string_view json_text, const std::string& source_name,
                              TokenizerConfig config = {});
// GPT-2 form. If the vocabulary has <|endoftext|> and `added_tokens` does not, it becomes a
// special token (as transformers' GPT2Tokenizer has it). load_tokenizer takes added tokens from
// tokenizer_config.json's added_tokens_decoder, else added_tokens.json.
Tokenizer tokenizer_from_gpt2_files(const std::string& vocab_json_path,
                                    const std::string& merges_txt_path,
                                    std::vector<AddedToken> added_tokens = {},
                                    TokenizerConfig config = {});
// Reads tokenizer_config.json (and chat_template.jinja) in `dir`; defaults if absent.
TokenizerConfig read_tokenizer_config(const std::string& dir);

// transformers' clean_up_tokenization: " ." -> "." and the like.
std::string clean_up_tokenization(std::string text);

}  // namespace qarl::tokenizer
