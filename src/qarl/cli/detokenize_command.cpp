// `qarl detokenize`: token ids ({"ids": [...]} per line) -> text ({"text": ...} per line).
#include <string>

#include <nlohmann/json.hpp>

#include "qarl/cli/command.h"
#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/tokenizer/jsonl.h"
#include "qarl/tokenizer/tokenizer.h"

namespace {
std::function<int()> setup(CLI::App& app) {
      struct Opts {
        std::string tokenizer, in, out;
        bool skip_special = false;
      };
      auto o = std::make_shared<Opts>();
      app.add_option("--tokenizer", o->tokenizer, "tokenizer.json, or a checkpoint directory")->required();
      app.add_option("--in", o->in, "input JSONL: {\"ids\": [...]} per line")->required();
      app.add_option("--out", o->out, "output JSONL: {\"text\": ...} per line")->required();
      app.add_flag("--skip-special-tokens", o->skip_special, "leave special tokens out of the text");
      return [o] {
        using namespace qarl;
        auto tok = tokenizer::load_tokenizer(o->tokenizer);
        std::string out;
        tokenizer::for_each_jsonl_line(o->in, [&](const nlohmann::json& j, size_t line) {
          if (!j.is_object() || !j.contains("ids") || !j["ids"].is_array())
            throw err("line {}: expected {{\"ids\": [...]}}", line).file(o->in);
          std::vector<int32_t> ids;
          for (const auto& v : j["ids"]) {
            if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
              throw err("line {}: ids must be non-negative integers, got {}", line, v.dump()).file(o->in);
            ids.push_back(v.get<int32_t>());
          }
          // dump() with replacement keeps the output valid JSON; decode() already repaired UTF-8.
          out += nlohmann::json{{"text", tok.decode(ids, o->skip_special)}}.dump();
          out += '\n';
        });
        write_file_atomic(o->out, out);
        return 0;
      };
    }
QARL_REGISTER_COMMAND("detokenize", "Decode token ids to text with a checkpoint's tokenizer", setup);

}  // namespace
