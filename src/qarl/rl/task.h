// Tasks with verifiable rewards: problems (a prompt, or chat messages, and a reference
// answer) from a built-in procedural arithmetic generator or from a JSONL file, and answer
// checkers that turn a completion into reward 1 or 0.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qarl::rl {

struct ChatMessage {
  std::string role, content;
};

struct Problem {
  std::string prompt;                 // plain prompt (empty when `messages` is used)
  std::vector<ChatMessage> messages;  // chat form (empty when `prompt` is used)
  std::string answer;                 // reference answer as text
};

// A source of problems. size() == 0 means unbounded (procedural).
class ProblemSource {
 public:
  virtual ~ProblemSource() = default;
  virtual uint64_t size() const = 0;
  virtual Problem get(uint64_t index) const = 0;
  virtual std::string describe() const = 0;
};

// "12+7=" style problems, a pure function of (seed, index, difficulty):
//   1: a+b, a,b in [0,9]        2: a+b or a-b, a,b in [0,99] (a >= b for -)
//   3: a+b, a-b (may be negative) or a*b with a,b in [0,99] / [0,12] for *
// The answer is the exact integer result.
class ArithmeticTask : public ProblemSource {
 public:
  ArithmeticTask(uint64_t seed, int difficulty);  // usage Error unless difficulty in 1..3
  uint64_t size() const override { return 0; }
  Problem get(uint64_t index) const override;
  std::string describe() const override;

 private:
  uint64_t seed_;
  int difficulty_;
};

// JSONL: one object per line, {"prompt": str, "answer": str|number} or
// {"messages": [{"role": str, "content": str}, ...], "answer": str|number}. Blank lines are
// skipped. Any bad line (not JSON, no answer, neither prompt nor messages, wrong types) is an
// Input Error naming the file and the 1-based line, raised before any problem is used.
class JsonlDataset : public ProblemSource {
 public:
  static std::shared_ptr<JsonlDataset> load(const std::string& path);
  static std::shared_ptr<JsonlDataset> parse(const std::string& text, const std::string& label);
  uint64_t size() const override { return problems_.size(); }
  Problem get(uint64_t index) const override;
  std::string describe() const override { return "jsonl:" + path_; }

 private:
  std::string path_;
  std::vector<Problem> problems_;
};

enum class AnswerFormat { LastNumber, Boxed };
AnswerFormat parse_answer_format(const std::string& s);  // "last_number" | "boxed"

// The answer a completion gives: the last number in it ("-12", "3.5", "1,234" -> "1234"),
// or the contents of its last \boxed{...} (balanced braces). nullopt when there is none.
std::optional<std::string> extract_answer(const std::string& completion, AnswerFormat f);

// Whether `given` matches `reference`: numerically when both parse as numbers (so "7.0"
// equals "7"), otherwise as strings with surrounding and inner whitespace removed.
bool answers_match(const std::string& given, const std::string& reference);

// Reward 1 when the extracted answer matches, else 0.
double score_completion(const std::string& completion, const std::string& reference, AnswerFormat f);

struct RewardStats {
  double reward_mean = 0;
  double accuracy = 0;  // fraction of completions with reward 1
  uint64_t count = 0;
};
RewardStats reward_stats(const std::vector<double>& rewards);

}  // namespace qarl::rl
