// Reading JSONL files line by line with errors that name the file and the line.
#pragma once
#include <functional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace qarl::tokenizer {

// Calls f(value, line_number) for every line (1-based). A final newline is allowed; any other
// empty or unparsable line is an Error naming the file and line.
void for_each_jsonl_line(const std::string& path,
                         const std::function<void(const nlohmann::json&, size_t)>& f);

}  // namespace qarl::tokenizer
