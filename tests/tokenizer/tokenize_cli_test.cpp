// `qarl tokenize`, `qarl detokenize` and `qarl chat-format` end to end.
#include <gtest/gtest.h>

#include <filesystem>

#include "qarl/core/fs.h"
#include "qarl/tokenizer/tiny_tokenizer.h"
#include "test_util.h"

namespace qarl {
namespace {

TEST(TokenizeCli, RoundTripAndSpecialTokens) {
  test::TempDir d;
  std::string tok = test::data_path("tokenizer/tiny_bpe.json");
  write_file_atomic(d.file("in.jsonl"), "\"abc ab\"\n\"<s>ab\"\n\"\"\n");
  auto r = test::run_qarl("tokenize --tokenizer " + tok + " --in " + d.file("in.jsonl") + " --out " + d.file("ids.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(d.file("ids.jsonl")), "{\"ids\":[5,3,4]}\n{\"ids\":[20,4]}\n{\"ids\":[]}\n");
  r = test::run_qarl("tokenize --add-special-tokens --tokenizer " + tok + " --in " + d.file("in.jsonl") +
                     " --out " + d.file("ids2.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(d.file("ids2.jsonl")), "{\"ids\":[20,5,3,4,23]}\n{\"ids\":[20,20,4,23]}\n{\"ids\":[20,23]}\n");
  r = test::run_qarl("detokenize --tokenizer " + tok + " --in " + d.file("ids.jsonl") + " --out " + d.file("text.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(d.file("text.jsonl")), "{\"text\":\"abc ab\"}\n{\"text\":\"<s>ab\"}\n{\"text\":\"\"}\n");
  r = test::run_qarl("detokenize --skip-special-tokens --tokenizer " + tok + " --in " + d.file("ids.jsonl") +
                     " --out " + d.file("text2.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(d.file("text2.jsonl")), "{\"text\":\"abc ab\"}\n{\"text\":\"ab\"}\n{\"text\":\"\"}\n");
}

TEST(TokenizeCli, BadLinesNameFileAndLine) {
  test::TempDir d;
  std::string tok = test::data_path("tokenizer/tiny_bpe.json");
  write_file_atomic(d.file("in.jsonl"), "\"ok\"\n42\n");
  auto r = test::run_qarl("tokenize --tokenizer " + tok + " --in " + d.file("in.jsonl") + " --out " + d.file("o.jsonl"));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find(d.file("in.jsonl") + ": line 2"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(d.file("o.jsonl")));  // nothing half-written
  write_file_atomic(d.file("bad.jsonl"), "{\"ids\": [1]}\n{\"ids\": [1, -3]}\n");
  r = test::run_qarl("detokenize --tokenizer " + tok + " --in " + d.file("bad.jsonl") + " --out " + d.file("o.jsonl"));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("line 2"), std::string::npos) << r.err;
  write_file_atomic(d.file("bad.jsonl"), "{\"ids\": [1]\n");
  r = test::run_qarl("detokenize --tokenizer " + tok + " --in " + d.file("bad.jsonl") + " --out " + d.file("o.jsonl"));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("line 1: not valid JSON"), std::string::npos) << r.err;
  r = test::run_qarl("tokenize --tokenizer " + d.file("missing.json") + " --in " + d.file("in.jsonl") + " --out " + d.file("o.jsonl"));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("missing.json"), std::string::npos) << r.err;
}

TEST(TokenizeCli, ChatFormat) {
  test::TempDir d;
  tokenizer::write_tiny_tokenizer(d.file("ckpt"));
  write_file_atomic(d.file("m.jsonl"), R"({"messages": [{"role": "user", "content": "2+2"}]})" "\n");
  auto r = test::run_qarl("chat-format --tokenizer " + d.file("ckpt") + " --in " + d.file("m.jsonl") + " --out " + d.file("p.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(d.file("p.jsonl")),
            "{\"text\":\"<|im_start|>user\\n2+2<|im_end|>\\n<|im_start|>assistant\\n\"}\n");
  write_file_atomic(d.file("m.jsonl"), R"({"messages": [{"role": "user"}]})" "\n");
  r = test::run_qarl("chat-format --tokenizer " + d.file("ckpt") + " --in " + d.file("m.jsonl") + " --out " + d.file("p.jsonl"));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("line 1"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace qarl
