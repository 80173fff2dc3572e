// Tokenizer's internal state, shared by tokenizer.cpp (encode/decode) and the loaders.
#pragma once
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "qarl/tokenizer/added_tokens.h"
#include "qarl/tokenizer/bpe.h"
#include "qarl/tokenizer/normalizer.h"
#include "qarl/tokenizer/pre_tokenizer.h"
#include "qarl/tokenizer/tokenizer.h"

namespace qarl::tokenizer {

struct Tokenizer::Impl {
  std::string source;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  std::unique_ptr<BpeModel> bpe;
  std::vector<AddedToken> added;
  AddedTokenMatcher raw_matcher;         // added tokens with normalized == false
  AddedTokenMatcher normalized_matcher;  // ... == true (contents normalized)
  // Post-processor for one sequence when add_special_tokens: prefix + ids + suffix.
  std::vector<int32_t> post_prefix, post_suffix;
  std::vector<std::string> id_to_token;  // "" for ids no token has
  std::vector<std::string> id_to_bytes;
  std::vector<uint8_t> special;
  std::unordered_map<std::string, int32_t> added_by_content;
  TokenizerConfig config;

  // Fills id_to_token / id_to_bytes / special / matchers from bpe->vocab() and `added`.
  void finish();
};

}  // namespace qarl::tokenizer
