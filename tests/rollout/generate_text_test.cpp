// qarl generate with text and chat prompts, the "text" output, and stop strings (engine
// stop_checker + CLI --stop), on a tiny checkpoint that ships a real tokenizer.json.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "qarl/core/fs.h"
#include "qarl/model/model.h"
#include "qarl/rl/tiny_model.h"
#include "qarl/rollout/engine.h"
#include "qarl/tokenizer/tokenizer.h"
#include "test_util.h"

namespace qarl {
namespace {
using nlohmann::json;

std::vector<json> read_lines(const std::string& path) {
  std::vector<json> v;
  std::string text = read_file(path);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t e = text.find('\n', pos);
    v.push_back(json::parse(text.substr(pos, e - pos)));
    pos = e + 1;
  }
  return v;
}

TEST(GenerateText, EngineStopCheckerFinishesEachSampleOnItsOwnTokens) {
  test::TempDir d;
  rl::write_tiny_checkpoint(d.path() + "/m", test::fresh_seed());
  auto m = model::Model::load(d.path() + "/m");
  rollout::EngineConfig ec;
  ec.kv_cache_bytes = 1 << 20;
  rollout::Engine engine(m, ec);
  rollout::GenRequest r;
  r.prompt = {49, 43, 50, 61};  // "1+2="
  r.params.max_new_tokens = 10;
  r.params.n = 3;
  r.params.seed = 7;
  // Stops after the 4th generated token of each sample (a checker with per-sample state).
  r.params.stop_checker = [] {
    auto count = std::make_shared<int>(0);
    return std::function<bool(int32_t)>([count](int32_t) { return ++*count == 4; });
  };
  auto outs = engine.generate({r});
  ASSERT_EQ(outs.size(), 3u);
  for (const auto& o : outs) {
    EXPECT_EQ(o.tokens.size(), 4u);
    EXPECT_EQ(o.finish_reason, "stop");
  }
}

TEST(GenerateText, TextAndChatPromptsAndStopStrings) {
  test::TempDir d;
  const std::string model = d.path() + "/m";
  rl::write_tiny_checkpoint(model, test::fresh_seed());
  write_file_atomic(d.file("p.jsonl"),
                    "{\"text\": \"12+7=\"}\n"
                    "{\"messages\": [{\"role\": \"user\", \"content\": \"3+4=\"}]}\n"
                    "{\"text\": 5}\n");
  auto r = test::run_qarl("generate --model " + model + " --prompts " + d.file("p.jsonl") +
                          " --out " + d.file("o.jsonl") +
                          " --temperature 0 --max-new-tokens 24 --ignore-eos");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = read_lines(d.file("o.jsonl"));
  ASSERT_EQ(lines.size(), 3u);
  auto tok = tokenizer::load_tokenizer(model);
  EXPECT_EQ(lines[0]["prompt_tokens"].get<std::vector<int32_t>>(), tok.encode("12+7="));
  for (int i = 0; i < 2; ++i) {
    auto ids = lines[i]["tokens"].get<std::vector<int32_t>>();
    EXPECT_EQ(lines[i]["text"].get<std::string>(), tok.decode(ids, true));
  }
  // The chat prompt was rendered with the ChatML template and the generation prompt.
  auto chat_prompt = tok.decode(lines[1]["prompt_tokens"].get<std::vector<int32_t>>(), false);
  EXPECT_NE(chat_prompt.find("<|im_start|>assistant\n"), std::string::npos) << chat_prompt;
  EXPECT_NE(lines[2]["error"].get<std::string>().find("line 3"), std::string::npos);

  // A stop string taken from the middle of the greedy completion cuts it there.
  std::string full = lines[0]["text"].get<std::string>();
  auto full_ids = lines[0]["tokens"].get<std::vector<int32_t>>();
  ASSERT_GE(full.size(), 6u);
  std::string stop = full.substr(3, 2);
  size_t at = full.find(stop);
  write_file_atomic(d.file("q.jsonl"), "{\"text\": \"12+7=\"}\n");
  r = test::run_qarl("generate --model " + model + " --prompts " + d.file("q.jsonl") + " --out " +
                     d.file("s.jsonl") + " --temperature 0 --max-new-tokens 24 --ignore-eos --stop '" +
                     stop + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto s = read_lines(d.file("s.jsonl"));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0]["finish_reason"], "stop");
  EXPECT_EQ(s[0]["text"].get<std::string>(), full.substr(0, at));
  auto ids = s[0]["tokens"].get<std::vector<int32_t>>();
  ASSERT_LE(ids.size(), full_ids.size());
  EXPECT_TRUE(std::equal(ids.begin(), ids.end(), full_ids.begin()));
  EXPECT_EQ(s[0]["logprobs"].size(), ids.size());
}

}  // namespace
}  // namespace qarl
