// safetensors reader/writer: every malformed-header case built byte by byte, known-answer
// layouts from the reference crate's own tests, byte-exact round trips.
#include "qarl/io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "test_util.h"

namespace qarl::io {
namespace {

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = char((n >> (8 * i)) & 0xFF);
  return s;
}
// A file: length prefix, `header` verbatim (no padding added), then `data`.
std::string file_bytes(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}
SafetensorsFile parse(const std::string& bytes, const std::string& label = "mem.safetensors") {
  return SafetensorsFile::from_bytes(std::make_shared<const std::string>(bytes), label);
}
// Expects an Error(Input) whose message contains every fragment.
void expect_bad(const std::string& bytes, std::vector<std::string> fragments) {
  try {
    parse(bytes, "bad.safetensors");
    ADD_FAILURE() << "accepted a malformed file";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Input);
    EXPECT_EQ(e.file(), "bad.safetensors");
    for (const auto& f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos)
        << "missing '" << f << "' in: " << e.what();
  }
}
std::string f32_bytes(std::vector<float> v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}
const std::string kT = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

TEST(Safetensors, AcceptsMinimalFiles) {
  auto f = parse(file_bytes("{}", ""));
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_FALSE(f.metadata_in_order().has_value());
  std::string h = "{" + kT + "}";
  h.append(8 - h.size() % 8, ' ');  // padding spaces, as the reference writer adds
  auto g = parse(file_bytes(h, f32_bytes({1.5f, -2.0f})));
  ASSERT_EQ(g.tensors().size(), 1u);
  EXPECT_EQ(g.get("t").to_f32_vector(), (std::vector<float>{1.5f, -2.0f}));
  EXPECT_TRUE(g.get("t").is_borrowed());
}

TEST(Safetensors, RejectsTooSmallFiles) {
  expect_bad("", {"too small"});
  expect_bad(std::string(7, '\0'), {"too small"});
}

TEST(Safetensors, RejectsHeaderLengthOverLimit) {
  expect_bad(le64(kMaxSafetensorsHeader + 1) + "{}", {"exceeds the limit"});
  expect_bad(le64(~0ull) + "{}", {"exceeds the limit"});
}

TEST(Safetensors, RejectsHeaderPastEnd) {
  expect_bad(le64(100) + "{}", {"past the end"});
  std::string ok = file_bytes("{" + kT + "}", f32_bytes({1, 2}));
  expect_bad(ok.substr(0, 20), {"past the end"});  // truncated inside the header
}

TEST(Safetensors, RejectsBadJson) {
  expect_bad(file_bytes("{\"t\":", ""), {"invalid JSON"});
  expect_bad(file_bytes("{} x", ""), {"invalid JSON"});
  expect_bad(file_bytes("[]", ""), {"start with '{'"});
  expect_bad(file_bytes(" {}", ""), {"start with '{'"});
  expect_bad(file_bytes("", ""), {"start with '{'"});
  expect_bad(file_bytes("{\"\xff\":1}", ""), {"invalid JSON"});  // not UTF-8
  expect_bad(file_bytes("{\"t\":" + std::string(100, '[') + std::string(100, ']') + "}", ""),
             {"nested deeper"});
}

TEST(Safetensors, RejectsBadEntries) {
  auto one = [](const std::string& entry, const std::string& data = "") {
    return file_bytes("{\"t\":" + entry + "}", data);
  };
  expect_bad(one(R"({"dtype":"F7","shape":[2],"data_offsets":[0,8]})", "12345678"),
             {"tensor 't'", "unknown or unsupported dtype 'F7'"});
  expect_bad(one(R"({"dtype":"F8_E5M2","shape":[1],"data_offsets":[0,1]})", "1"),
             {"unsupported dtype 'F8_E5M2'"});
  expect_bad(one(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})", "12345678"),
             {"tensor 't'", "needs 12 bytes", "span 8"});
  expect_bad(one(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})", "12345678"),
             {"begin > end"});
  expect_bad(one(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})", "12345678"),
             {"non-negative integers"});
  expect_bad(one(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})", "12345678"),
             {"non-negative integers"});
  expect_bad(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,9]})", "12345678"),
             {"[begin, end]"});
  expect_bad(one(R"({"dtype":"F32","shape":[2]})", "12345678"), {"missing 'data_offsets'"});
  expect_bad(one(R"({"shape":[2],"data_offsets":[0,8]})", "12345678"), {"missing 'dtype'"});
  expect_bad(one(R"({"dtype":"F32","data_offsets":[0,8]})", "12345678"), {"missing 'shape'"});
  expect_bad(one(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})", "12345678"), {"'shape'"});
  expect_bad(one(R"({"dtype":4,"shape":[2],"data_offsets":[0,8]})", "12345678"), {"'dtype'"});
  expect_bad(one(R"([1,2])"), {"must be an object"});
  expect_bad(one(R"({"dtype":"U8","shape":[4294967296,4294967296,16],"data_offsets":[0,0]})"),
             {"overflows"});
  expect_bad(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551616]})"),
             {"non-negative integers"});
}

TEST(Safetensors, RejectsBadRanges) {
  std::string a = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  // end past the data section (file truncated inside the data)
  expect_bad(file_bytes("{" + a + "}", "1234"), {"tensor 'a'", "past the end of the data section"});
  // overlap
  std::string b = R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]})";
  expect_bad(file_bytes("{" + a + "," + b + "}", "12345678"), {"tensor 'b'", "overlap tensor 'a'"});
  // gap: reference crate requires the tensors to tile the data section
  std::string c = R"("c":{"dtype":"F32","shape":[1],"data_offsets":[12,16]})";
  expect_bad(file_bytes("{" + a + "," + c + "}", std::string(16, 'x')), {"tensor 'c'", "gap"});
  std::string c0 = R"("c":{"dtype":"F32","shape":[1],"data_offsets":[4,8]})";
  expect_bad(file_bytes("{" + c0 + "}", std::string(8, 'x')), {"tensor 'c'", "gap"});
  // trailing bytes after the last tensor
  expect_bad(file_bytes("{" + a + "}", std::string(9, 'x')), {"1 trailing bytes"});
  expect_bad(file_bytes("{}", "x"), {"1 trailing bytes"});
}

TEST(Safetensors, RejectsDuplicates) {
  std::string a = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  std::string a2 = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]})";
  expect_bad(file_bytes("{" + a + "," + a2 + "}", std::string(16, 'x')), {"duplicate key", "'a'"});
  expect_bad(file_bytes(R"({"a":{"dtype":"F32","dtype":"I32","shape":[2],"data_offsets":[0,8]}})",
                        std::string(8, 'x')), {"duplicate key", "'dtype'"});
  expect_bad(file_bytes(R"({"__metadata__":{"k":"1","k":"2"}})", ""), {"duplicate key", "'k'"});
}

TEST(Safetensors, Metadata) {
  expect_bad(file_bytes(R"({"__metadata__":{"k":1}})", ""), {"key '__metadata__.k'", "strings"});
  expect_bad(file_bytes(R"({"__metadata__":["k"]})", ""), {"'__metadata__' must be an object"});
  auto f = parse(file_bytes(R"({"__metadata__":{"z":"1","a":"x\ny"}})", ""));
  EXPECT_EQ(f.metadata().at("a"), "x\ny");
  ASSERT_TRUE(f.metadata_in_order());
  EXPECT_EQ((*f.metadata_in_order())[0].first, "z");  // file order kept
  auto g = parse(file_bytes(R"({"__metadata__":null})", ""));
  EXPECT_FALSE(g.metadata_in_order());
}

TEST(Safetensors, UnknownFieldsInEntryIgnoredAsTheCrateDoes) {
  auto f = parse(file_bytes(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":[1]}})", "z"));
  EXPECT_EQ(f.info("t").end, 1u);
}

TEST(Safetensors, FileOrderIsOffsetOrderAndUnalignedDataIsCopied) {
  // Header of odd length (no padding): data starts unaligned; values must still be right.
  std::string h = R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"e":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  if (h.size() % 4 == 0) h += " ";
  auto f = parse(file_bytes(h, f32_bytes({3.0f, 4.0f})));
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.tensors()[0].name, "e");
  EXPECT_EQ(f.tensors()[1].name, "a");
  EXPECT_EQ(f.tensors()[2].name, "b");
  EXPECT_EQ(f.get("b").item(), 4.0);
  EXPECT_FALSE(f.get("b").is_borrowed());
  EXPECT_THROW(f.get("nope"), Error);
}

// Known answers: the byte layouts asserted in the reference crate's tests (tensor.rs).
TEST(Safetensors, WriterMatchesReferenceLayout) {
  test::TempDir d;
  std::vector<float> v = {0, 1, 2, 3, 4, 5};
  save_safetensors(d.file("a.safetensors"), {{"attn.0", Tensor::from_f32(v, {1, 2, 3})}});
  std::string got = read_file(d.file("a.safetensors"));
  std::string header = R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
  EXPECT_EQ(got, le64(64) + header + f32_bytes(v));
  save_safetensors(d.file("b.safetensors"), {{"attn0", Tensor::from_f32(v, {1, 1, 2, 3})}});
  EXPECT_EQ(read_file(d.file("b.safetensors")),
            le64(72) + R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})" +
                std::string(7, ' ') + f32_bytes(v));
  save_safetensors(d.file("c.safetensors"), {});
  EXPECT_EQ(read_file(d.file("c.safetensors")), le64(8) + "{}      ");
  save_safetensors(d.file("m.safetensors"), {}, {{"framework", "pt"}});
  EXPECT_EQ(read_file(d.file("m.safetensors")),
            le64(40) + R"({"__metadata__":{"framework":"pt"}})" + std::string(5, ' '));
}

TEST(Safetensors, RoundTripIsByteExact) {
  uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(seed);
  test::TempDir d;
  auto r = test::random_normal(7 * 13, 1.0f, seed);
  std::vector<std::pair<std::string, Tensor>> ts = {
      {"w \"quoted\"\n\x01 \xc3\xa9", Tensor::from_f32(r, {7, 13}, DType::BF16)},
      {"empty", Tensor::zeros({0, 5}, DType::F16)},
      {"s", Tensor::scalar(0.1f, DType::BF16)},
      {"i", Tensor::zeros({3}, DType::I64)},
      {"f", Tensor::from_f32(r, {91}, DType::F32)},
  };
  save_safetensors_ordered(d.file("x.safetensors"), ts, OrderedMetadata{{"z", "1"}, {"a", "\t"}});
  auto f = SafetensorsFile::open(d.file("x.safetensors"));
  ASSERT_EQ(f.tensors().size(), ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    EXPECT_EQ(f.tensors()[i].name, ts[i].first);  // given order is file order
    EXPECT_TRUE(tensors_bitwise_equal(f.get(ts[i].first), ts[i].second)) << ts[i].first;
  }
  EXPECT_EQ(f.header_size() % 8, 0u);
  resave_safetensors(f, d.file("y.safetensors"));
  EXPECT_EQ(read_file(d.file("x.safetensors")), read_file(d.file("y.safetensors")));
}

TEST(Safetensors, WriterRejectsBadInputAndWritesNothing) {
  test::TempDir d;
  auto t = Tensor::zeros({2}, DType::F32);
  std::string p = d.file("w.safetensors");
  EXPECT_THROW(save_safetensors(p, {{"a", t}, {"a", t}}), Error);
  EXPECT_THROW(save_safetensors(p, {{"__metadata__", t}}), Error);
  EXPECT_THROW(save_safetensors(p, {{"\xff", t}}), Error);
  EXPECT_THROW(save_safetensors(p, {{"u", Tensor()}}), Error);
  EXPECT_FALSE(std::filesystem::exists(p));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(d.path()), {}), 0);
}

TEST(Safetensors, OpenNamesTheFile) {
  test::TempDir d;
  try {
    SafetensorsFile::open(d.file("missing.safetensors"));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.file(), d.file("missing.safetensors"));
  }
  EXPECT_THROW(SafetensorsFile::open(d.path()), Error);  // a directory
  write_file_atomic(d.file("empty.safetensors"), "");
  EXPECT_THROW(SafetensorsFile::open(d.file("empty.safetensors")), Error);
}

}  // namespace
}  // namespace qarl::io
