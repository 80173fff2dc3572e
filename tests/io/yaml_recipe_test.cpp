// YAML recipe helper: typed access, unknown keys named by full path and file, locations,
// overrides.
#include "qarl/io/yaml_recipe.h"

#include <gtest/gtest.h>

#include "qarl/core/fs.h"
#include "test_util.h"

namespace qarl::io {
namespace {

const char* kRecipe = R"(train:
  lr: 1.0e-5
  steps: 20
  name: tiny
  layers:
    - {bits: 4, pattern: "*.k_proj"}
    - {bits: 8}
kv_cache:
  format: fp8
)";

Error catch_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no error";
  return Error("none");
}

TEST(YamlRecipe, TypedAccessAndAllKeysRead) {
  auto r = RecipeNode::parse(kRecipe, "r.yaml");
  auto t = r.child("train");
  EXPECT_EQ(t.required<double>("lr"), 1e-5);
  EXPECT_EQ(t.required<int>("steps"), 20);
  EXPECT_EQ(t.required<std::string>("name"), "tiny");
  EXPECT_EQ(t.optional<int>("warmup", 7), 7);
  auto layers = t.child("layers");
  ASSERT_EQ(layers.size(), 2u);
  EXPECT_EQ(layers.at(0).required<int>("bits"), 4);
  EXPECT_EQ(layers.at(0).required<std::string>("pattern"), "*.k_proj");
  EXPECT_EQ(layers.at(1).required<int>("bits"), 8);
  EXPECT_EQ(r.child("kv_cache").raw()["format"].as<std::string>(), "fp8");
  EXPECT_NO_THROW(r.reject_unknown());
}

TEST(YamlRecipe, UnknownKeyNamesPathFileAndLine) {
  auto r = RecipeNode::parse(kRecipe, "r.yaml");
  auto t = r.child("train");
  t.required<double>("lr");
  t.required<int>("steps");
  t.required<std::string>("name");
  r.child("kv_cache").raw();
  auto layers = t.child("layers");
  layers.at(0).required<int>("bits");
  layers.at(1).required<int>("bits");
  Error e = catch_error([&] { r.reject_unknown(); });
  EXPECT_EQ(e.file(), "r.yaml");
  EXPECT_EQ(e.key(), "train.layers[0].pattern");
  EXPECT_NE(std::string(e.what()).find("line 6"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("unknown key"), std::string::npos);

  auto r2 = RecipeNode::parse("a: 1\nb: {c: 2, typo: 3}\n", "x.yaml");
  r2.required<int>("a");
  r2.child("b").required<int>("c");
  e = catch_error([&] { r2.reject_unknown(); });
  EXPECT_EQ(e.key(), "b.typo");
  EXPECT_NE(std::string(e.what()).find("line 2, column 11"), std::string::npos) << e.what();
}

TEST(YamlRecipe, TypeAndMissingErrors) {
  auto r = RecipeNode::parse("a: hello\nb: [1, 2]\nc: 3.5\nd: yes\n", "t.yaml");
  Error e = catch_error([&] { r.required<int>("a"); });
  EXPECT_EQ(e.key(), "a");
  EXPECT_NE(std::string(e.what()).find("must be an integer"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("line 1"), std::string::npos) << e.what();
  EXPECT_THROW(r.required<std::string>("b"), Error);
  EXPECT_THROW(r.required<int>("c"), Error);
  EXPECT_EQ(r.required<std::vector<int>>("b"), (std::vector<int>{1, 2}));
  EXPECT_TRUE(r.required<bool>("d"));
  e = catch_error([&] { r.required<int>("zzz"); });
  EXPECT_EQ(e.key(), "zzz");
  EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos);
}

TEST(YamlRecipe, SyntaxErrorsAndDuplicates) {
  Error e = catch_error([] { RecipeNode::parse("a: [1, 2\nb: 3\n", "s.yaml"); });
  EXPECT_EQ(e.file(), "s.yaml");
  EXPECT_NE(std::string(e.what()).find("invalid YAML at line"), std::string::npos) << e.what();
  e = catch_error([] { RecipeNode::parse("a: 1\nb:\n  c: 1\n  c: 2\n", "d.yaml"); });
  EXPECT_EQ(e.key(), "b.c");
  EXPECT_NE(std::string(e.what()).find("duplicate key (line 4"), std::string::npos) << e.what();
  EXPECT_THROW(RecipeNode::parse("- 1\n- 2\n", "l.yaml"), Error);  // top level not a map
  e = catch_error([] { RecipeNode::parse("a: \"caf\xe9\"\n", "latin1.yaml"); });  // Latin-1, not UTF-8
  EXPECT_EQ(e.file(), "latin1.yaml");
  EXPECT_EQ(e.kind(), ErrorKind::Input);
  EXPECT_NE(std::string(e.what()).find("UTF-8"), std::string::npos) << e.what();
  e = catch_error([] { RecipeNode::parse(std::string("a: 1\nb: x\0y\n", 12), "nul.yaml"); });
  EXPECT_EQ(e.file(), "nul.yaml");
  EXPECT_NE(std::string(e.what()).find("control character 0x00 at line 2"), std::string::npos) << e.what();
  EXPECT_EQ(RecipeNode::parse("a: \"tab\there\"\r\n", "ok.yaml").required<std::string>("a"), "tab\there");
  EXPECT_THROW(RecipeNode::load_file("/nonexistent/r.yaml"), Error);
  auto empty = RecipeNode::parse("", "e.yaml");
  EXPECT_EQ(empty.optional<int>("x", 3), 3);
}

TEST(YamlRecipe, Overrides) {
  auto r = RecipeNode::parse(kRecipe, "r.yaml",
                             {"train.steps=50", "train.layers.1.bits=2", "new.deep.key=[1, 2]",
                              "kv_cache.format=nvfp4", "train.lr=true"});
  auto t = r.child("train");
  EXPECT_EQ(t.required<int>("steps"), 50);
  EXPECT_EQ(t.child("layers").at(1).required<int>("bits"), 2);
  EXPECT_EQ(r.child("new").child("deep").required<std::vector<int>>("key"), (std::vector<int>{1, 2}));
  EXPECT_EQ(r.child("kv_cache").required<std::string>("format"), "nvfp4");
  EXPECT_TRUE(t.required<bool>("lr"));
  for (const char* bad : {"noequals", "=3", "a..b=1", "train.layers.9.bits=1",
                          "train.name.x=1", "train.layers.x=1"}) {
    Error e = catch_error([&] { RecipeNode::parse(kRecipe, "r.yaml", {bad}); });
    EXPECT_EQ(e.kind(), ErrorKind::Usage) << bad;
  }
  // An override that introduces a typo is still an unknown key.
  auto r2 = RecipeNode::parse("a: 1\n", "o.yaml", {"b=2"});
  r2.required<int>("a");
  EXPECT_EQ(catch_error([&] { r2.reject_unknown(); }).key(), "b");
}

TEST(YamlRecipe, LoadFile) {
  test::TempDir d;
  write_file_atomic(d.file("r.yaml"), "x: 1\ny: 2\n");
  auto r = RecipeNode::load_file(d.file("r.yaml"));
  r.required<int>("x");
  Error e = catch_error([&] { r.reject_unknown(); });
  EXPECT_EQ(e.file(), d.file("r.yaml"));
  EXPECT_EQ(e.key(), "y");
}

}  // namespace
}  // namespace qarl::io
