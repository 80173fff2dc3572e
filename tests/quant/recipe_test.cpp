// Recipes: the exact NeMo-RL / ModelOpt YAML texts, the shipped files, ordering/override
// semantics, fnmatch, and errors naming the key and the file.
#include <gtest/gtest.h>

#include "qarl/core/error.h"
#include "qarl/quant/fnmatch.h"
#include "qarl/quant/recipe.h"
#include "test_util.h"

namespace qarl::quant {
namespace {

const char* kK = "model.layers.3.self_attn.k_bmm_quantizer";
const char* kV = "model.layers.3.self_attn.v_bmm_quantizer";
const char* kQ = "model.layers.3.self_attn.q_bmm_quantizer";
const char* kW = "model.layers.3.mlp.down_proj.weight_quantizer";

// Verbatim from reference-spec 5.1 (NeMo-RL examples/modelopt/quant_configs).
const char* kNemoFp8 = R"(metadata: {recipe_type: ptq, description: FP8 E4M3 simulated KV-cache quantization with constant amax.}
quantize:
  algorithm: max
  quant_cfg:
    - {quantizer_name: '*', enable: false}
    - quantizer_name: '*[kv]_bmm_quantizer'
      enable: true
      cfg: {num_bits: e4m3, use_constant_amax: true}
)";
const char* kNemoNvfp4 = R"(quantize:
  algorithm: max
  quant_cfg:
    - {quantizer_name: '*', enable: false}
    - quantizer_name: '*[kv]_bmm_quantizer'
      enable: true
      cfg:
        block_sizes: {-1: 16, type: dynamic, scale_bits: e4m3}
        num_bits: e2m1
)";

TEST(Fnmatch, PythonSemantics) {
  EXPECT_TRUE(fnmatch(kK, "*[kv]_bmm_quantizer"));
  EXPECT_TRUE(fnmatch(kV, "*[kv]_bmm_quantizer"));
  EXPECT_FALSE(fnmatch(kQ, "*[kv]_bmm_quantizer"));
  EXPECT_TRUE(fnmatch("a.b/c", "*"));
  EXPECT_TRUE(fnmatch("", "*"));
  EXPECT_FALSE(fnmatch("", "?"));
  EXPECT_TRUE(fnmatch("x.k_bmm_quantizer", "x.?_bmm_quantizer"));
  EXPECT_TRUE(fnmatch("layer7", "layer[0-9]"));
  EXPECT_FALSE(fnmatch("layer7", "layer[!0-9]"));
  EXPECT_TRUE(fnmatch("layerx", "layer[!0-9]"));
  EXPECT_TRUE(fnmatch("a]", "a[]]"));
  EXPECT_TRUE(fnmatch("a[b", "a[b"));  // unclosed '[' is literal
  EXPECT_TRUE(fnmatch("a\\b", "a\\b"));  // no escapes
  EXPECT_FALSE(fnmatch("K_bmm_quantizer", "k*"));  // case-sensitive
  EXPECT_TRUE(fnmatch("aaab", "*a*b"));
  EXPECT_FALSE(fnmatch("aaac", "*a*b"));
  EXPECT_TRUE(fnmatch("a-", "a[x-]"));
}

TEST(Recipe, NemoRlFp8ConstantAmax) {
  QuantRecipe r = QuantRecipe::parse(kNemoFp8, "kv_cache_fp8.yaml");
  EXPECT_EQ(r.algorithm(), "max");
  EXPECT_NE(r.metadata().find("recipe_type"), std::string::npos);
  ASSERT_EQ(r.entries().size(), 2u);
  for (const char* n : {kK, kV}) {
    QuantizerConfig c = r.resolve(n);
    EXPECT_TRUE(c.enable);
    EXPECT_EQ(c.format, Format::FP8);
    EXPECT_EQ(c.block_size, 0);
    EXPECT_TRUE(c.use_constant_amax);
    EXPECT_TRUE(c.pass_through_bwd);
    TensorQuantizer q = r.make_quantizer(n);
    EXPECT_FALSE(q.has_amax_buffer());
    EXPECT_EQ(q.effective_amax(), 448.0f);
  }
  EXPECT_FALSE(r.resolve(kQ).enable);
  EXPECT_FALSE(r.resolve(kW).enable);
}

TEST(Recipe, NemoRlNvfp4) {
  QuantRecipe r = QuantRecipe::parse(kNemoNvfp4, "kv_cache_nvfp4.yaml");
  QuantizerConfig c = r.resolve(kV);
  EXPECT_TRUE(c.enable);
  EXPECT_EQ(c.format, Format::NVFP4);
  EXPECT_EQ(c.block_size, 16);
  EXPECT_FALSE(c.use_constant_amax);
  TensorQuantizer q = r.make_quantizer(kV);
  EXPECT_TRUE(q.has_amax_buffer());
  EXPECT_FALSE(q.amax_received());
  EXPECT_EQ(q.amax_tensor().item(), -1.0);
}

TEST(Recipe, ShippedFilesLoad) {
  QuantRecipe fp8 = QuantRecipe::load(test::source_path("recipes/quant/kv_cache_fp8.yaml"));
  EXPECT_TRUE(fp8.resolve(kK).use_constant_amax);
  QuantRecipe cal = QuantRecipe::load(test::source_path("recipes/quant/kv_cache_fp8_calibrated.yaml"));
  EXPECT_EQ(cal.resolve(kK).format, Format::FP8);
  EXPECT_FALSE(cal.resolve(kK).use_constant_amax);
  QuantRecipe nv = QuantRecipe::load(test::source_path("recipes/quant/kv_cache_nvfp4.yaml"));
  EXPECT_EQ(nv.resolve(kK).format, Format::NVFP4);
  QuantRecipe none = QuantRecipe::load(test::source_path("recipes/quant/none.yaml"));
  for (const char* n : {kK, kV, kQ, kW}) EXPECT_FALSE(none.resolve(n).enable);
  // The shipped FP8 file is the NeMo-RL text (modulo comments).
  EXPECT_EQ(fp8.entries().size(), QuantRecipe::parse(kNemoFp8, "x").entries().size());
}

TEST(Recipe, LaterEntriesOverrideAndCfgReplaces) {
  const char* text = R"(quant_cfg:
  - {quantizer_name: '*', enable: false}
  - {quantizer_name: '*[kv]_bmm_quantizer', cfg: {num_bits: e4m3, use_constant_amax: true}}
  - {quantizer_name: '*v_bmm_quantizer', cfg: {num_bits: [4, 3], pass_through_bwd: false}}
  - {quantizer_name: '*.layers.0.*', enable: false}
  - {quantizer_name: '*.layers.1.*k_bmm*', enable: true}
)";
  QuantRecipe r = QuantRecipe::parse(text, "t.yaml");
  EXPECT_EQ(r.algorithm(), "max");  // default
  QuantizerConfig k = r.resolve(kK), v = r.resolve(kV);
  EXPECT_TRUE(k.enable && k.use_constant_amax && k.pass_through_bwd);
  // v: the later cfg fully replaces: use_constant_amax back to its default (false).
  EXPECT_TRUE(v.enable);
  EXPECT_FALSE(v.use_constant_amax);
  EXPECT_FALSE(v.pass_through_bwd);
  EXPECT_FALSE(r.resolve("model.layers.0.self_attn.k_bmm_quantizer").enable);
  // enable-only entry keeps the attributes.
  QuantizerConfig k1 = r.resolve("model.layers.1.self_attn.k_bmm_quantizer");
  EXPECT_TRUE(k1.enable && k1.use_constant_amax);
}

TEST(Recipe, OlderDictForm) {
  const char* text = R"(quant_cfg:
  '*[kv]_bmm_quantizer': {num_bits: [2, 1], block_sizes: {-1: 16, type: dynamic, scale_bits: [4, 3]}, axis: null, enable: true}
  default: {enable: false}
algorithm: max
)";
  QuantRecipe r = QuantRecipe::parse(text, "d.yaml");
  EXPECT_EQ(r.resolve(kK).format, Format::NVFP4);
  EXPECT_FALSE(r.resolve(kQ).enable);
}

TEST(Recipe, UnconfiguredEnabledQuantizerIsAnError) {
  const char* text = "quant_cfg:\n  - {quantizer_name: '*k_bmm_quantizer', cfg: {num_bits: e4m3}}\n";
  QuantRecipe r = QuantRecipe::parse(text, "u.yaml");
  EXPECT_NO_THROW(r.resolve(kK));
  try {
    r.resolve(kQ);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.file(), "u.yaml");
    EXPECT_NE(std::string(e.what()).find(kQ), std::string::npos);
  }
}

TEST(Recipe, ErrorsNameKeyAndFile) {
  struct Case { const char* text; const char* key; };
  const Case cases[] = {
      {"quant_cfg:\n  - {quantizer_name: '*', cfg: {num_bits: 8}}\n", "quant_cfg[0].cfg.num_bits"},
      {"quant_cfg:\n  - {quantizer_name: '*', cfg: {num_bits: e4m3, fake_quant: true}}\n", "quant_cfg[0].cfg.fake_quant"},
      {"quant_cfg:\n  - {quantizer_name: '*', cfg: {num_bits: e4m3, axis: 0}}\n", "quant_cfg[0].cfg.axis"},
      {"quant_cfg:\n  - {quantizer_name: '*', cfg: {num_bits: e2m1, block_sizes: {-1: 32, type: dynamic, scale_bits: e4m3}}}\n", "block_sizes.-1"},
      {"quant_cfg:\n  - {quantizer_name: '*', cfg: {num_bits: e2m1, block_sizes: {-1: 16, type: static, scale_bits: e4m3}}}\n", "block_sizes.type"},
      {"quant_cfg:\n  - {quantizer_name: '*', cfg: {num_bits: e2m1}}\n", "quant_cfg[0].cfg"},
      {"quant_cfg:\n  - {quantizer_name: '*', enable: maybe}\n", "quant_cfg[0].enable"},
      {"quant_cfg:\n  - {quantizer_name: '*'}\n", "quant_cfg[0]"},
      {"quant_cfg:\n  - {quantizer_name: '*', enable: false, parent_class: Linear}\n", "quant_cfg[0].parent_class"},
      {"quant_cfg:\n  - {quantizer_name: '*', enable: false, colour: red}\n", "quant_cfg[0].colour"},
      {"algorithm: awq_lite\nquant_cfg: []\n", "algorithm"},
      {"quantize: {quant_cfg: []}\nextra: 1\n", "extra"},
      {"algorithm: max\n", "quant_cfg"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    try {
      QuantRecipe::parse(c.text, "bad.yaml");
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      EXPECT_EQ(e.file(), "bad.yaml");
      EXPECT_NE(e.key().find(c.key), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(QuantRecipe::parse("quant_cfg: [", "y.yaml"), Error);
  EXPECT_THROW(QuantRecipe::load("/nonexistent/recipe.yaml"), Error);
}

}  // namespace
}  // namespace qarl::quant

namespace qarl::quant {
namespace {

// Inputs found by fuzz/quant_recipe_fuzz: a mapping as a key made yaml-cpp throw its own
// exception past every caller, a repeated key kept only one value. Both are now Input
// errors naming the file (and the key where there is one).
TEST(Recipe, MalformedKeysAreInputErrorsNamingTheFile) {
  const char* map_key = "quantize:\n  algorithm: max\n  quant_cfg:\n    - {a b}: 1\n";
  try {
    QuantRecipe::parse(map_key, "mapkey.yaml");
    FAIL() << "accepted a mapping as a key";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Input);
    EXPECT_EQ(e.file(), "mapkey.yaml");
  }
  const char* dup = "quantize:\n  algorithm: max\n  quant_cfg:\n    - {quantizer_name: '*', enable: false}\n  algorithm: none\n";
  try {
    QuantRecipe::parse(dup, "dup.yaml");
    FAIL() << "accepted a repeated key";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Input);
    EXPECT_EQ(e.key(), "quantize.algorithm");
  }
  EXPECT_THROW(QuantRecipe::parse("quantize: {algorithm: {method: {x: 1}}, quant_cfg: []}\n", "m.yaml"), Error);
}

}  // namespace
}  // namespace qarl::quant
