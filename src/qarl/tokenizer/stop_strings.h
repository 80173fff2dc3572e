// Stop strings during generation: feed generated ids one at a time; the matcher reports when a
// stop string has appeared in the decoded output and where to cut (vLLM semantics: the text
// ends before the stop string, the tokens end with the one that completed it).
//
// Matching is on the raw bytes the tokens stand for, so a stop string split across tokens,
// even inside one UTF-8 character, is found as soon as its last byte is generated.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "qarl/tokenizer/tokenizer.h"

namespace qarl::tokenizer {

struct StopMatch {
  size_t stop_index = 0;    // which stop string (earliest in the text; first listed on ties)
  size_t token_count = 0;   // tokens to keep: up to and including the one completing it
  size_t text_bytes = 0;    // bytes of output before the stop string
  std::string text;         // that output, decoded (U+FFFD for invalid UTF-8)
  std::string text_with_stop;  // ... including the stop string (include_stop_str_in_output)
};

class StopStringMatcher {
 public:
  // Empty stop strings are an Error. Special tokens contribute no text when skipped.
  StopStringMatcher(Tokenizer tokenizer, std::vector<std::string> stop_strings,
                    bool skip_special_tokens = true);
  // Adds one generated id; returns the match once a stop string has completed (and keeps
  // returning it afterwards).
  std::optional<StopMatch> push(int32_t id);
  // The output decoded so far, holding back an unfinished UTF-8 sequence at the end (what a
  // streaming client may be shown).
  std::string stable_text() const;
  // Streaming: the text that became stable since the previous call. Concatenating the chunks
  // gives the final output (the text before the stop string once one matched; everything,
  // with an unfinished sequence repaired to U+FFFD, after finish()).
  std::string new_text();
  // No more tokens will come: new_text() then flushes an unfinished UTF-8 sequence.
  void finish() { finished_ = true; }
  void reset();

 private:
  Tokenizer tok_;
  std::vector<std::string> stops_;
  bool skip_special_;
  size_t max_stop_ = 0;
  std::string bytes_;
  size_t tokens_ = 0;
  size_t emitted_ = 0;  // bytes of bytes_ handed out by new_text()
  bool finished_ = false;
  std::optional<StopMatch> match_;
};

// One-shot form over a whole id sequence (e.g. re-checking a finished generation).
std::optional<StopMatch> find_stop_string(const Tokenizer& tokenizer, std::span<const int32_t> ids,
                                          const std::vector<std::string>& stop_strings,
                                          bool skip_special_tokens = true);

}  // namespace qarl::tokenizer
