#include <gtest/gtest.h>

#include <set>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/rl/data_iterator.h"
#include "qarl/rl/task.h"
#include "test_util.h"

using namespace qarl::rl;

namespace {
// Evaluates "a<op>b=" independently of the generator.
int64_t eval_prompt(const std::string& p) {
  size_t i = 0;
  int64_t a = 0, b = 0;
  while (std::isdigit((unsigned char)p[i])) a = a * 10 + (p[i++] - '0');
  const char op = p[i++];
  while (std::isdigit((unsigned char)p[i])) b = b * 10 + (p[i++] - '0');
  EXPECT_EQ(p.substr(i), "=");
  return op == '+' ? a + b : op == '-' ? a - b : a * b;
}
}  // namespace

TEST(ArithmeticTask, DeterministicAndCorrect) {
  const uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (int d = 1; d <= 3; ++d) {
    ArithmeticTask t(seed, d), again(seed, d), other(seed + 1, d);
    std::set<std::string> distinct;
    int differ = 0;
    std::set<char> ops;
    for (uint64_t i = 0; i < 200; ++i) {
      const Problem p = t.get(i);
      EXPECT_EQ(p.prompt, again.get(i).prompt);
      EXPECT_EQ(p.answer, std::to_string(eval_prompt(p.prompt))) << p.prompt;
      differ += p.prompt != other.get(i).prompt;
      distinct.insert(p.prompt);
      for (char c : p.prompt) if (c == '+' || c == '-' || c == '*') ops.insert(c);
      if (d == 1) { EXPECT_LE(p.prompt.size(), 4u); }
      if (d == 2) { EXPECT_GE(std::stoll(p.answer), 0); }
    }
    EXPECT_GT(distinct.size(), 50u);
    EXPECT_GT(differ, 150);
    EXPECT_EQ(ops.size(), size_t(d));
  }
  EXPECT_EQ(ArithmeticTask(7, 1).size(), 0u);
  EXPECT_THROW(ArithmeticTask(1, 4), qarl::Error);
}

TEST(JsonlDataset, PromptAndChatLines) {
  auto ds = JsonlDataset::parse(
      "{\"prompt\": \"2+2=\", \"answer\": \"4\"}\n\n"
      "{\"messages\": [{\"role\": \"user\", \"content\": \"3*3?\"}], \"answer\": 9}\n"
      "{\"prompt\": \"pi?\", \"answer\": 3.5}",
      "data.jsonl");
  ASSERT_EQ(ds->size(), 3u);
  EXPECT_EQ(ds->get(0).prompt, "2+2=");
  EXPECT_EQ(ds->get(0).answer, "4");
  ASSERT_EQ(ds->get(1).messages.size(), 1u);
  EXPECT_EQ(ds->get(1).messages[0].role, "user");
  EXPECT_EQ(ds->get(1).answer, "9");
  EXPECT_EQ(ds->get(2).answer, "3.5");
}

TEST(JsonlDataset, ErrorsNameFileAndLine) {
  auto expect_error = [](const std::string& text, const std::string& what) {
    try {
      JsonlDataset::parse(text, "my.jsonl");
      ADD_FAILURE() << "no error for " << text;
    } catch (const qarl::Error& e) {
      EXPECT_EQ(e.file(), "my.jsonl");
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error("{\"prompt\": \"a\", \"answer\": \"1\"}\n\n{\"prompt\": \"b\"}\n", "line 3: no \"answer\"");
  expect_error("{\"prompt\": \"a\"", "line 1: not valid JSON");
  expect_error("{\"answer\": \"1\"}", "exactly one of");
  expect_error("{\"prompt\": \"a\", \"answer\": [1]}", "string or a number");
  expect_error("{\"prompt\": \"a\", \"answr\": 1, \"answer\": 1}", "unknown key \"answr\"");
  expect_error("{\"messages\": [{\"role\": \"user\"}], \"answer\": 1}", "messages[0]");
  expect_error("\n\n", "no problems");
  qarl::test::TempDir dir;
  qarl::write_file_atomic(dir.file("d.jsonl"), "{\"prompt\": \"x\"}\n");
  try {
    JsonlDataset::load(dir.file("d.jsonl"));
    ADD_FAILURE();
  } catch (const qarl::Error& e) {
    EXPECT_EQ(e.file(), dir.file("d.jsonl"));
    EXPECT_NE(std::string(e.what()).find("line 1"), std::string::npos);
  }
}

TEST(AnswerChecker, LastNumberAndBoxed) {
  EXPECT_EQ(extract_answer("so 12+7 = 19", AnswerFormat::LastNumber), "19");
  EXPECT_EQ(extract_answer("it is -5.", AnswerFormat::LastNumber), "-5");
  EXPECT_EQ(extract_answer("x 3.25 y", AnswerFormat::LastNumber), "3.25");
  EXPECT_EQ(extract_answer("total 1,234 apples", AnswerFormat::LastNumber), "1234");
  EXPECT_EQ(extract_answer("pairs 3,4", AnswerFormat::LastNumber), "4");
  EXPECT_EQ(extract_answer("no digits", AnswerFormat::LastNumber), std::nullopt);
  EXPECT_EQ(extract_answer("a \\boxed{1} then \\boxed{\\frac{1}{2}}", AnswerFormat::Boxed), "\\frac{1}{2}");
  EXPECT_EQ(extract_answer("\\boxed{7", AnswerFormat::Boxed), std::nullopt);
  EXPECT_EQ(extract_answer("42", AnswerFormat::Boxed), std::nullopt);
  EXPECT_TRUE(answers_match("7.0", "7"));
  EXPECT_TRUE(answers_match(" x + 1", "x+1"));
  EXPECT_FALSE(answers_match("8", "7"));
  EXPECT_EQ(score_completion("19", "19", AnswerFormat::LastNumber), 1.0);
  EXPECT_EQ(score_completion("19 or 20", "19", AnswerFormat::LastNumber), 0.0);
  EXPECT_EQ(score_completion("\\boxed{ 19 }", "19", AnswerFormat::Boxed), 1.0);
  auto s = reward_stats({1, 0, 1, 1});
  EXPECT_DOUBLE_EQ(s.reward_mean, 0.75);
  EXPECT_DOUBLE_EQ(s.accuracy, 0.75);
  EXPECT_EQ(parse_answer_format("boxed"), AnswerFormat::Boxed);
  EXPECT_THROW(parse_answer_format("first"), qarl::Error);
}

TEST(DataIterator, EpochsArePermutationsAndResumable) {
  const uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  DataIterator it(13, seed, true);
  std::vector<uint64_t> all = it.next_batch(39);
  for (int e = 0; e < 3; ++e) {
    std::set<uint64_t> s(all.begin() + e * 13, all.begin() + (e + 1) * 13);
    EXPECT_EQ(s.size(), 13u);
    EXPECT_EQ(*s.rbegin(), 12u);
  }
  EXPECT_NE(std::vector<uint64_t>(all.begin(), all.begin() + 13), std::vector<uint64_t>(all.begin() + 13, all.begin() + 26));
  // Resume from position 17 in a fresh iterator: the same continuation.
  DataIterator resumed(13, seed, true);
  resumed.set_position(17);
  for (size_t i = 17; i < 39; ++i) EXPECT_EQ(resumed.next(), all[i]);
  DataIterator plain(5, seed, false);
  EXPECT_EQ(plain.next_batch(7), (std::vector<uint64_t>{0, 1, 2, 3, 4, 0, 1}));
  DataIterator unbounded(0, seed, true);
  unbounded.set_position(1000);
  EXPECT_EQ(unbounded.next(), 1000u);
}
