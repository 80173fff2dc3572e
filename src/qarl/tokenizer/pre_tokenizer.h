// tokenizer.json "pre_tokenizer": how normalized text is cut into words before BPE. Supported:
// Split {Regex or String pattern, behavior Isolated, invert false}, ByteLevel {add_prefix_space,
// use_regex}, and a Sequence of those. Words stay raw bytes here; the byte-level alphabet is
// applied by the BPE model (it starts from one symbol per byte).
#pragma once
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "qarl/tokenizer/regex.h"

namespace qarl::tokenizer {

class PreTokenizer {
 public:
  static PreTokenizer from_json(const nlohmann::json& j);  // null allowed
  // GPT-2 form: ByteLevel{add_prefix_space=false, use_regex=true}.
  static PreTokenizer gpt2_byte_level();

  bool has_byte_level() const { return has_byte_level_; }
  // Splits `text` into words; views point into `text` or into `storage` (prefix spaces).
  void split(std::string_view text, std::vector<std::string_view>* words,
             std::deque<std::string>* storage) const;

 private:
  struct Step {
    std::shared_ptr<const Regex> regex;  // null: ByteLevel without regex
    bool add_prefix_space = false;       // ByteLevel only
    bool byte_level = false;
  };
  static void parse_into(const nlohmann::json& j, PreTokenizer* p);
  std::vector<Step> steps_;
  bool has_byte_level_ = false;
};

}  // namespace qarl::tokenizer
