// A minimal real tokenizer for qarl's own tiny models (arithmetic tasks in tests and demos):
// byte-level BPE with the 256 byte tokens (id = byte value), a few merges, and the special
// tokens <|endoftext|>, <|im_start|>, <|im_end|>, with Qwen2's split pattern and a ChatML chat
// template. It loads with load_tokenizer like any Hugging Face tokenizer.json.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace qarl::tokenizer {

struct TinyTokenizerSpec {
  // Merges as raw byte strings, in rank order; each result gets the next id after 255 (both
  // parts must be bytes or earlier results).
  std::vector<std::pair<std::string, std::string>> merges = {
      {" ", "+"}, {" ", "-"}, {" ", "*"}, {" ", "="}, {"\n", "\n"}};
};

// Ids of the special tokens: after the 256 bytes and the merges.
struct TinyTokenizerIds {
  int endoftext, im_start, im_end, vocab_size;
};
TinyTokenizerIds tiny_tokenizer_ids(const TinyTokenizerSpec& spec = {});

std::string tiny_tokenizer_json(const TinyTokenizerSpec& spec = {});
// tokenizer_config.json: ChatML template, eos <|im_end|>, pad <|endoftext|>.
std::string tiny_tokenizer_config_json();
// Writes tokenizer.json and tokenizer_config.json into `dir` (atomically, each).
void write_tiny_tokenizer(const std::string& dir, const TinyTokenizerSpec& spec = {});

}  // namespace qarl::tokenizer
