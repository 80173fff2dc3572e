// UTF-8 repair, the byte-level alphabet, and the pre-tokenizer split patterns (Qwen2/3,
// Llama 3, GPT-2) with PCRE2 behaving as Oniguruma does.
#include <gtest/gtest.h>

#include <random>

#include "test_util.h"

#include <nlohmann/json.hpp>

#include "qarl/tokenizer/byte_level.h"
#include "qarl/tokenizer/normalizer.h"
#include "qarl/tokenizer/pre_tokenizer.h"
#include "qarl/tokenizer/regex.h"
#include "qarl/tokenizer/utf8.h"

namespace qarl::tokenizer {
namespace {

const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::vector<std::string> split(const std::string& pattern, const std::string& text) {
  nlohmann::json j = {{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}, {"invert", false}};
  auto p = PreTokenizer::from_json(j);
  std::vector<std::string_view> words;
  std::deque<std::string> storage;
  p.split(text, &words, &storage);
  return {words.begin(), words.end()};
}
using Words = std::vector<std::string>;

TEST(Utf8, LossyReplacesMaximalSubparts) {
  // The examples of Unicode's "U+FFFD substitution of maximal subparts" (as Rust and Python do).
  const std::string R = "\xEF\xBF\xBD";
  EXPECT_EQ(utf8_lossy("a\xFF" "b"), "a" + R + "b");
  EXPECT_EQ(utf8_lossy("\xC3"), R);
  EXPECT_EQ(utf8_lossy("\xE2\x82"), R);               // truncated 3-byte sequence: one
  EXPECT_EQ(utf8_lossy("\xE2\x82" "a"), R + "a");
  EXPECT_EQ(utf8_lossy("\xF0\x9F\x98"), R);           // truncated emoji: one
  EXPECT_EQ(utf8_lossy("\xF0\x80\x80"), R + R + R);   // F0 needs 90..BF next
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), R + R + R);   // surrogate: ED needs 80..9F next
  EXPECT_EQ(utf8_lossy("\xC0\xAF"), R + R);            // overlong
  EXPECT_EQ(utf8_lossy("\xF4\x90\x80\x80"), R + R + R + R);  // above U+10FFFF
  EXPECT_EQ(utf8_lossy("\xE6\x97\xA5\xF0\x9F\x98\x80"), "\xE6\x97\xA5\xF0\x9F\x98\x80");
  EXPECT_TRUE(is_valid_utf8("日本 😀"));
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));
  EXPECT_EQ(utf8_complete_prefix("ab\xF0\x9F\x98"), 2u);
  EXPECT_EQ(utf8_complete_prefix("ab\xF0\x9F\x98\x80"), 6u);
  EXPECT_EQ(utf8_complete_prefix("ab\xFF"), 3u);  // invalid, not incomplete
}

TEST(Normalizer, NfcByRunsMatchesWholeText) {
  EXPECT_EQ(nfc("cafe\xCC\x81 A\xCC\x8A"), "caf\xC3\xA9 \xC3\x85");
  EXPECT_EQ(nfc("\xE1\x84\x80\xE1\x85\xA1"), "\xEA\xB0\x80");  // Hangul L + V -> GA
  uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  // ASCII letters, combining marks (in and out of canonical order), precomposed letters,
  // Hangul jamo, CJK: everything that composes or reorders.
  const char* pool[] = {"a", "e", "A", " ", "1", "\xCC\x81", "\xCC\x8A", "\xCC\xA3", "\xCC\x87",
                        "\xC3\xA9", "\xE1\x84\x80", "\xE1\x85\xA1", "\xE1\x86\xA8", "\xE6\x97\xA5",
                        "\xE1\xBA\x9B", "\xF0\x9F\x98\x80"};
  for (int i = 0; i < 2000; ++i) {
    std::string s;
    for (size_t n = rng() % 12; n > 0; --n) s += pool[rng() % (sizeof pool / sizeof *pool)];
    ASSERT_EQ(nfc(s), nfc_reference(s)) << s;
  }
}

TEST(ByteLevel, AlphabetRoundTrips) {
  EXPECT_EQ(byte_to_unicode(' '), "Ġ");
  EXPECT_EQ(byte_to_unicode('\n'), "Ċ");
  EXPECT_EQ(byte_to_unicode('a'), "a");
  EXPECT_EQ(byte_to_codepoint(0), 256u);
  EXPECT_EQ(byte_to_codepoint(0xAD), 0x143u);  // soft hyphen is the last shifted byte
  std::string all;
  for (int b = 0; b < 256; ++b) all += char(b);
  std::string back;
  EXPECT_TRUE(byte_level_to_bytes(bytes_to_byte_level(all), &back));
  EXPECT_EQ(back, all);
  back.clear();
  EXPECT_FALSE(byte_level_to_bytes("<think>\xE2\x80\x94", &back));  // '—' is outside: raw UTF-8
  EXPECT_EQ(back, "<think>\xE2\x80\x94");
}

TEST(PreTokenizer, QwenPattern) {
  EXPECT_EQ(split(kQwen2, "Hello world"), (Words{"Hello", " world"}));
  EXPECT_EQ(split(kQwen2, "IT'S don't"), (Words{"IT", "'S", " don", "'t"}));
  EXPECT_EQ(split(kQwen2, "12345"), (Words{"1", "2", "3", "4", "5"}));
  EXPECT_EQ(split(kQwen2, "a   b"), (Words{"a", "  ", " b"}));   // \s+(?!\S) leaves one space
  EXPECT_EQ(split(kQwen2, "x\n\n  y"), (Words{"x", "\n\n", " ", " y"}));
  EXPECT_EQ(split(kQwen2, "f(x);\n"), (Words{"f", "(x", ");\n"}));  // one non-letter may lead
  EXPECT_EQ(split(kQwen2, "日本語 テスト"), (Words{"日本語", " テスト"}));
}

TEST(PreTokenizer, OnigurumaWhitespace) {
  // Oniguruma's \s: U+0009..U+000D, U+0085, General_Category Z. Not U+FEFF, not U+180E.
  EXPECT_EQ(split(kQwen2, "para \xC2\x85next"), (Words{"para", " ", "\xC2\x85next"}));
  EXPECT_EQ(split(kQwen2, "a\xEF\xBB\xBF b"), (Words{"a", "\xEF\xBB\xBF", " b"}));
  EXPECT_EQ(split(kQwen2, "a\xE1\xA0\x8E b"), (Words{"a", "\xE1\xA0\x8E", " b"}));
  EXPECT_EQ(split(kQwen2, "a\xC2\xA0\xC2\xA0" "b"), (Words{"a", "\xC2\xA0", "\xC2\xA0" "b"}));
  EXPECT_EQ(onig_compatible_pattern(R"(a\s[^\s\p{L}]\S)"),
            R"(a[\t\n\x{0B}\f\r\x{85}\p{Z}][^\t\n\x{0B}\f\r\x{85}\p{Z}\p{L}][^\t\n\x{0B}\f\r\x{85}\p{Z}])");
  EXPECT_EQ(onig_compatible_pattern(R"([]\s]\\s)"), R"([]\t\n\x{0B}\f\r\x{85}\p{Z}]\\s)");
}

TEST(PreTokenizer, Llama3AndGpt2Patterns) {
  EXPECT_EQ(split(kLlama3, "12345 x"), (Words{"123", "45", " x"}));
  EXPECT_EQ(split(kGpt2SplitPattern, "I'm 1234 cool!!"), (Words{"I", "'m", " 1234", " cool", "!!"}));
  EXPECT_EQ(split(kGpt2SplitPattern, "IT'S"), (Words{"IT", "'", "S"}));  // GPT-2 is case-sensitive
  EXPECT_EQ(split(kGpt2SplitPattern, "a  b"), (Words{"a", " ", " b"}));
}

TEST(PreTokenizer, ByteLevelPrefixSpace) {
  nlohmann::json j = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  auto p = PreTokenizer::from_json(j);
  std::vector<std::string_view> words;
  std::deque<std::string> storage;
  p.split("hi there", &words, &storage);
  EXPECT_EQ(Words(words.begin(), words.end()), (Words{" hi", " there"}));
  words.clear();
  p.split(" hi", &words, &storage);
  EXPECT_EQ(Words(words.begin(), words.end()), (Words{" hi"}));
}

}  // namespace
}  // namespace qarl::tokenizer
