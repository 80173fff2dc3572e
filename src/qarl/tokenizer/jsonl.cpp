#include "qarl/tokenizer/jsonl.h"

#include <nlohmann/json.hpp>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"

namespace qarl::tokenizer {

void for_each_jsonl_line(const std::string& path,
                         const std::function<void(const nlohmann::json&, size_t)>& f) {
  std::string text = read_file(path);
  size_t line = 0;
  for (size_t at = 0; at < text.size();) {
    size_t nl = text.find('\n', at);
    size_t end = nl == std::string::npos ? text.size() : nl;
    std::string_view s(text.data() + at, end - at);
    at = nl == std::string::npos ? text.size() : nl + 1;
    ++line;
    if (!s.empty() && s.back() == '\r') s.remove_suffix(1);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(s);
    } catch (const nlohmann::json::exception& e) {
      throw err("line {}: not valid JSON ({})", line, e.what()).file(path);
    }
    f(j, line);
  }
}

}  // namespace qarl::tokenizer
