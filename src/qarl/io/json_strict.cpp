#include "qarl/io/json_strict.h"

#include <set>
#include <vector>

#include "qarl/core/error.h"

namespace qarl::io {

namespace {

template <typename json>
json parse_strict(std::string_view text, const std::string& label) {
  // One set of seen keys per open object; arrays push an empty marker so depth is tracked.
  std::vector<std::set<std::string>> open;
  std::string dup;
  bool too_deep = false;
  auto cb = [&](int depth, typename json::parse_event_t ev, json& parsed) -> bool {
    switch (ev) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= kMaxJsonDepth) too_deep = true;
        open.emplace_back();
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!open.empty()) open.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open.empty() && !open.back().insert(parsed.template get<std::string>()).second &&
            dup.empty())
          dup = parsed.template get<std::string>();
        break;
      default:
        break;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/true);
  } catch (const nlohmann::json::exception& e) {
    throw err("invalid JSON: {}", e.what()).file(label);
  }
  if (too_deep) throw err("JSON nested deeper than {} levels", kMaxJsonDepth).file(label);
  if (!dup.empty()) throw err("duplicate key in JSON object").file(label).key(dup);
  return j;
}

}  // namespace

nlohmann::ordered_json parse_json_strict(std::string_view text, const std::string& label) {
  return parse_strict<nlohmann::ordered_json>(text, label);
}
nlohmann::json parse_json_strict_sorted(std::string_view text, const std::string& label) {
  return parse_strict<nlohmann::json>(text, label);
}

std::string json_quote(std::string_view s) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += char(c);
        }
    }
  }
  out += '"';
  return out;
}

bool is_valid_utf8(std::string_view s) {
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) { ++i; continue; }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return false;
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      unsigned char d = s[i + k];
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

}  // namespace qarl::io
