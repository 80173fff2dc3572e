#include "rollout_fixtures.h"

#include <fmt/format.h>

#include "qarl/core/rng.h"
#include "qarl/model/forward.h"

namespace qarl::rollout::test {

const char* recipe_name(KvRecipe r) {
  switch (r) {
    case KvRecipe::None: return "none";
    case KvRecipe::Fp8Constant: return "fp8-constant";
    case KvRecipe::Fp8Calibrated: return "fp8-calibrated";
    case KvRecipe::Nvfp4: return "nvfp4";
  }
  return "?";
}

quant::QuantRecipe make_recipe(KvRecipe r) {
  const std::string head =
      "quantize:\n  algorithm: max\n  quant_cfg:\n    - {quantizer_name: '*', enable: false}\n";
  switch (r) {
    case KvRecipe::None: return quant::QuantRecipe::none();
    case KvRecipe::Fp8Constant:
      return quant::QuantRecipe::parse(head + "    - quantizer_name: '*[kv]_bmm_quantizer'\n"
                                              "      enable: true\n"
                                              "      cfg: {num_bits: e4m3, use_constant_amax: true}\n",
                                       "kv_cache_fp8.yaml");
    case KvRecipe::Fp8Calibrated:
      return quant::QuantRecipe::parse(head + "    - quantizer_name: '*[kv]_bmm_quantizer'\n"
                                              "      enable: true\n"
                                              "      cfg: {num_bits: e4m3}\n",
                                       "kv_cache_fp8_calibrated.yaml");
    case KvRecipe::Nvfp4:
      return quant::QuantRecipe::parse(
          head + "    - quantizer_name: '*[kv]_bmm_quantizer'\n"
                 "      enable: true\n"
                 "      cfg:\n"
                 "        block_sizes: {-1: 16, type: dynamic, scale_bits: e4m3}\n"
                 "        num_bits: e2m1\n",
          "kv_cache_nvfp4.yaml");
  }
  return quant::QuantRecipe::none();
}

io::HFConfig tiny_config(io::ModelFamily family, int layers) {
  io::HFConfig c;
  c.family = family;
  c.vocab_size = 61;
  c.hidden_size = 32;
  c.intermediate_size = 40;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 96;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  switch (family) {
    case io::ModelFamily::Qwen3:
      c.architecture = "Qwen3ForCausalLM";
      c.model_type = "qwen3";
      c.qk_norm = true;
      c.tie_word_embeddings = true;
      break;
    case io::ModelFamily::Qwen2:
      c.architecture = "Qwen2ForCausalLM";
      c.model_type = "qwen2";
      c.attention_bias = true;
      break;
    case io::ModelFamily::Llama:
      c.architecture = "LlamaForCausalLM";
      c.model_type = "llama";
      break;
  }
  return c;
}

std::map<std::string, Tensor> tiny_amax(int layers, DType dtype) {
  std::map<std::string, Tensor> out;
  for (int i = 0; i < layers; ++i) {
    // K rows are unit-RMS after q/k norm; V rows are ~0.1: amax values in their range so that
    // some values saturate and many round.
    out[model::kv_quantizer_name(i, 'k') + "._amax"] = Tensor::scalar(2.0f + 0.37f * float(i), dtype);
    out[model::kv_quantizer_name(i, 'v') + "._amax"] = Tensor::scalar(0.25f + 0.05f * float(i), dtype);
  }
  return out;
}

void save_tiny_model(const std::string& dir, const io::HFConfig& cfg, uint64_t seed, DType dtype) {
  model::Model::random_init(cfg, seed, dtype).save(dir);
}

std::vector<std::vector<float>> trainer_logprobs(const std::string& dir, const quant::QuantRecipe& recipe,
                                                 const std::map<std::string, Tensor>& amax,
                                                 const std::vector<SampleOutput>& outs,
                                                 const std::vector<float>& temperatures) {
  model::Model m = model::Model::load(dir);
  m.configure_kv_quantizers(recipe, amax, true);
  std::vector<std::vector<float>> res(outs.size());
  // Group by temperature (score_sequences takes one).
  std::map<float, std::vector<size_t>> by_t;
  for (size_t i = 0; i < outs.size(); ++i)
    if (outs[i].error.empty()) by_t[temperatures[i]].push_back(i);
  for (const auto& [t, idx] : by_t) {
    std::vector<std::vector<int32_t>> seqs;
    for (size_t i : idx) {
      auto s = outs[i].prompt_tokens;
      s.insert(s.end(), outs[i].tokens.begin(), outs[i].tokens.end());
      seqs.push_back(std::move(s));
    }
    auto lp = model::score_sequences(m, seqs, t);
    for (size_t j = 0; j < idx.size(); ++j) {
      const auto& o = outs[idx[j]];
      const size_t P = o.prompt_tokens.size();
      res[idx[j]].assign(lp[j].begin() + long(P - 1), lp[j].end());
    }
  }
  return res;
}

std::vector<GenRequest> mixed_requests(int count, int max_prompt, int max_new, int vocab, uint64_t seed) {
  SequentialRng r(seed, 99);
  std::vector<GenRequest> out;
  for (int i = 0; i < count; ++i) {
    GenRequest g;
    int P = 1 + int(r.below(uint64_t(max_prompt)));
    for (int t = 0; t < P; ++t) g.prompt.push_back(int32_t(r.below(uint64_t(vocab))));
    auto& p = g.params;
    p.max_new_tokens = 1 + int(r.below(uint64_t(max_new)));
    p.n = r.below(3) == 0 ? 3 : 1;
    switch (r.below(6)) {
      case 0: p.temperature = 0; break;
      case 1: p.temperature = 1.0f; break;
      case 2: p.temperature = 0.7f; p.top_k = 5; break;
      case 3: p.temperature = 1.3f; p.top_p = 0.8f; break;
      case 4: p.temperature = 0.9f; p.min_p = 0.05f; break;
      default: p.temperature = 1.1f; p.top_k = 20; p.top_p = 0.9f; p.min_p = 0.01f; break;
    }
    if (r.below(4) == 0) p.stop_token_ids = {int32_t(r.below(uint64_t(vocab))), int32_t(r.below(uint64_t(vocab)))};
    if (r.below(2) == 0) p.seed = r.next_u32();
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace qarl::rollout::test
