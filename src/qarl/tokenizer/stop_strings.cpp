#include "qarl/tokenizer/stop_strings.h"

#include <algorithm>

#include "qarl/core/error.h"
#include "qarl/tokenizer/utf8.h"

namespace qarl::tokenizer {

StopStringMatcher::StopStringMatcher(Tokenizer tokenizer, std::vector<std::string> stop_strings,
                                     bool skip_special_tokens)
    : tok_(std::move(tokenizer)), stops_(std::move(stop_strings)), skip_special_(skip_special_tokens) {
  for (size_t i = 0; i < stops_.size(); ++i) {
    if (stops_[i].empty()) throw usage_err("stop string {} is empty", i);
    max_stop_ = std::max(max_stop_, stops_[i].size());
  }
}

void StopStringMatcher::reset() {
  bytes_.clear();
  tokens_ = 0;
  emitted_ = 0;
  finished_ = false;
  match_.reset();
}

std::string StopStringMatcher::new_text() {
  std::string_view b(bytes_);
  size_t end;
  if (match_) {
    end = match_->text_bytes;  // the output ends where the stop string starts
  } else if (finished_) {
    end = b.size();
  } else {
    end = utf8_complete_prefix(b);
    // Bytes that may still become the start of a stop string are held back too, so a client
    // never sees text that the stop string will remove.
    for (const auto& s : stops_)
      for (size_t k = std::min(s.size() - 1, b.size()); k > 0; --k)
        if (b.substr(b.size() - k) == std::string_view(s).substr(0, k)) {
          end = std::min(end, b.size() - k);
          break;
        }
  }
  if (end <= emitted_) return "";
  std::string out = utf8_lossy(b.substr(emitted_, end - emitted_));
  emitted_ = end;
  return out;
}

std::optional<StopMatch> StopStringMatcher::push(int32_t id) {
  if (match_) return match_;
  size_t before = bytes_.size();
  ++tokens_;
  if (!(skip_special_ && tok_.is_special(id))) bytes_ += tok_.token_bytes(id);
  if (bytes_.size() == before) return std::nullopt;
  // Only occurrences that end in the new bytes are new: search from max_stop - 1 back.
  size_t from = before >= max_stop_ ? before - (max_stop_ - 1) : 0;
  size_t best = std::string::npos, best_i = 0;
  for (size_t i = 0; i < stops_.size(); ++i) {
    size_t p = bytes_.find(stops_[i], from);
    if (p != std::string::npos && p < best) {
      best = p;
      best_i = i;
    }
  }
  if (best == std::string::npos) return std::nullopt;
  StopMatch m;
  m.stop_index = best_i;
  m.token_count = tokens_;
  m.text_bytes = best;
  m.text = utf8_lossy(std::string_view(bytes_).substr(0, best));
  m.text_with_stop = utf8_lossy(std::string_view(bytes_).substr(0, best + stops_[best_i].size()));
  match_ = m;
  return match_;
}

std::string StopStringMatcher::stable_text() const {
  std::string_view b(bytes_);
  return utf8_lossy(b.substr(0, utf8_complete_prefix(b)));
}

std::optional<StopMatch> find_stop_string(const Tokenizer& tokenizer, std::span<const int32_t> ids,
                                          const std::vector<std::string>& stop_strings,
                                          bool skip_special_tokens) {
  StopStringMatcher m(tokenizer, stop_strings, skip_special_tokens);
  for (int32_t id : ids)
    if (auto r = m.push(id)) return r;
  return std::nullopt;
}

}  // namespace qarl::tokenizer
