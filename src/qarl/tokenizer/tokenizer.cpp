// Encoding and decoding (the loaders are in tokenizer_json.cpp).
#include "qarl/tokenizer/tokenizer.h"

#include <deque>

#include "qarl/core/error.h"
#include "qarl/tokenizer/byte_level.h"
#include "qarl/tokenizer/tokenizer_impl.h"
#include "qarl/tokenizer/utf8.h"

namespace qarl::tokenizer {

void Tokenizer::Impl::finish() {
  size_t n = 0;
  for (const auto& [tok, id] : bpe->vocab()) n = std::max(n, size_t(id) + 1);
  for (const auto& a : added) n = std::max(n, size_t(a.id) + 1);
  id_to_token.assign(n, "");
  id_to_bytes.assign(n, "");
  special.assign(n, 0);
  for (const auto& [tok, id] : bpe->vocab()) id_to_token[id] = tok;
  std::vector<AddedToken> raw, norm;
  for (auto a : added) {
    id_to_token[a.id] = a.content;  // the added vocabulary wins, as in tokenizers
    special[a.id] = a.special;
    added_by_content[a.content] = a.id;
    if (a.normalized) {
      a.content = normalizer.apply(a.content);
      norm.push_back(a);
    } else {
      raw.push_back(a);
    }
  }
  // The ByteLevel decoder maps each token's characters back to bytes, or keeps the token's
  // own UTF-8 when a character is outside the byte alphabet.
  for (size_t i = 0; i < n; ++i) byte_level_to_bytes(id_to_token[i], &id_to_bytes[i]);
  raw_matcher = AddedTokenMatcher(raw);
  normalized_matcher = AddedTokenMatcher(norm);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const Impl& m = *impl_;
  if (!is_valid_utf8(text)) throw err("text to encode is not valid UTF-8");
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special_tokens) ids.insert(ids.end(), m.post_prefix.begin(), m.post_prefix.end());

  std::vector<TextPiece> raw_pieces, norm_pieces;
  std::vector<std::string_view> words;
  std::deque<std::string> storage;
  m.raw_matcher.split(text, &raw_pieces);
  for (const TextPiece& rp : raw_pieces) {
    if (rp.token_id >= 0) {
      ids.push_back(rp.token_id);
      continue;
    }
    std::string normalized = m.normalizer.apply(text.substr(rp.start, rp.end - rp.start));
    norm_pieces.clear();
    m.normalized_matcher.split(normalized, &norm_pieces);
    for (const TextPiece& np : norm_pieces) {
      if (np.token_id >= 0) {
        ids.push_back(np.token_id);
        continue;
      }
      words.clear();
      storage.clear();
      m.pre_tokenizer.split(std::string_view(normalized).substr(np.start, np.end - np.start),
                            &words, &storage);
      for (std::string_view w : words) m.bpe->encode_word(w, &ids);
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), m.post_suffix.begin(), m.post_suffix.end());
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  std::string bytes;
  for (int32_t id : ids) {
    if (!has_id(id)) continue;
    if (skip_special_tokens && m.special[id]) continue;
    bytes += m.id_to_bytes[id];
  }
  std::string text = utf8_lossy(bytes);
  if (m.config.clean_up_tokenization_spaces) text = clean_up_tokenization(std::move(text));
  return text;
}

std::string clean_up_tokenization(std::string s) {
  static const std::pair<const char*, const char*> kReplacements[] = {
      {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  // Python's str.replace, applied in this order (transformers' clean_up_tokenization).
  for (auto [from, to] : kReplacements) {
    std::string out;
    std::string_view f(from);
    size_t at = 0;
    for (size_t p; (p = s.find(f, at)) != std::string::npos; at = p + f.size()) {
      out.append(s, at, p - at);
      out += to;
    }
    out.append(s, at, std::string::npos);
    s.swap(out);
  }
  return s;
}

bool Tokenizer::has_id(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->id_to_token.size() && !impl_->id_to_token[id].empty();
}
const std::string& Tokenizer::token_bytes(int32_t id) const {
  static const std::string empty;
  return has_id(id) ? impl_->id_to_bytes[id] : empty;
}
const std::string& Tokenizer::id_to_token(int32_t id) const {
  static const std::string empty;
  return has_id(id) ? impl_->id_to_token[id] : empty;
}
std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto a = impl_->added_by_content.find(std::string(token));
  if (a != impl_->added_by_content.end()) return a->second;
  auto v = impl_->bpe->vocab().find(std::string(token));
  if (v != impl_->bpe->vocab().end()) return v->second;
  return std::nullopt;
}
bool Tokenizer::is_special(int32_t id) const { return has_id(id) && impl_->special[id]; }
size_t Tokenizer::id_space() const { return impl_->id_to_token.size(); }
const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }
const TokenizerConfig& Tokenizer::config() const { return impl_->config; }
const std::string& Tokenizer::source() const { return impl_->source; }

std::vector<int32_t> Tokenizer::encode_word_reference(std::string_view word_bytes) const {
  std::vector<int32_t> out;
  impl_->bpe->encode_word_reference(word_bytes, &out);
  return out;
}

}  // namespace qarl::tokenizer
