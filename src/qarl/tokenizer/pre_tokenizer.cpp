#include "qarl/tokenizer/pre_tokenizer.h"

#include <nlohmann/json.hpp>

#include "qarl/core/error.h"

namespace qarl::tokenizer {

namespace {
std::string escape_literal(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}
}  // namespace

void PreTokenizer::parse_into(const nlohmann::json& j, PreTokenizer* p) {
  if (!j.is_object() || !j.contains("type")) throw err("pre_tokenizer must be an object with a \"type\"");
  std::string type = j["type"].get<std::string>();
  if (type == "Sequence") {
    for (const auto& sub : j.at("pretokenizers")) parse_into(sub, p);
  } else if (type == "Split") {
    std::string behavior = j.value("behavior", "Isolated");
    if (behavior != "Isolated")
      throw err("unsupported Split pre-tokenizer behavior \"{}\" (qarl supports Isolated)", behavior);
    if (j.value("invert", false)) throw err("unsupported Split pre-tokenizer with invert: true");
    const auto& pat = j.at("pattern");
    std::string regex;
    if (pat.contains("Regex")) regex = pat["Regex"].get<std::string>();
    else if (pat.contains("String")) regex = escape_literal(pat["String"].get<std::string>());
    else throw err("Split pre-tokenizer pattern must have \"Regex\" or \"String\"");
    p->steps_.push_back({std::make_shared<const Regex>(regex), false, false});
  } else if (type == "ByteLevel") {
    Step s;
    s.byte_level = true;
    s.add_prefix_space = j.value("add_prefix_space", false);
    if (j.value("use_regex", true)) s.regex = std::make_shared<const Regex>(kGpt2SplitPattern);
    p->steps_.push_back(s);
    p->has_byte_level_ = true;
  } else {
    throw err("unsupported pre_tokenizer type \"{}\" (qarl supports Split, ByteLevel, Sequence)",
              type);
  }
}

PreTokenizer PreTokenizer::from_json(const nlohmann::json& j) {
  PreTokenizer p;
  if (!j.is_null()) parse_into(j, &p);
  return p;
}

PreTokenizer PreTokenizer::gpt2_byte_level() {
  PreTokenizer p;
  p.steps_.push_back({std::make_shared<const Regex>(kGpt2SplitPattern), false, true});
  p.has_byte_level_ = true;
  return p;
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>* words,
                         std::deque<std::string>* storage) const {
  std::vector<std::string_view> cur{text}, next;
  std::vector<std::pair<size_t, size_t>> matches;
  for (const Step& step : steps_) {
    next.clear();
    for (std::string_view piece : cur) {
      if (step.add_prefix_space && (piece.empty() || piece[0] != ' ')) {
        storage->push_back(" " + std::string(piece));
        piece = storage->back();
      }
      if (!step.regex) {
        next.push_back(piece);
        continue;
      }
      // Isolated: every match is a word, and so is every non-empty gap between matches.
      matches.clear();
      step.regex->find_all(piece, &matches);
      size_t at = 0;
      for (auto [s, e] : matches) {
        if (s > at) next.push_back(piece.substr(at, s - at));
        next.push_back(piece.substr(s, e - s));
        at = e;
      }
      if (at < piece.size()) next.push_back(piece.substr(at));
    }
    cur.swap(next);
  }
  for (auto w : cur)
    if (!w.empty()) words->push_back(w);
}

}  // namespace qarl::tokenizer
