// libFuzzer target for the stop-string matcher (tokenizer/stop_strings.h), a differential
// oracle. Input: a few stop strings and generated ids for fuzz_tokenizer.h's tokenizer (byte
// tokens, merges, special tokens; ids past the vocabulary too). Checked:
//   - the streaming matcher (push per id) reports what a naive search finds: the first step
//     whose output bytes contain a stop string, the earliest occurrence there (first listed
//     on ties), the bytes before it;
//   - find_stop_string (one shot) agrees with the streaming matcher;
//   - the streamed chunks (new_text after each push, then finish) concatenate to the final
//     text when the output bytes and the stop strings are valid UTF-8;
//   - only Error(Usage) escapes (an empty stop string).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fuzz_tokenizer.h"
#include "qarl/core/error.h"
#include "qarl/tokenizer/stop_strings.h"
#include "qarl/tokenizer/tokenizer.h"
#include "qarl/tokenizer/utf8.h"

using namespace qarl;
using namespace qarl::tokenizer;

namespace {


struct Naive {
  size_t stop_index, token_count, text_bytes;
};

std::optional<Naive> naive(const Tokenizer& t, const std::vector<int32_t>& ids,
                           const std::vector<std::string>& stops, bool skip_special) {
  std::string bytes;
  for (size_t k = 0; k < ids.size(); ++k) {
    if (!(skip_special && t.is_special(ids[k]))) bytes += t.token_bytes(ids[k]);
    size_t best = std::string::npos, best_i = 0;
    for (size_t i = 0; i < stops.size(); ++i) {
      const size_t p = bytes.find(stops[i]);
      if (p != std::string::npos && p < best) best = p, best_i = i;
    }
    if (best != std::string::npos) return Naive{best_i, k + 1, best};
  }
  return std::nullopt;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const Tokenizer& t = fuzz_tokenizer();
  const bool skip_special = data[0] & 1;
  const size_t n_stops = 1 + (data[0] >> 1) % 3;
  size_t at = 1;
  // Stop strings: a length byte (0..7) then that many bytes each.
  std::vector<std::string> stops;
  for (size_t i = 0; i < n_stops && at < size; ++i) {
    const size_t len = data[at++] % 8;
    std::string s;
    for (size_t j = 0; j < len && at < size; ++j) s += char(data[at++]);
    stops.push_back(s);
  }
  // Ids: one byte each, spread over the vocabulary and a little past it.
  const int32_t space = int32_t(t.id_space());
  std::vector<int32_t> ids;
  for (; at < size; ++at) ids.push_back(int32_t(data[at]) * (space + 8) / 256);

  try {
    StopStringMatcher m(t, stops, skip_special);
    std::optional<StopMatch> got;
    size_t pushed = 0;
    std::string streamed;
    for (int32_t id : ids) {
      got = m.push(id);
      ++pushed;
      streamed += m.new_text();
      if (got) break;
    }
    m.finish();
    streamed += m.new_text();

    const auto want = naive(t, ids, stops, skip_special);
    if (bool(got) != bool(want)) __builtin_trap();
    if (got && (got->stop_index != want->stop_index || got->token_count != want->token_count ||
                got->text_bytes != want->text_bytes || got->token_count != pushed))
      __builtin_trap();
    const auto once = find_stop_string(t, ids, stops, skip_special);
    if (bool(once) != bool(got)) __builtin_trap();
    if (once && (once->stop_index != got->stop_index || once->token_count != got->token_count ||
                 once->text_bytes != got->text_bytes || once->text != got->text ||
                 once->text_with_stop != got->text_with_stop))
      __builtin_trap();

    // The streamed chunks make up the final text (valid UTF-8 output and stop strings).
    std::string bytes;
    for (size_t k = 0; k < pushed; ++k)
      if (!(skip_special && t.is_special(ids[k]))) bytes += t.token_bytes(ids[k]);
    bool valid = is_valid_utf8(bytes);
    for (const auto& s : stops) valid = valid && is_valid_utf8(s);
    if (valid) {
      const std::string final_text = got ? got->text : bytes;
      if (streamed != final_text) __builtin_trap();
    }
  } catch (const Error& e) {
    bool empty = false;
    for (const auto& s : stops) empty = empty || s.empty();
    if (e.kind() != ErrorKind::Usage || !empty) __builtin_trap();
  }
  return 0;
}
