#include "qarl/rl/tiny_model.h"

#include <filesystem>

#include "qarl/core/error.h"
#include "qarl/model/model.h"
#include "qarl/tokenizer/tiny_tokenizer.h"

namespace qarl::rl {

io::HFConfig tiny_model_config(int vocab_size) {
  io::HFConfig c;
  c.architecture = "Qwen3ForCausalLM";
  c.family = io::ModelFamily::Qwen3;
  c.model_type = "qwen3";
  c.vocab_size = vocab_size;
  c.hidden_size = 64;
  c.intermediate_size = 192;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 64;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = true;
  c.qk_norm = true;
  c.torch_dtype = "float32";
  auto ids = tokenizer::tiny_tokenizer_ids();
  c.eos_token_id = ids.im_end;
  return c;
}

void write_tiny_checkpoint(const std::string& dir, uint64_t seed) {
  namespace fs = std::filesystem;
  auto ids = tokenizer::tiny_tokenizer_ids();
  std::string tmp = dir + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  model::Model m = model::Model::random_init(tiny_model_config(ids.vocab_size), seed, DType::F32);
  m.save(tmp);
  tokenizer::write_tiny_tokenizer(tmp);
  fs::remove_all(dir);
  fs::rename(tmp, dir);
}

}  // namespace qarl::rl
