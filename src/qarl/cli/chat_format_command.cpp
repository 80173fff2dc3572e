// `qarl chat-format`: chat messages -> prompt text with the checkpoint's chat template
// (recognised Qwen ChatML or Llama 3 headers), with the assistant generation prompt.
#include <string>

#include <nlohmann/json.hpp>

#include "qarl/cli/command.h"
#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/tokenizer/chat.h"
#include "qarl/tokenizer/jsonl.h"
#include "qarl/tokenizer/tokenizer.h"

namespace {
std::function<int()> setup(CLI::App& app) {
  struct Opts {
    std::string tokenizer, in, out, model_type, date;
    bool no_generation_prompt = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--tokenizer", o->tokenizer, "checkpoint directory or tokenizer.json")->required();
  app.add_option("--in", o->in, "input JSONL: {\"messages\": [...], \"enable_thinking\"?: bool} per line")
      ->required();
  app.add_option("--out", o->out, "output JSONL: {\"text\": prompt} per line")->required();
  app.add_option("--model-type", o->model_type,
                 "family to use when the checkpoint has no chat_template (qwen2, qwen3, llama)");
  app.add_option("--date", o->date, "Llama 3.1+ 'Today Date' line (default: the template's)");
  app.add_flag("--no-generation-prompt", o->no_generation_prompt,
               "do not end with the assistant header");
  return [o] {
    using namespace qarl;
    auto tok = tokenizer::load_tokenizer(o->tokenizer);
    tokenizer::ChatTemplate t = tokenizer::chat_template_for(tok, o->model_type);
    std::string out;
    tokenizer::for_each_jsonl_line(o->in, [&](const nlohmann::json& j, size_t line) {
      try {
        if (!j.is_object() || !j.contains("messages")) throw err("expected {{\"messages\": [...]}}");
        tokenizer::ChatOptions opt;
        opt.add_generation_prompt = !o->no_generation_prompt;
        if (j.contains("enable_thinking")) opt.enable_thinking = j["enable_thinking"].get<bool>();
        if (!o->date.empty()) opt.date_string = o->date;
        out += nlohmann::json{{"text", tokenizer::render_chat(t, tokenizer::chat_messages_from_json(j["messages"]), opt)}}.dump();
        out += '\n';
      } catch (const Error& e) {
        throw err("line {}: {}", line, e.message()).file(o->in);
      } catch (const nlohmann::json::exception& e) {
        throw err("line {}: {}", line, e.what()).file(o->in);
      }
    });
    write_file_atomic(o->out, out);
    return 0;
  };
}
QARL_REGISTER_COMMAND("chat-format", "Render chat messages to a prompt with the checkpoint's chat template", setup);
}  // namespace
