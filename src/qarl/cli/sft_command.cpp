// `qarl sft`: supervised fine-tuning on prompt/response pairs, used to warm-start tiny
// models. `qarl sft --model tiny --task arithmetic --out DIR` reproduces the warm start of
// the embedded default.
#include <cstdio>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "qarl/cli/command.h"
#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/core/progress.h"
#include "qarl/core/rng.h"
#include "qarl/model/model.h"
#include "qarl/rl/sft.h"
#include "qarl/rl/task.h"
#include "qarl/rl/tiny_model.h"
#include "qarl/tokenizer/tokenizer.h"

namespace {
namespace fs = std::filesystem;

struct Args {
  std::string model = "tiny", data, task, out;
  int64_t steps = 300;
  int batch = 64;
  double lr = 3e-3;
  uint64_t seed = 1234;
  int difficulty = 1;
};

QARL_REGISTER_COMMAND(
    "sft",
    "Supervised fine-tuning on JSONL {\"prompt\", \"response\"} lines (or the built-in "
    "arithmetic task); writes a checkpoint directory",
    [](CLI::App& app) {
      auto a = std::make_shared<Args>();
      app.add_option("--model", a->model, "checkpoint directory, or 'tiny' (built-in tiny model)");
      app.add_option("--data", a->data, "JSONL lines {\"prompt\": str, \"response\": str}");
      app.add_option("--task", a->task, "'arithmetic': generate examples from the built-in task");
      app.add_option("--difficulty", a->difficulty, "arithmetic difficulty 1..3");
      app.add_option("--out", a->out, "output checkpoint directory")->required();
      app.add_option("--steps", a->steps, "optimizer steps");
      app.add_option("--batch-size", a->batch, "examples per step");
      app.add_option("--lr", a->lr, "peak learning rate (AdamW, 10 warmup steps)");
      app.add_option("--seed", a->seed, "seed (tiny init and data order)");
      return [a]() -> int {
        using namespace qarl;
        if (a->data.empty() == a->task.empty())
          throw usage_err("give exactly one of --data FILE.jsonl or --task arithmetic");
        if (!a->task.empty() && a->task != "arithmetic")
          throw usage_err("unknown --task '{}' (only 'arithmetic')", a->task);
        if (fs::exists(a->out) && !fs::is_empty(a->out))
          throw usage_err("--out {} exists and is not empty", a->out);
        std::string src = a->model;
        std::string tmp_src;
        if (src == "tiny") {
          tmp_src = a->out + ".init";
          rl::write_tiny_checkpoint(tmp_src, a->seed);
          src = tmp_src;
        }
        auto tok = tokenizer::load_tokenizer(src);
        std::string eos_name = tok.config().eos_token.empty() ? "<|endoftext|>" : tok.config().eos_token;
        auto eos = tok.token_to_id(eos_name);
        if (!eos) throw err("tokenizer has no end-of-sequence token '{}'", eos_name).file(src);
        model::Model m = model::Model::load(src);

        // The example pool.
        std::vector<rl::SftExample> pool;
        std::unique_ptr<rl::ArithmeticTask> task;
        if (!a->data.empty()) {
          std::string text = read_file(a->data);
          size_t line_no = 0, pos = 0;
          while (pos < text.size()) {
            size_t end = text.find('\n', pos);
            if (end == std::string::npos) end = text.size();
            std::string line = text.substr(pos, end - pos);
            pos = end + 1;
            ++line_no;
            if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
            nlohmann::json j;
            try {
              j = nlohmann::json::parse(line);
            } catch (const std::exception& e) {
              throw err("line {}: not JSON: {}", line_no, e.what()).file(a->data);
            }
            if (!j.is_object() || !j.contains("prompt") || !j.contains("response") ||
                !j["prompt"].is_string() || !j["response"].is_string())
              throw err("line {}: expected {{\"prompt\": str, \"response\": str}}", line_no).file(a->data);
            rl::SftExample e{tok.encode(j["prompt"].get<std::string>()),
                             tok.encode(j["response"].get<std::string>())};
            e.response.push_back(*eos);
            if (e.prompt.empty()) throw err("line {}: empty prompt", line_no).file(a->data);
            pool.push_back(std::move(e));
          }
          if (pool.empty()) throw err("no examples").file(a->data);
        } else {
          task = std::make_unique<rl::ArithmeticTask>(a->seed ^ 0x5f5f5f5fULL, a->difficulty);
        }

        rl::SftOptions o;
        o.steps = a->steps;
        o.batch_size = a->batch;
        o.lr = a->lr;
        ProgressBar bar("sft", o.steps);
        SequentialRng rng(a->seed, 3);
        rl::sft_train(m, o, [&](int64_t step) {
          std::vector<rl::SftExample> ex;
          for (int i = 0; i < o.batch_size; ++i) {
            if (task) {
              auto p = task->get(uint64_t(step) * uint64_t(o.batch_size) + uint64_t(i));
              rl::SftExample e{tok.encode(p.prompt), tok.encode(p.answer)};
              e.response.push_back(*eos);
              ex.push_back(std::move(e));
            } else {
              ex.push_back(pool[rng.below(pool.size())]);
            }
          }
          return ex;
        }, [&](const rl::SftStepInfo& i) { bar.update(i.step, fmt::format("loss {:.4f}", i.loss)); });
        bar.finish();
        std::string tmp = a->out + ".tmp";
        fs::remove_all(tmp);
        m.save(tmp);
        for (const char* f : {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                              "chat_template.jinja"})
          if (fs::exists(fs::path(src) / f)) fs::copy_file(fs::path(src) / f, fs::path(tmp) / f);
        fs::remove_all(a->out);
        fs::rename(tmp, a->out);
        if (!tmp_src.empty()) fs::remove_all(tmp_src);
        std::printf("wrote %s\n", a->out.c_str());
        return 0;
      };
    });

}  // namespace
