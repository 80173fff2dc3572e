#include "qarl/tokenizer/chat.h"

#include <ctime>
#include <regex>

#include <nlohmann/json.hpp>

#include "qarl/core/error.h"
#include "qarl/tokenizer/added_tokens.h"
#include "qarl/tokenizer/tokenizer.h"
#include "qarl/tokenizer/utf8.h"

namespace qarl::tokenizer {

namespace {
const char* kRawTextHint =
    "qarl recognises Qwen ChatML (<|im_start|>) and Llama 3 (<|start_header_id|>) templates "
    "only; format the prompt yourself and pass it as raw text ({\"text\": ...} prompts)";

bool contains(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

// Python's str.strip() / lstrip / rstrip with a character set or whitespace.
bool py_space(uint32_t cp) { return is_unicode_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F); }
std::string py_strip(const std::string& s, bool left, bool right) {
  size_t b = 0, e = s.size();
  while (left && b < e) {
    uint32_t cp;
    int n = decode_utf8(s, b, &cp);
    if (!py_space(cp)) break;
    b += n;
  }
  while (right && e > b) {
    size_t p = e - 1;
    while (p > b && (uint8_t(s[p]) & 0xC0) == 0x80) --p;
    uint32_t cp;
    decode_utf8(s, p, &cp);
    if (!py_space(cp)) break;
    e = p;
  }
  return s.substr(b, e - b);
}
std::string strip_newlines(const std::string& s, bool left, bool right) {
  size_t b = 0, e = s.size();
  while (left && b < e && s[b] == '\n') ++b;
  while (right && e > b && s[e - 1] == '\n') --e;
  return s.substr(b, e - b);
}

std::string render_qwen(const ChatTemplate& t, const std::vector<ChatMessage>& msgs,
                        const ChatOptions& o) {
  std::string out;
  bool first_is_system = !msgs.empty() && msgs[0].role == "system";
  if (first_is_system)
    out += "<|im_start|>system\n" + msgs[0].content + "<|im_end|>\n";
  else if (!t.default_system.empty())
    out += "<|im_start|>system\n" + t.default_system + "<|im_end|>\n";
  // Qwen3: the last user turn that is not a tool response; assistant turns after it keep
  // their reasoning.
  long last_query = long(msgs.size()) - 1;
  for (long i = long(msgs.size()) - 1; i >= 0; --i) {
    const auto& c = msgs[i].content;
    bool tool_response = c.rfind("<tool_response>", 0) == 0 && c.size() >= 16 &&
                         c.compare(c.size() - 16, 16, "</tool_response>") == 0;
    if (msgs[i].role == "user" && !tool_response) {
      last_query = i;
      break;
    }
  }
  for (size_t i = 0; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    bool last = i + 1 == msgs.size();
    if (m.role == "user" || (m.role == "system" && i > 0)) {
      out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    } else if (m.role == "system") {
      // first message: rendered above
    } else if (m.role == "assistant") {
      std::string content = m.content;
      if (!t.qwen3_thinking) {
        out += "<|im_start|>assistant\n" + content + "<|im_end|>\n";
        continue;
      }
      std::string reasoning;
      size_t close = content.find("</think>");
      if (close != std::string::npos) {
        std::string before = content.substr(0, close);
        size_t last_close = content.rfind("</think>");
        content = strip_newlines(content.substr(last_close + 8), true, false);
        before = strip_newlines(before, false, true);
        size_t open = before.rfind("<think>");
        reasoning = strip_newlines(open == std::string::npos ? before : before.substr(open + 7), true, false);
      }
      if (long(i) > last_query && (last || !reasoning.empty()))
        out += "<|im_start|>assistant\n<think>\n" + strip_newlines(reasoning, true, true) +
               "\n</think>\n\n" + strip_newlines(content, true, false);
      else
        out += "<|im_start|>assistant\n" + content;
      out += "<|im_end|>\n";
    } else if (m.role == "tool") {
      if (i == 0 || msgs[i - 1].role != "tool") out += "<|im_start|>user";
      out += "\n<tool_response>\n" + m.content + "\n</tool_response>";
      if (last || msgs[i + 1].role != "tool") out += "<|im_end|>\n";
    } else {
      throw err("chat message {}: role \"{}\" is not one of system, user, assistant, tool", i, m.role);
    }
  }
  if (o.add_generation_prompt) {
    out += "<|im_start|>assistant\n";
    if (t.qwen3_thinking && o.enable_thinking.has_value() && !*o.enable_thinking)
      out += "<think>\n\n</think>\n\n";
  }
  return out;
}

std::string render_llama3(const ChatTemplate& t, const std::vector<ChatMessage>& msgs,
                          const ChatOptions& o) {
  auto block = [](const std::string& role, const std::string& content) {
    return "<|start_header_id|>" + role + "<|end_header_id|>\n\n" + py_strip(content, true, true) +
           "<|eot_id|>";
  };
  std::string out = t.bos_token;
  size_t start = 0;
  if (t.llama_dated_system) {
    std::string system;
    if (!msgs.empty() && msgs[0].role == "system") {
      system = py_strip(msgs[0].content, true, true);
      start = 1;
    }
    std::string date = t.llama_default_date;
    if (o.date_string) {
      date = *o.date_string;
    } else if (t.llama_date_from_clock) {
      char buf[32];
      std::time_t now = std::time(nullptr);
      std::tm tm{};
      localtime_r(&now, &tm);
      std::strftime(buf, sizeof buf, "%d %b %Y", &tm);
      date = buf;
    }
    out += "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
           "Today Date: " + date + "\n\n" + system + "<|eot_id|>";
  }
  for (size_t i = start; i < msgs.size(); ++i) {
    const auto& r = msgs[i].role;
    if (r != "system" && r != "user" && r != "assistant")
      throw err("chat message {}: role \"{}\" is not supported with Llama 3 headers (system, "
                "user, assistant)", i, r);
    out += block(r, msgs[i].content);
  }
  if (o.add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}
}  // namespace

std::string ChatTemplate::describe() const {
  if (family == ChatFamily::Llama3)
    return llama_dated_system ? (llama_date_from_clock ? "Llama 3.2 headers" : "Llama 3.1 headers")
                              : "Llama 3 headers";
  if (qwen3_thinking) return "Qwen3 ChatML (thinking)";
  return default_system.empty() ? "Qwen ChatML" : "Qwen2 ChatML (default system prompt)";
}

ChatTemplate recognize_chat_template(const std::string& j) {
  ChatTemplate t;
  if (contains(j, "<|im_start|>") && contains(j, "<|im_end|>")) {
    t.family = ChatFamily::QwenChatML;
    t.qwen3_thinking = contains(j, "<think>") && contains(j, "</think>");
    // A literal default system turn: '<|im_start|>system\nYou are ...<|im_end|>\n'. In the
    // template source the newline is the two characters backslash, n.
    static const std::regex kDefault(R"(<\|im_start\|>system\\n([^'"+{}]*?)<\|im_end\|>)");
    std::smatch m;
    if (std::regex_search(j, m, kDefault)) t.default_system = m[1].str();
    return t;
  }
  if (contains(j, "<|start_header_id|>") && contains(j, "<|end_header_id|>") && contains(j, "<|eot_id|>")) {
    t.family = ChatFamily::Llama3;
    t.llama_dated_system = contains(j, "Cutting Knowledge Date");
    t.llama_date_from_clock = contains(j, "strftime_now");
    static const std::regex kDate(R"re(set date_string = "([^"]+)")re");
    std::smatch m;
    if (std::regex_search(j, m, kDate)) t.llama_default_date = m[1].str();
    return t;
  }
  throw err("unrecognised chat template: {}", kRawTextHint);
}

ChatTemplate chat_template_for_model_type(const std::string& model_type) {
  ChatTemplate t;
  if (model_type == "qwen2" || model_type == "qwen2_moe") {
    t.family = ChatFamily::QwenChatML;
  } else if (model_type == "qwen3" || model_type == "qwen3_moe") {
    t.family = ChatFamily::QwenChatML;
    t.qwen3_thinking = true;
  } else if (model_type == "llama") {
    t.family = ChatFamily::Llama3;
    t.llama_dated_system = true;
  } else {
    throw err("no chat template in the checkpoint and model_type \"{}\" has no known one: {}",
              model_type, kRawTextHint);
  }
  return t;
}

ChatTemplate chat_template_for(const Tokenizer& tok, const std::string& model_type) {
  ChatTemplate t;
  try {
    t = tok.config().chat_template.empty() ? chat_template_for_model_type(model_type)
                                           : recognize_chat_template(tok.config().chat_template);
  } catch (Error& e) {
    throw e.file(tok.source());
  }
  if (t.family == ChatFamily::Llama3 && !tok.config().bos_token.empty())
    t.bos_token = tok.config().bos_token;
  return t;
}

std::string render_chat(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                        const ChatOptions& options) {
  return t.family == ChatFamily::Llama3 ? render_llama3(t, messages, options)
                                        : render_qwen(t, messages, options);
}

std::vector<ChatMessage> chat_messages_from_json(const nlohmann::json& j) {
  if (!j.is_array()) throw err("\"messages\" must be an array of {{\"role\", \"content\"}}");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& m = j[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
        !m["content"].is_string())
      throw err("messages[{}] must be {{\"role\": string, \"content\": string}}", i);
    out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return out;
}

}  // namespace qarl::tokenizer
