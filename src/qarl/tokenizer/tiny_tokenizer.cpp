#include "qarl/tokenizer/tiny_tokenizer.h"

#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/tokenizer/byte_level.h"

namespace qarl::tokenizer {

using nlohmann::json;

TinyTokenizerIds tiny_tokenizer_ids(const TinyTokenizerSpec& spec) {
  int n = 256 + int(spec.merges.size());
  return {n, n + 1, n + 2, n + 3};
}

std::string tiny_tokenizer_json(const TinyTokenizerSpec& spec) {
  json vocab = json::object();
  std::map<std::string, int> known;  // raw bytes -> id
  for (int b = 0; b < 256; ++b) {
    vocab[byte_to_unicode(uint8_t(b))] = b;
    known[std::string(1, char(b))] = b;
  }
  json merges = json::array();
  int next = 256;
  for (const auto& [a, b] : spec.merges) {
    if (!known.count(a) || !known.count(b))
      throw err("tiny tokenizer merge (\"{}\", \"{}\"): both parts must be bytes or earlier merges", a, b);
    std::string joined = a + b;
    if (known.count(joined)) throw err("tiny tokenizer merge (\"{}\", \"{}\") repeats a token", a, b);
    known[joined] = next;
    vocab[bytes_to_byte_level(joined)] = next++;
    merges.push_back(json::array({bytes_to_byte_level(a), bytes_to_byte_level(b)}));
  }
  TinyTokenizerIds ids = tiny_tokenizer_ids(spec);
  json added = json::array();
  for (auto [id, content] : {std::pair{ids.endoftext, "<|endoftext|>"}, {ids.im_start, "<|im_start|>"},
                             {ids.im_end, "<|im_end|>"}})
    added.push_back({{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false},
                     {"use_regex", false}};
  json t = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         json::array({{{"type", "Split"},
                       {"pattern",
                        {{"Regex",
                          R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
                       {"behavior", "Isolated"},
                       {"invert", false}},
                      byte_level})}}},
      {"post_processor", byte_level},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
        {"continuing_subword_prefix", ""}, {"end_of_word_suffix", ""}, {"fuse_unk", false},
        {"byte_fallback", false}, {"ignore_merges", false}, {"vocab", vocab}, {"merges", merges}}},
  };
  return t.dump(1) + "\n";
}

std::string tiny_tokenizer_config_json() {
  json c = {
      {"tokenizer_class", "Qwen2Tokenizer"},
      {"bos_token", nullptr},
      {"eos_token", "<|im_end|>"},
      {"pad_token", "<|endoftext|>"},
      {"clean_up_tokenization_spaces", false},
      {"chat_template",
       "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + "
       "'<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' "
       "}}{%- endif %}"},
  };
  return c.dump(1) + "\n";
}

void write_tiny_tokenizer(const std::string& dir, const TinyTokenizerSpec& spec) {
  std::string tj = tiny_tokenizer_json(spec);  // validate before writing anything
  std::filesystem::create_directories(dir);
  write_file_atomic((std::filesystem::path(dir) / "tokenizer.json").string(), tj);
  write_file_atomic((std::filesystem::path(dir) / "tokenizer_config.json").string(),
                    tiny_tokenizer_config_json());
}

}  // namespace qarl::tokenizer
