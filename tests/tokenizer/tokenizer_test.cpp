// Unit tests of the tokenizer on a hand-made tokenizer.json (tests/data/tokenizer/tiny_bpe.json)
// whose expected ids are worked out by hand in the comments. The comparisons with real
// tokenizers (Qwen3, GPT-2) are the npm reference tests (tests/tokenizer/extra.cmake).
#include <gtest/gtest.h>

#include <random>

#include <nlohmann/json.hpp>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/tokenizer/tokenizer.h"
#include "test_util.h"

namespace qarl::tokenizer {
namespace {

using Ids = std::vector<int32_t>;

nlohmann::json tiny_json() { return nlohmann::json::parse(read_file(test::data_path("tokenizer/tiny_bpe.json"))); }
Tokenizer tiny() { return load_tokenizer(test::data_path("tokenizer/tiny_bpe.json")); }
Tokenizer from(const nlohmann::json& j) { return tokenizer_from_json(j.dump(), "test.json"); }

TEST(Tokenizer, MergesByRank) {
  auto t = tiny();
  EXPECT_EQ(t.encode("abc"), (Ids{5}));  // a b -> ab (rank 0), ab c -> abc (rank 1)
  // " ab": (a, b) has rank 0 < (Ġ, a) rank 2, so ab forms first and "Ġ ab" is no merge.
  EXPECT_EQ(t.encode("abc ab"), (Ids{5, 3, 4}));
  EXPECT_EQ(t.encode("cab"), (Ids{2, 4}));  // (c, ab) is no merge
  EXPECT_EQ(t.encode("ab!"), (Ids{4, 11}));
  EXPECT_EQ(t.encode("12"), (Ids{12, 13}));  // \p{N} splits digits one by one
  EXPECT_EQ(t.encode("x"), (Ids{}));  // no symbol for 'x' and no unk_token: dropped
  EXPECT_EQ(t.encode(""), (Ids{}));
}

TEST(Tokenizer, NfcAndCaseInsensitiveContractions) {
  auto t = tiny();
  EXPECT_EQ(t.encode("\xC3\xA9"), (Ids{10}));    // é = C3 A9 = "Ã©"
  EXPECT_EQ(t.encode("e\xCC\x81"), (Ids{10}));   // e + U+0301 composes to é first
  EXPECT_EQ(t.encode("'s"), (Ids{17}));
  EXPECT_EQ(t.encode("'S"), (Ids{19}));  // (?i:'s) keeps "'S" one word; else "'" and "S"
}

TEST(Tokenizer, AddedTokens) {
  auto t = tiny();
  EXPECT_EQ(t.encode("<s>abc</s>"), (Ids{20, 5, 23}));
  EXPECT_EQ(t.encode("<s>x"), (Ids{24}));        // leftmost-longest
  EXPECT_EQ(t.encode("<s>y"), (Ids{20}));
  EXPECT_EQ(t.encode("ab  <mask>"), (Ids{4, 21}));  // lstrip swallows "  "
  EXPECT_EQ(t.encode("ab  "), (Ids{4, 3, 3}));
  EXPECT_EQ(t.encode("</s>  ab"), (Ids{23, 4}));    // rstrip swallows "  "
  EXPECT_EQ(t.encode("abab"), (Ids{22}));
  EXPECT_EQ(t.encode("abab!"), (Ids{22, 11}));
  EXPECT_EQ(t.encode("cabab"), (Ids{2, 4, 4}));  // single_word: inside a word, no match
  EXPECT_EQ(t.encode("ababc"), (Ids{4, 5}));
  // Word characters are Rust regex's \w: a combining mark is one, '½' (No) is not.
  EXPECT_EQ(t.encode("abab\xCC\x81"), (Ids{4, 4}));  // U+0301 has no vocabulary symbol
  EXPECT_EQ(t.encode("abab\xC2\xBD"), (Ids{22}));
  EXPECT_TRUE(t.is_special(20));
  EXPECT_FALSE(t.is_special(22));
  EXPECT_EQ(t.token_to_id("<mask>"), 21);
  EXPECT_EQ(t.id_to_token(7), "Ġab");
}

TEST(Tokenizer, PostProcessorTemplate) {
  auto t = tiny();
  EXPECT_EQ(t.encode("ab", true), (Ids{20, 4, 23}));
  EXPECT_EQ(t.encode("", true), (Ids{20, 23}));
}

TEST(Tokenizer, Decode) {
  auto t = tiny();
  EXPECT_EQ(t.decode(Ids{5, 3, 4}), "abc ab");
  EXPECT_EQ(t.decode(Ids{20, 5, 23}), "<s>abc</s>");
  EXPECT_EQ(t.decode(Ids{20, 5, 23}, true), "abc");
  EXPECT_EQ(t.decode(Ids{8, 9}), "\xC3\xA9");
  EXPECT_EQ(t.decode(Ids{8}), "\xEF\xBF\xBD");            // lone lead byte -> U+FFFD
  EXPECT_EQ(t.decode(Ids{10, 8}), "\xC3\xA9\xEF\xBF\xBD");
  EXPECT_EQ(t.decode(Ids{999, -1, 4}), "ab");               // ids no token has are skipped
}

TEST(Tokenizer, MergeFormsAndIgnoreMerges) {
  auto j = tiny_json();
  auto pairs = nlohmann::json::array();
  for (const auto& m : j["model"]["merges"]) {
    std::string s = m.get<std::string>();
    pairs.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  auto jp = j;
  jp["model"]["merges"] = pairs;
  auto a = from(j), b = from(jp);
  for (const char* s : {"abc ab", "cab", "ababc", "'s 'S", "\xC3\xA9!"}) EXPECT_EQ(a.encode(s), b.encode(s)) << s;

  j["model"]["merges"] = {"a b"};
  EXPECT_EQ(from(j).encode("abc"), (Ids{4, 2}));
  j["model"]["ignore_merges"] = true;  // a word that is in the vocabulary is taken whole
  EXPECT_EQ(from(j).encode("abc"), (Ids{5}));
}

void expect_error(const nlohmann::json& j, const std::string& needle);

TEST(Tokenizer, UnkToken) {
  auto j = tiny_json();
  j["model"]["unk_token"] = "!";
  EXPECT_EQ(from(j).encode("axyb"), (Ids{0, 11, 11, 1}));  // each unknown byte is unk
  j["model"]["fuse_unk"] = true;
  EXPECT_EQ(from(j).encode("axyb"), (Ids{0, 11, 1}));      // consecutive ones fused
  j["model"]["unk_token"] = "<unk>";
  expect_error(j, "unk_token \"<unk>\"");
}

void expect_error(const nlohmann::json& j, const std::string& needle) {
  try {
    from(j);
    ADD_FAILURE() << "no error for " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("test.json"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, UnsupportedComponentsAreNamed) {
  auto j = tiny_json();
  j["model"]["type"] = "WordPiece";
  expect_error(j, "WordPiece");
  j = tiny_json();
  j["normalizer"] = {{"type", "NFKC"}};
  expect_error(j, "NFKC");
  j = tiny_json();
  j["pre_tokenizer"] = {{"type", "Metaspace"}};
  expect_error(j, "Metaspace");
  j = tiny_json();
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "MergedWithPrevious";
  expect_error(j, "MergedWithPrevious");
  j = tiny_json();
  j["decoder"] = {{"type", "WordPiece"}};
  expect_error(j, "decoder type \"WordPiece\"");
  j = tiny_json();
  j["post_processor"] = {{"type", "BertProcessing"}};
  expect_error(j, "BertProcessing");
  j = tiny_json();
  j["model"]["merges"].push_back("a q");
  expect_error(j, "\"q\" is not in the vocabulary");
  j = tiny_json();
  j["model"]["byte_fallback"] = true;
  expect_error(j, "byte_fallback");
  j = tiny_json();
  j["pre_tokenizer"] = nullptr;
  expect_error(j, "ByteLevel");
  EXPECT_THROW(tokenizer_from_json("{not json", "x.json"), Error);
  EXPECT_THROW(tiny().encode("bad \xFF utf8"), Error);
  EXPECT_THROW(load_tokenizer(test::data_path("tokenizer")), Error);  // no tokenizer.json there
}

// The heap merge loop (with its cache) against the plain O(n^2) loop, on random merge tables
// over a small alphabet, where many merges compete.
TEST(Tokenizer, HeapMergesMatchReferenceLoop) {
  uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto j = tiny_json();
  nlohmann::json vocab = nlohmann::json::object();
  std::vector<std::string> toks;
  for (const char* c : {"a", "b", "c", "d", "e"}) {
    vocab[c] = int(toks.size());
    toks.push_back(c);
  }
  nlohmann::json merges = nlohmann::json::array();
  for (int k = 0; k < 400 && merges.size() < 150; ++k) {
    const std::string x = toks[rng() % toks.size()];
    const std::string y = toks[rng() % toks.size()];
    if (vocab.contains(x + y) || (x + y).size() > 12) continue;
    vocab[x + y] = int(toks.size());
    toks.push_back(x + y);
    merges.push_back(x + " " + y);
  }
  j["model"]["vocab"] = vocab;
  j["model"]["merges"] = merges;
  j["added_tokens"] = nlohmann::json::array();
  j["post_processor"] = nullptr;
  auto t = from(j);
  for (int i = 0; i < 500; ++i) {
    std::string w;
    for (size_t n = 1 + rng() % 60; n > 0; --n) w += char('a' + rng() % 5);
    ASSERT_EQ(t.encode(w), t.encode_word_reference(w)) << w;
    ASSERT_EQ(t.encode(w), t.encode(w)) << w;  // second time from the cache
    ASSERT_EQ(t.decode(t.encode(w)), w);
  }
}

TEST(Tokenizer, Gpt2Files) {
  test::TempDir d;
  // vocab.json + merges.txt with a "#version" header line and a CRLF line.
  write_file_atomic(d.file("vocab.json"),
                    R"({"h": 0, "i": 1, "Ġ": 2, "hi": 3, "Ġhi": 4, "!": 5, "<|endoftext|>": 6})");
  write_file_atomic(d.file("merges.txt"), "#version: 0.2\nh i\r\nĠ hi\n");
  Tokenizer t = load_tokenizer(d.path());
  EXPECT_EQ(t.encode("hi hi!"), (Ids{3, 4, 5}));
  EXPECT_EQ(t.encode("hi<|endoftext|>"), (Ids{3, 6}));  // <|endoftext|> becomes special
  EXPECT_EQ(t.decode(Ids{3, 4, 6}, true), "hi hi");
  write_file_atomic(d.file("added_tokens.json"), R"({"hi!": 7})");  // non-special added token
  t = load_tokenizer(d.path());
  EXPECT_EQ(t.encode("hi hi!"), (Ids{3, 2, 7}));
  EXPECT_EQ(t.decode(Ids{7, 6}, true), "hi!");  // <|endoftext|> still special
  write_file_atomic(d.file("merges.txt"), "#version: 0.2\nh i x\n");
  try {
    load_tokenizer(d.path());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("merges.txt"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, TokenizerConfig) {
  test::TempDir d;
  write_file_atomic(d.file("tokenizer.json"), read_file(test::data_path("tokenizer/tiny_bpe.json")));
  write_file_atomic(d.file("tokenizer_config.json"),
                    R"({"eos_token": {"content": "</s>"}, "bos_token": "<s>",
                        "clean_up_tokenization_spaces": true, "chat_template": "T"})");
  auto t = load_tokenizer(d.path());
  EXPECT_EQ(t.config().eos_token, "</s>");
  EXPECT_EQ(t.config().bos_token, "<s>");
  EXPECT_EQ(t.config().chat_template, "T");
  EXPECT_EQ(t.decode(Ids{4, 3, 11}), "ab!");  // " !" -> "!" with clean_up_tokenization_spaces
  EXPECT_EQ(clean_up_tokenization("a . b ? c ' d do n't I 'm"), "a. b? c'd don't I'm");
}

}  // namespace
}  // namespace qarl::tokenizer
