// Chat formatting, stop strings and the tiny tokenizer qarl ships with its own small models.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "qarl/core/error.h"
#include "qarl/tokenizer/chat.h"
#include "qarl/tokenizer/stop_strings.h"
#include "qarl/tokenizer/tiny_tokenizer.h"
#include "qarl/tokenizer/tokenizer.h"
#include "test_util.h"

namespace qarl::tokenizer {
namespace {

using Ids = std::vector<int32_t>;

// Fragments with the markers the recogniser looks for (the real templates are long Jinja).
const char* kQwen3Like =
    R"({%- if messages[0].role == 'system' %}{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}{%- endif %})"
    R"({{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' }})";
const char* kQwen25Like =
    R"({%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }})"
    R"({%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}{%- endif %})";
const char* kLlama31Like =
    R"({{- bos_token }}{%- if not date_string is defined %}{%- set date_string = "26 Jul 2024" %}{%- endif %})"
    R"({{- "<|start_header_id|>system<|end_header_id|>\n\n" }}{{- "Cutting Knowledge Date: December 2023\n" }})"
    R"({{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }})";
const char* kLlama30Like =
    R"({% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %})";

TEST(Chat, Qwen3) {
  auto t = recognize_chat_template(kQwen3Like);
  EXPECT_EQ(t.family, ChatFamily::QwenChatML);
  EXPECT_TRUE(t.qwen3_thinking);
  EXPECT_EQ(t.default_system, "");
  std::vector<ChatMessage> m = {{"system", "Be brief."}, {"user", "2+2?"},
                                {"assistant", "<think>\nadd\n</think>\n\n4"}, {"user", "3+3?"}};
  const std::string head =
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
      "<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\n3+3?<|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(render_chat(t, m), head);  // reasoning of earlier turns is dropped
  ChatOptions no_think;
  no_think.enable_thinking = false;
  EXPECT_EQ(render_chat(t, m, no_think), head + "<think>\n\n</think>\n\n");
  // A final assistant turn (after the last query) keeps its reasoning.
  ChatOptions prefill;
  prefill.add_generation_prompt = false;
  EXPECT_EQ(render_chat(t, {{"user", "hi"}, {"assistant", "<think>x</think>ans"}}, prefill),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\nx\n</think>\n\nans<|im_end|>\n");
  EXPECT_EQ(render_chat(t, {{"user", "q"}, {"tool", "r1"}, {"tool", "r2"}}, prefill),
            "<|im_start|>user\nq<|im_end|>\n<|im_start|>user\n<tool_response>\nr1\n</tool_response>"
            "\n<tool_response>\nr2\n</tool_response><|im_end|>\n");
  EXPECT_THROW(render_chat(t, {{"robot", "x"}}), Error);
}

TEST(Chat, Qwen25DefaultSystem) {
  auto t = recognize_chat_template(kQwen25Like);
  EXPECT_FALSE(t.qwen3_thinking);
  EXPECT_EQ(t.default_system, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  EXPECT_EQ(render_chat(t, {{"user", "hi"}}),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
            "<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(t, {{"system", "S"}, {"user", "hi"}, {"assistant", "<think>k</think>a"}}),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
            "<|im_start|>assistant\n<think>k</think>a<|im_end|>\n<|im_start|>assistant\n");
}

TEST(Chat, Llama3) {
  auto t = recognize_chat_template(kLlama31Like);
  EXPECT_EQ(t.family, ChatFamily::Llama3);
  EXPECT_TRUE(t.llama_dated_system);
  EXPECT_FALSE(t.llama_date_from_clock);
  EXPECT_EQ(render_chat(t, {{"system", " Be brief. "}, {"user", "hi \n"}}),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
            "December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user"
            "<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  ChatOptions o;
  o.date_string = "01 Jan 2026";
  EXPECT_NE(render_chat(t, {{"user", "hi"}}, o).find("Today Date: 01 Jan 2026\n\n<|eot_id|>"), std::string::npos);
  auto t30 = recognize_chat_template(kLlama30Like);
  EXPECT_FALSE(t30.llama_dated_system);
  EXPECT_EQ(render_chat(t30, {{"user", " hi"}}),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(Chat, UnknownTemplateSaysHowToPassRawText) {
  try {
    recognize_chat_template("{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("raw text"), std::string::npos) << e.what();
  }
  EXPECT_THROW(chat_template_for_model_type("mistral"), Error);
  EXPECT_TRUE(chat_template_for_model_type("qwen3").qwen3_thinking);
  EXPECT_THROW(chat_messages_from_json(nlohmann::json::parse(R"([{"role": "user"}])")), Error);
}

class TinyTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_tiny_tokenizer(dir_.path());
    tok_ = std::make_unique<Tokenizer>(load_tokenizer(dir_.path()));
  }
  test::TempDir dir_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(TinyTokenizerTest, LoadsAndRoundTrips) {
  const Tokenizer& t = *tok_;
  auto ids = tiny_tokenizer_ids();
  EXPECT_EQ(ids.vocab_size, 264);
  EXPECT_EQ(t.id_space(), 264u);
  // Words: "1", " +", " ", "2", " =", " ", "3"; bytes are their own ids, " +" is merge 256.
  EXPECT_EQ(t.encode("1 + 2 = 3"), (Ids{'1', 256, ' ', '2', 259, ' ', '3'}));
  EXPECT_EQ(t.encode("<|im_start|>user\n7*6<|im_end|>"),
            (Ids{ids.im_start, 'u', 's', 'e', 'r', '\n', '7', '*', '6', ids.im_end}));
  for (std::string s : {"12 + 34 = 46\n\n", "héllo 日本 😀", "<|endoftext|>x"})
    EXPECT_EQ(t.decode(t.encode(s)), s);
  EXPECT_EQ(t.config().eos_token, "<|im_end|>");
  auto ct = chat_template_for(t);
  EXPECT_EQ(render_chat(ct, {{"user", "1+1"}}), "<|im_start|>user\n1+1<|im_end|>\n<|im_start|>assistant\n");
  TinyTokenizerSpec bad;
  bad.merges = {{"ab", "c"}};  // "ab" is neither a byte nor an earlier merge
  EXPECT_THROW(tiny_tokenizer_json(bad), Error);
}

TEST_F(TinyTokenizerTest, StopStrings) {
  const Tokenizer& t = *tok_;
  Ids ids = t.encode("1 + 2 = 3 and more");
  auto m = find_stop_string(t, ids, {"= 3"});
  ASSERT_TRUE(m);
  EXPECT_EQ(m->token_count, 7u);  // the token "3" completes it
  EXPECT_EQ(m->text, "1 + 2 ");
  EXPECT_EQ(m->text_with_stop, "1 + 2 = 3");
  m = find_stop_string(t, ids, {"3", "+ 2"});  // earliest in the text wins
  ASSERT_TRUE(m);
  EXPECT_EQ(m->stop_index, 1u);
  EXPECT_EQ(m->token_count, 4u);
  EXPECT_FALSE(find_stop_string(t, ids, {"4"}));

  auto tiny = tiny_tokenizer_ids();
  Ids with_eos = {'o', 'k', tiny.im_end};
  EXPECT_FALSE(find_stop_string(t, with_eos, {"<|im_end|>"}));  // skipped special: no text
  m = find_stop_string(t, with_eos, {"<|im_end|>"}, /*skip_special_tokens=*/false);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, "ok");

  // "é" is two byte tokens: no match (and nothing shown) until the second arrives.
  StopStringMatcher sm(t, {"\xC3\xA9"});
  EXPECT_FALSE(sm.push('a'));
  EXPECT_FALSE(sm.push(0xC3));
  EXPECT_EQ(sm.stable_text(), "a");
  auto r = sm.push(0xA9);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->token_count, 3u);
  EXPECT_EQ(r->text, "a");
  EXPECT_TRUE(sm.push('z'));  // stays matched
  EXPECT_THROW(StopStringMatcher(t, {""}), Error);

  // Streaming chunks: a possible stop-string start and an unfinished character are held back.
  StopStringMatcher st(t, {"= 3"});
  std::string streamed;
  for (int32_t id : t.encode("1 + 2 \xC3\xA9= 4 = 3 tail")) {
    bool done = st.push(id).has_value();
    streamed += st.new_text();
    if (streamed.find('=') != std::string::npos) {
      EXPECT_EQ(streamed.find("= 3"), std::string::npos);
    }
    if (done) break;
  }
  EXPECT_EQ(streamed, "1 + 2 \xC3\xA9= 4 ");
  StopStringMatcher fin(t, {"zz"});
  std::string all;
  for (int32_t id : Ids{'a', 0xC3}) {
    fin.push(id);
    all += fin.new_text();
  }
  EXPECT_EQ(all, "a");
  fin.finish();
  all += fin.new_text();
  EXPECT_EQ(all, "a\xEF\xBF\xBD");  // the unfinished byte, repaired
}

}  // namespace
}  // namespace qarl::tokenizer
