// Chat formatting for the families qarl serves, without a Jinja engine: the checkpoint's
// chat_template (tokenizer_config.json or chat_template.jinja) is *recognised* as Qwen ChatML
// (Qwen2, Qwen2.5, Qwen3 with <think>) or Llama 3 headers (3.0, or 3.1+ with the dated
// system block), then rendered natively the way that template renders plain text messages.
// An unrecognised template is an Error telling the user to pass raw text prompts instead.
//
// The rendered prompt already holds any BOS (Llama 3's <|begin_of_text|>): encode it with
// add_special_tokens = false, as transformers' apply_chat_template(tokenize=True) does.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace qarl::tokenizer {

class Tokenizer;

struct ChatMessage {
  std::string role;  // system | user | assistant | tool
  std::string content;
};

enum class ChatFamily { QwenChatML, Llama3 };

struct ChatTemplate {
  ChatFamily family = ChatFamily::QwenChatML;
  // Qwen: system prompt the template inserts when the first message is not a system one
  // (Qwen2 / Qwen2.5 instruct); empty for none (Qwen3).
  std::string default_system;
  bool qwen3_thinking = false;  // Qwen3: <think> blocks for assistant turns after the last query
  // Llama 3.1+: a system block "Cutting Knowledge Date: December 2023\nToday Date: ..." always.
  bool llama_dated_system = false;
  bool llama_date_from_clock = false;  // Llama 3.2+: strftime_now("%d %b %Y"), else the default
  std::string llama_default_date = "26 Jul 2024";
  std::string bos_token = "<|begin_of_text|>";
  std::string describe() const;  // "Qwen3 ChatML (thinking)", "Llama 3.1 headers", ...
};

struct ChatOptions {
  bool add_generation_prompt = true;
  // Qwen3: false appends an empty "<think>\n\n</think>\n\n" to the generation prompt.
  std::optional<bool> enable_thinking;
  // Llama 3.1+: the "Today Date" line; default: the template's (see llama_date_from_clock).
  std::optional<std::string> date_string;
};

// Recognises a Jinja chat template; Error (saying how to pass raw text) if it is neither family.
ChatTemplate recognize_chat_template(const std::string& jinja);
// For checkpoints without a chat_template: from config.json's model_type ("qwen2", "qwen3",
// "llama"); Error for others.
ChatTemplate chat_template_for_model_type(const std::string& model_type);
// The checkpoint's template if it has one, else by model_type (may be empty: then Error).
ChatTemplate chat_template_for(const Tokenizer& tokenizer, const std::string& model_type = "");

std::string render_chat(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                        const ChatOptions& options = {});

// Parses [{"role": ..., "content": ...}, ...]; Error naming the bad element.
std::vector<ChatMessage> chat_messages_from_json(const nlohmann::json& j);

}  // namespace qarl::tokenizer
