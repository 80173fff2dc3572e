#include "qarl/rl/task.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/core/rng.h"

namespace qarl::rl {

// ---- arithmetic ----

// The RNG stream the arithmetic task draws from (any fixed constant; keeps it apart from
// sampling and initialization streams that share the seed).
constexpr uint64_t kArithmeticStream = 0x41524954;  // "ARIT"

ArithmeticTask::ArithmeticTask(uint64_t seed, int difficulty) : seed_(seed), difficulty_(difficulty) {
  if (difficulty < 1 || difficulty > 3)
    throw usage_err("arithmetic task: difficulty must be 1, 2 or 3, got {}", difficulty);
}

std::string ArithmeticTask::describe() const {
  return fmt::format("arithmetic(seed={}, difficulty={})", seed_, difficulty_);
}

Problem ArithmeticTask::get(uint64_t index) const {
  CounterRng rng(seed_, kArithmeticStream);
  auto below = [&](uint64_t k, uint32_t n) { return int64_t(rng.u32(index, k) % n); };
  int64_t a = 0, b = 0, result = 0;
  char op = '+';
  switch (difficulty_) {
    case 1: a = below(0, 10); b = below(1, 10); break;
    case 2:
      a = below(0, 100); b = below(1, 100);
      op = below(2, 2) ? '-' : '+';
      if (op == '-' && a < b) std::swap(a, b);
      break;
    default: {
      const int64_t k = below(2, 3);
      op = k == 0 ? '+' : k == 1 ? '-' : '*';
      const uint32_t n = op == '*' ? 13 : 100;
      a = below(0, n); b = below(1, n);
    }
  }
  result = op == '+' ? a + b : op == '-' ? a - b : a * b;
  Problem p;
  p.prompt = fmt::format("{}{}{}=", a, op, b);
  p.answer = std::to_string(result);
  return p;
}

// ---- JSONL ----

namespace {
std::string answer_text(const nlohmann::json& a) {
  if (a.is_string()) return a.get<std::string>();
  if (a.is_number_integer()) return std::to_string(a.get<int64_t>());
  if (a.is_number()) return a.dump();
  throw std::runtime_error("\"answer\" must be a string or a number");
}
}  // namespace

std::shared_ptr<JsonlDataset> JsonlDataset::load(const std::string& path) {
  return parse(read_file(path), path);
}

std::shared_ptr<JsonlDataset> JsonlDataset::parse(const std::string& text, const std::string& label) {
  auto ds = std::make_shared<JsonlDataset>();
  ds->path_ = label;
  size_t line_no = 0, pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      if (end == text.size()) break;
      continue;
    }
    auto bad = [&](const std::string& why) {
      return err("line {}: {}", line_no, why).file(label);
    };
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw bad(std::string("not valid JSON: ") + e.what());
    }
    if (!j.is_object()) throw bad("expected a JSON object");
    if (!j.contains("answer")) throw bad("no \"answer\"");
    Problem p;
    try {
      p.answer = answer_text(j["answer"]);
    } catch (const std::runtime_error& e) {
      throw bad(e.what());
    }
    for (auto it = j.begin(); it != j.end(); ++it)
      if (it.key() != "prompt" && it.key() != "messages" && it.key() != "answer")
        throw bad("unknown key \"" + it.key() + "\" (expected prompt or messages, and answer)");
    const bool has_prompt = j.contains("prompt"), has_messages = j.contains("messages");
    if (has_prompt == has_messages) throw bad("needs exactly one of \"prompt\" and \"messages\"");
    if (has_prompt) {
      if (!j["prompt"].is_string()) throw bad("\"prompt\" must be a string");
      p.prompt = j["prompt"].get<std::string>();
    } else {
      const auto& ms = j["messages"];
      if (!ms.is_array() || ms.empty()) throw bad("\"messages\" must be a non-empty array");
      for (size_t k = 0; k < ms.size(); ++k) {
        const auto& m = ms[k];
        if (!m.is_object() || !m.contains("role") || !m.contains("content") ||
            !m["role"].is_string() || !m["content"].is_string())
          throw bad(fmt::format("messages[{}] must be {{\"role\": str, \"content\": str}}", k));
        p.messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
      }
    }
    ds->problems_.push_back(std::move(p));
    if (end == text.size()) break;
  }
  if (ds->problems_.empty()) throw err("dataset has no problems").file(label);
  return ds;
}

Problem JsonlDataset::get(uint64_t index) const {
  QARL_ASSERT(index < problems_.size(), "index {} of {}", index, problems_.size());
  return problems_[index];
}

// ---- answers ----

AnswerFormat parse_answer_format(const std::string& s) {
  if (s == "last_number") return AnswerFormat::LastNumber;
  if (s == "boxed") return AnswerFormat::Boxed;
  throw usage_err("unknown answer format '{}' (expected last_number or boxed)", s);
}

std::optional<std::string> extract_answer(const std::string& c, AnswerFormat f) {
  if (f == AnswerFormat::Boxed) {
    const std::string tag = "\\boxed{";
    size_t at = c.rfind(tag);
    if (at == std::string::npos) return std::nullopt;
    size_t i = at + tag.size();
    int depth = 1;
    std::string out;
    for (; i < c.size(); ++i) {
      if (c[i] == '{') ++depth;
      else if (c[i] == '}' && --depth == 0) return out;
      out += c[i];
    }
    return std::nullopt;  // unbalanced
  }
  // Last number: scan for maximal runs of [-]digits[,digits][.digits].
  std::optional<std::string> last;
  const auto digit = [&](size_t k) { return k < c.size() && std::isdigit((unsigned char)c[k]); };
  for (size_t i = 0; i < c.size();) {
    if (!digit(i)) { ++i; continue; }
    size_t start = i;
    if (start > 0 && c[start - 1] == '-') --start;
    std::string num = c.substr(start, i - start);
    while (i < c.size()) {
      if (digit(i)) num += c[i++];
      else if (c[i] == ',' && num.find('.') == std::string::npos && digit(i + 1) && digit(i + 2) &&
               digit(i + 3) && !digit(i + 4))
        ++i;  // thousands separator: 1,234
      else if (c[i] == '.' && digit(i + 1) && num.find('.') == std::string::npos) num += c[i++];
      else break;
    }
    last = num;
  }
  return last;
}

namespace {
std::string strip_ws(const std::string& s) {
  std::string o;
  for (char ch : s) if (!std::isspace((unsigned char)ch)) o += ch;
  return o;
}
std::optional<double> as_number(const std::string& s) {
  std::string t = strip_ws(s);
  if (t.empty()) return std::nullopt;
  double v = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || p != t.data() + t.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}
}  // namespace

bool answers_match(const std::string& given, const std::string& reference) {
  auto a = as_number(given), b = as_number(reference);
  if (a && b) return *a == *b;
  return strip_ws(given) == strip_ws(reference);
}

double score_completion(const std::string& completion, const std::string& reference, AnswerFormat f) {
  auto a = extract_answer(completion, f);
  return a && answers_match(*a, reference) ? 1.0 : 0.0;
}

RewardStats reward_stats(const std::vector<double>& rewards) {
  RewardStats s;
  s.count = rewards.size();
  if (rewards.empty()) return s;
  double sum = 0, ok = 0;
  for (double r : rewards) { sum += r; ok += (r == 1.0); }
  s.reward_mean = sum / double(rewards.size());
  s.accuracy = ok / double(rewards.size());
  return s;
}

}  // namespace qarl::rl
