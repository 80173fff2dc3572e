// `qarl tokenize`: text (one JSON string per line) -> token ids ({"ids": [...]} per line).
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
        bool add_special = false;
      };
      auto o = std::make_shared<Opts>();
      app.add_option("--tokenizer", o->tokenizer, "tokenizer.json, or a checkpoint directory")->required();
      app.add_option("--in", o->in, "input JSONL: one JSON string per line")->required();
      app.add_option("--out", o->out, "output JSONL: {\"ids\": [...]} per line")->required();
      app.add_flag("--add-special-tokens", o->add_special,
                   "apply the post-processor (e.g. Llama 3's <|begin_of_text|>)");
      return [o] {
        using namespace qarl;
        auto tok = tokenizer::load_tokenizer(o->tokenizer);
        std::string out;
        tokenizer::for_each_jsonl_line(o->in, [&](const nlohmann::json& j, size_t line) {
          if (!j.is_string()) throw err("line {}: expected a JSON string", line).file(o->in);
          std::vector<int32_t> ids;
          try {
            ids = tok.encode(j.get_ref<const std::string&>(), o->add_special);
          } catch (Error& e) {
            throw err("line {}: {}", line, e.message()).file(o->in);
          }
          out += nlohmann::json{{"ids", ids}}.dump();
          out += '\n';
        });
        write_file_atomic(o->out, out);
        return 0;
      };
    }
QARL_REGISTER_COMMAND("tokenize", "Encode text to token ids with a checkpoint's tokenizer", setup);

}  // namespace
