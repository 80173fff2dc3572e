// Name mapping cases of reference-spec section 6 (merged and superseded stricter ones).
#include <gtest/gtest.h>

#include "qarl/core/error.h"
#include "qarl/refit/name_map.h"

namespace qarl::refit {
namespace {

MappedName map1(const NameMapper& m, const std::string& n) {
  auto r = m.map(n);
  if (!r) throw std::runtime_error("ignored: " + n);
  return *r;
}

std::string map_error_tensor(const NameMapper& m, const std::string& n) {
  try {
    m.map(n);
  } catch (const Error& e) {
    return e.tensor();
  }
  return "<no error>";
}

TEST(RefitNameMap, KvAmaxGetsInnerAttnSegment) {
  auto m = NameMapper::dense();
  EXPECT_EQ(map1(m, "model.layers.0.self_attn.k_bmm_quantizer._amax").runtime_name,
            "model.layers.0.self_attn.attn.k_bmm_quantizer._amax");
  EXPECT_EQ(map1(m, "model.layers.11.self_attn.v_bmm_quantizer._amax").runtime_name,
            "model.layers.11.self_attn.attn.v_bmm_quantizer._amax");
  EXPECT_EQ(map1(m, "model.layers.0.self_attn.k_bmm_quantizer._amax").shard_id, "");
}

TEST(RefitNameMap, AttnInsertionIsIdempotentAndDotDelimited) {
  const std::string once = "model.layers.0.self_attn.attn.k_bmm_quantizer._amax";
  EXPECT_EQ(insert_kv_attn_segment(once), once);  // never twice
  EXPECT_EQ(insert_kv_attn_segment(insert_kv_attn_segment("a.b.k_bmm_quantizer._amax")),
            "a.b.attn.k_bmm_quantizer._amax");
  // "xattn." is not the "attn." segment.
  EXPECT_EQ(insert_kv_attn_segment("model.layers.0.self_xattn.k_bmm_quantizer._amax"),
            "model.layers.0.self_xattn.attn.k_bmm_quantizer._amax");
  // Only K/V amax names are touched; q_bmm and input amax are forwarded unchanged.
  EXPECT_EQ(insert_kv_attn_segment("model.layers.0.self_attn.q_bmm_quantizer._amax"),
            "model.layers.0.self_attn.q_bmm_quantizer._amax");
  EXPECT_EQ(insert_kv_attn_segment("model.layers.0.mlp.down_proj.input_quantizer._amax"),
            "model.layers.0.mlp.down_proj.input_quantizer._amax");
  EXPECT_EQ(map1(NameMapper::dense(), "model.layers.0.self_attn.q_bmm_quantizer._amax").runtime_name,
            "model.layers.0.self_attn.q_bmm_quantizer._amax");
}

TEST(RefitNameMap, MapperSuppliedAttnIsKeptNeverRemoved) {
  NameMapperConfig c = NameMapper::dense().config();
  c.full_name_mapper = [](const std::string& n) -> std::vector<std::string> {
    const std::string s = ".self_attn.k_bmm_quantizer._amax";
    if (n.size() > s.size() && n.ends_with(s))
      return {n.substr(0, n.size() - s.size()) + ".self_attn.attn.k_bmm_quantizer._amax"};
    return {n};
  };
  NameMapper m(c);
  EXPECT_EQ(map1(m, "model.layers.2.self_attn.k_bmm_quantizer._amax").runtime_name,
            "model.layers.2.self_attn.attn.k_bmm_quantizer._amax");
  // An already-inserted name stays as it is (never removed).
  EXPECT_EQ(map1(NameMapper::dense(), "model.layers.2.self_attn.attn.v_bmm_quantizer._amax")
                .runtime_name,
            "model.layers.2.self_attn.attn.v_bmm_quantizer._amax");
}

TEST(RefitNameMap, FullNameMapperIsHonouredAndUnchangedNamesAccepted) {
  NameMapperConfig c = NameMapper::dense().config();
  c.substr_renames = {{".self_attn.", ".attention."}};
  NameMapper m(c);
  EXPECT_EQ(map1(m, "model.layers.4.self_attn.k_bmm_quantizer._amax").runtime_name,
            "model.layers.4.attention.attn.k_bmm_quantizer._amax");
  NameMapperConfig id = NameMapper::dense().config();
  id.full_name_mapper = [](const std::string& n) { return std::vector<std::string>{n}; };
  EXPECT_EQ(map1(NameMapper(id), "model.layers.4.self_attn.v_bmm_quantizer._amax").runtime_name,
            "model.layers.4.self_attn.attn.v_bmm_quantizer._amax");
}

TEST(RefitNameMap, MapperThatFiltersOrChangesSuffixIsRejected) {
  const std::string k = "model.layers.1.self_attn.k_bmm_quantizer._amax";
  NameMapperConfig drop = NameMapper::dense().config();
  drop.full_name_mapper = [](const std::string&) { return std::vector<std::string>{}; };
  EXPECT_EQ(map_error_tensor(NameMapper(drop), k), k);
  NameMapperConfig two = NameMapper::dense().config();
  two.full_name_mapper = [](const std::string& n) { return std::vector<std::string>{n, n}; };
  EXPECT_EQ(map_error_tensor(NameMapper(two), k), k);
  NameMapperConfig suffix = NameMapper::dense().config();
  suffix.substr_renames = {{"k_bmm_quantizer._amax", "k_scale"}};
  EXPECT_EQ(map_error_tensor(NameMapper(suffix), k), k);
}

TEST(RefitNameMap, HybridBackboneAliasMapsToModelMixerAttn) {
  auto m = NameMapper::nemotron_h();
  EXPECT_EQ(map1(m, "backbone.layers.5.mixer.k_bmm_quantizer._amax").runtime_name,
            "model.layers.5.mixer.attn.k_bmm_quantizer._amax");
  EXPECT_EQ(map1(m, "backbone.layers.5.mixer.v_bmm_quantizer._amax").runtime_name,
            "model.layers.5.mixer.attn.v_bmm_quantizer._amax");
  EXPECT_EQ(map1(m, "backbone.layers.0.mixer.A_log").runtime_name, "model.layers.0.mixer.A");
  EXPECT_EQ(map1(m, "backbone.embeddings.weight").runtime_name, "model.embed_tokens.weight");
  // The vision stack is a distractor with the same tail: it is not bound, it is rejected.
  const std::string vision = "vision_model.layers.5.mixer.k_bmm_quantizer._amax";
  EXPECT_EQ(map_error_tensor(m, vision), vision);
}

TEST(RefitNameMap, UnknownRootsAreRejectedNotGuessed) {
  for (const char* n : {"language_model.model.layers.0.self_attn.k_bmm_quantizer._amax",
                        "vision_model.encoder.layers.0.self_attn.q_proj.weight",
                        "decoder.layers.0.self_attention.linear_qkv.weight"}) {
    EXPECT_EQ(map_error_tensor(NameMapper::dense(), n), n);
  }
  // backbone. is only an alias for the hybrid family.
  const std::string b = "backbone.layers.0.mixer.k_bmm_quantizer._amax";
  EXPECT_EQ(map_error_tensor(NameMapper::dense(), b), b);
}

TEST(RefitNameMap, StackedParamsMapToShards) {
  auto m = NameMapper::dense();
  EXPECT_EQ(map1(m, "model.layers.3.self_attn.q_proj.weight"),
            (MappedName{"model.layers.3.self_attn.qkv_proj.weight", "q"}));
  EXPECT_EQ(map1(m, "model.layers.3.self_attn.k_proj.bias"),
            (MappedName{"model.layers.3.self_attn.qkv_proj.bias", "k"}));
  EXPECT_EQ(map1(m, "model.layers.3.self_attn.v_proj.input_quantizer._amax"),
            (MappedName{"model.layers.3.self_attn.qkv_proj.input_quantizer._amax", "v"}));
  EXPECT_EQ(map1(m, "model.layers.3.mlp.gate_proj.weight"),
            (MappedName{"model.layers.3.mlp.gate_up_proj.weight", "gate"}));
  EXPECT_EQ(map1(m, "model.layers.3.mlp.up_proj.weight"),
            (MappedName{"model.layers.3.mlp.gate_up_proj.weight", "up"}));
  EXPECT_EQ(map1(m, "model.layers.3.mlp.down_proj.weight"),
            (MappedName{"model.layers.3.mlp.down_proj.weight", ""}));
  EXPECT_EQ(map1(m, "model.layers.3.self_attn.o_proj.weight"),
            (MappedName{"model.layers.3.self_attn.o_proj.weight", ""}));
  EXPECT_EQ(map1(m, "lm_head.weight"), (MappedName{"lm_head.weight", ""}));
  EXPECT_FALSE(m.map("model.layers.3.self_attn.rotary_emb.inv_freq").has_value());
}

}  // namespace
}  // namespace qarl::refit

namespace qarl::refit {
namespace {

TEST(RefitNameMap, Qwen3NormsAndUnfusedNamesPassThrough) {
  auto m = NameMapper::dense();
  for (const char* n : {"model.layers.0.self_attn.q_norm.weight", "model.layers.0.self_attn.k_norm.weight",
                        "model.embed_tokens.weight", "model.norm.weight",
                        "model.layers.7.post_attention_layernorm.weight"}) {
    EXPECT_EQ(map1(m, n), (MappedName{n, ""})) << n;
  }
}

}  // namespace
}  // namespace qarl::refit
