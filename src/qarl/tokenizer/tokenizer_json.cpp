// Loading tokenizer.json, GPT-2's vocab.json + merges.txt, and tokenizer_config.json.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/core/log.h"
#include "qarl/tokenizer/tokenizer_impl.h"

namespace qarl::tokenizer {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json parse_json(std::string_view text, const std::string& source) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw err("not valid JSON: {}", e.what()).file(source);
  }
}

// Token strings in configs are either "text" or {"content": "text", ...}.
std::string token_string(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content")) return j["content"].get<std::string>();
  return "";
}

std::vector<std::pair<std::string, std::string>> parse_merges(const json& merges) {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    if (m.is_string()) {
      // "a b": tokenizers requires exactly one space (byte-level tokens never contain one).
      const std::string& s = m.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        throw err("merge {} \"{}\" is not two tokens separated by one space", i, s).key("model.merges");
      out.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      out.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      throw err("merge {} is neither \"a b\" nor [\"a\", \"b\"]", i).key("model.merges");
    }
  }
  return out;
}

AddedToken parse_added_token(const json& j, int32_t id) {
  AddedToken t;
  t.id = id;
  t.content = j.at("content").get<std::string>();
  t.special = j.value("special", false);
  t.single_word = j.value("single_word", false);
  t.lstrip = j.value("lstrip", false);
  t.rstrip = j.value("rstrip", false);
  // tokenizers' default: special tokens are not normalized, other added tokens are.
  t.normalized = j.contains("normalized") ? j["normalized"].get<bool>() : !t.special;
  return t;
}

// post_processor -> the ids that add_special_tokens puts around a single sequence.
void parse_post_processor(const json& j, Tokenizer::Impl* m) {
  if (j.is_null()) return;
  std::string type = j.at("type").get<std::string>();
  if (type == "ByteLevel") return;  // only trims offsets; ids unchanged
  if (type == "Sequence") {
    for (const auto& p : j.at("processors")) parse_post_processor(p, m);
    return;
  }
  if (type != "TemplateProcessing")
    throw err("unsupported post_processor type \"{}\" (qarl supports TemplateProcessing, "
              "ByteLevel, Sequence)", type).key("post_processor");
  const json& specials = j.value("special_tokens", json::object());
  bool seen_sequence = false;
  for (const json& item : j.at("single")) {
    if (item.contains("Sequence")) {
      seen_sequence = true;
    } else if (item.contains("SpecialToken")) {
      std::string name = item["SpecialToken"].at("id").get<std::string>();
      if (!specials.contains(name))
        throw err("template names special token \"{}\" missing from special_tokens", name)
            .key("post_processor");
      auto& dst = seen_sequence ? m->post_suffix : m->post_prefix;
      for (const auto& id : specials[name].at("ids")) dst.push_back(id.get<int32_t>());
    } else {
      throw err("unknown TemplateProcessing item {}", item.dump()).key("post_processor");
    }
  }
}

void check_decoder(const json& j) {
  if (j.is_null()) return;
  std::string type = j.at("type").get<std::string>();
  if (type == "ByteLevel") return;
  if (type == "Sequence") {
    for (const auto& d : j.at("decoders")) check_decoder(d);
    return;
  }
  throw err("unsupported decoder type \"{}\" (qarl supports ByteLevel)", type).key("decoder");
}

}  // namespace

Tokenizer tokenizer_from_json(std::string_view text, const std::string& source,
                              TokenizerConfig config) {
  json root = parse_json(text, source);
  auto m = std::make_shared<Tokenizer::Impl>();
  m->source = source;
  m->config = std::move(config);
  try {
    if (!root.is_object() || !root.contains("model")) throw err("no \"model\" object");
    const json& model = root["model"];
    std::string type = model.value("type", model.contains("merges") ? "BPE" : "");
    if (type != "BPE")
      throw err("unsupported model type \"{}\" (qarl supports byte-level BPE)", type).key("model.type");
    if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"].get<double>() != 0)
      throw err("BPE dropout is not supported").key("model.dropout");
    if (model.value("byte_fallback", false))
      throw err("byte_fallback BPE (SentencePiece style) is not supported").key("model.byte_fallback");
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (model.contains(k) && model[k].is_string() && !model[k].get<std::string>().empty())
        throw err("non-empty {} is not supported by byte-level BPE", k).key(std::string("model.") + k);
    if (!model.contains("vocab") || !model["vocab"].is_object()) throw err("no vocab object").key("model.vocab");
    std::unordered_map<std::string, int32_t> vocab;
    vocab.reserve(model["vocab"].size());
    for (const auto& [tok, id] : model["vocab"].items()) vocab.emplace(tok, id.get<int32_t>());
    auto merges = parse_merges(model.value("merges", json::array()));
    std::string unk = model.contains("unk_token") && model["unk_token"].is_string()
                          ? model["unk_token"].get<std::string>() : "";
    m->bpe = std::make_unique<BpeModel>(std::move(vocab), merges, model.value("ignore_merges", false),
                                        unk, model.value("fuse_unk", false));

    m->normalizer = Normalizer::from_json(root.value("normalizer", json()));
    m->pre_tokenizer = PreTokenizer::from_json(root.value("pre_tokenizer", json()));
    if (!m->pre_tokenizer.has_byte_level())
      throw err("pre_tokenizer has no ByteLevel step: qarl supports byte-level BPE only")
          .key("pre_tokenizer");
    check_decoder(root.value("decoder", json()));
    parse_post_processor(root.value("post_processor", json()), m.get());
    for (const char* k : {"truncation", "padding"})
      if (root.contains(k) && !root[k].is_null())
        log_warn("{}: \"{}\" settings are ignored (qarl never truncates or pads)", source, k);
    for (const auto& a : root.value("added_tokens", json::array()))
      m->added.push_back(parse_added_token(a, a.at("id").get<int32_t>()));
  } catch (Error& e) {
    if (e.file().empty()) e.file(source);
    throw;
  } catch (const json::exception& e) {
    throw err("unexpected structure: {}", e.what()).file(source);
  }
  m->finish();
  return Tokenizer(m);
}

Tokenizer tokenizer_from_gpt2_files(const std::string& vocab_path, const std::string& merges_path,
                                    std::vector<AddedToken> added, TokenizerConfig config) {
  auto m = std::make_shared<Tokenizer::Impl>();
  m->source = vocab_path;
  m->config = std::move(config);
  json vj = parse_json(read_file(vocab_path), vocab_path);
  std::unordered_map<std::string, int32_t> vocab;
  try {
    for (const auto& [tok, id] : vj.items()) vocab.emplace(tok, id.get<int32_t>());
  } catch (const json::exception& e) {
    throw err("expected an object of token -> id: {}", e.what()).file(vocab_path);
  }
  std::vector<std::pair<std::string, std::string>> merges;
  std::string mt = read_file(merges_path);
  size_t line_no = 0;
  for (size_t at = 0; at < mt.size();) {
    size_t nl = mt.find('\n', at);
    std::string line = mt.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
    at = nl == std::string::npos ? mt.size() : nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    size_t sp = line.find(' ');
    if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos)
      throw err("line {}: \"{}\" is not two tokens separated by one space", line_no, line).file(merges_path);
    merges.emplace_back(line.substr(0, sp), line.substr(sp + 1));
  }
  // transformers' GPT2Tokenizer has <|endoftext|> as its bos/eos/unk special token.
  bool has_eot = false;
  for (const auto& a : added) has_eot |= a.content == "<|endoftext|>";
  auto eot = vocab.find("<|endoftext|>");
  if (!has_eot && eot != vocab.end()) added.push_back({eot->second, "<|endoftext|>", true, false, false, false, false});
  try {
    m->bpe = std::make_unique<BpeModel>(std::move(vocab), merges, false);
  } catch (Error& e) {
    throw e.file(merges_path);
  }
  m->pre_tokenizer = PreTokenizer::gpt2_byte_level();
  m->added = std::move(added);
  m->finish();
  return Tokenizer(m);
}

TokenizerConfig read_tokenizer_config(const std::string& dir) {
  TokenizerConfig c;
  std::string path = (fs::path(dir) / "tokenizer_config.json").string();
  if (path_exists(path)) {
    json j = parse_json(read_file(path), path);
    try {
      if (j.contains("chat_template")) {
        const json& t = j["chat_template"];
        if (t.is_string()) {
          c.chat_template = t.get<std::string>();
        } else if (t.is_array()) {  // [{"name": "default", "template": ...}, ...]
          for (const auto& e : t)
            if (e.value("name", "") == "default") c.chat_template = e.at("template").get<std::string>();
        }
      }
      for (auto [key, dst] : {std::pair{"bos_token", &c.bos_token}, {"eos_token", &c.eos_token},
                              {"pad_token", &c.pad_token}})
        if (j.contains(key)) *dst = token_string(j[key]);
      c.clean_up_tokenization_spaces = j.value("clean_up_tokenization_spaces", false);
    } catch (const json::exception& e) {
      throw err("unexpected structure: {}", e.what()).file(path);
    }
  }
  std::string jinja = (fs::path(dir) / "chat_template.jinja").string();
  if (c.chat_template.empty() && path_exists(jinja)) c.chat_template = read_file(jinja);
  return c;
}

namespace {
// GPT-2 form's added tokens: tokenizer_config.json's added_tokens_decoder, else the older
// added_tokens.json ({"content": id}, tokens added with add_tokens: not special).
std::vector<AddedToken> gpt2_added_tokens(const std::string& dir) {
  std::vector<AddedToken> out;
  std::string path = (fs::path(dir) / "tokenizer_config.json").string();
  if (path_exists(path)) {
    json j = parse_json(read_file(path), path);
    if (j.contains("added_tokens_decoder")) {
      try {
        for (const auto& [id, t] : j["added_tokens_decoder"].items())
          out.push_back(parse_added_token(t, int32_t(std::stol(id))));
      } catch (const std::exception& e) {
        throw err("bad added_tokens_decoder: {}", e.what()).file(path);
      }
      return out;
    }
  }
  path = (fs::path(dir) / "added_tokens.json").string();
  if (path_exists(path)) {
    json j = parse_json(read_file(path), path);
    try {
      for (const auto& [content, id] : j.items())
        out.push_back({id.get<int32_t>(), content, false, false, false, false, true});
    } catch (const json::exception& e) {
      throw err("expected an object of token -> id: {}", e.what()).file(path);
    }
  }
  return out;
}
}  // namespace

Tokenizer load_tokenizer(const std::string& path) {
  fs::path p(path);
  if (is_directory(path)) {
    TokenizerConfig config = read_tokenizer_config(path);
    if (path_exists((p / "tokenizer.json").string()))
      return tokenizer_from_json(read_file((p / "tokenizer.json").string()),
                                 (p / "tokenizer.json").string(), std::move(config));
    if (path_exists((p / "vocab.json").string()) && path_exists((p / "merges.txt").string()))
      return tokenizer_from_gpt2_files((p / "vocab.json").string(), (p / "merges.txt").string(),
                                       gpt2_added_tokens(path), std::move(config));
    throw err("no tokenizer.json (nor vocab.json + merges.txt) in this directory").file(path);
  }
  if (!path_exists(path)) throw err("no such file or directory").file(path);
  fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  return tokenizer_from_json(read_file(path), path, read_tokenizer_config(dir.string()));
}

}  // namespace qarl::tokenizer
