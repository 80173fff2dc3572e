// JSON parsing for files qarl reads from others (safetensors headers, config.json, shard
// indexes). nlohmann::json silently keeps the last of duplicate keys; a file with two
// different values for one key is ambiguous, so these helpers reject duplicates (and
// absurd nesting) with an Error naming the file and the key.
#pragma once
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace qarl::io {

constexpr int kMaxJsonDepth = 64;

// Keys keep their file order (ordered_json). Throws Error(Input) with .file(label) on invalid JSON, duplicate keys or nesting deeper
// than kMaxJsonDepth.
// ordered_json inserts in linear time per key, so use it only where order matters (the
// safetensors header, one shard's tensors); indexes and configs use the sorted form.
nlohmann::ordered_json parse_json_strict(std::string_view text, const std::string& label);
nlohmann::json parse_json_strict_sorted(std::string_view text, const std::string& label);

// JSON string literal exactly as serde_json writes it (the safetensors reference writer):
// escapes '"', '\\' and control characters (short forms \b \t \n \f \r, else \u00xx),
// everything else, UTF-8 included, verbatim.
std::string json_quote(std::string_view s);

bool is_valid_utf8(std::string_view s);

}  // namespace qarl::io
