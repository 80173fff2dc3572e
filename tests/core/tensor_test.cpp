#include <gtest/gtest.h>

#include "qarl/core/error.h"
#include "qarl/core/tensor.h"
#include "test_util.h"

namespace qarl {
namespace {

TEST(Tensor, BasicsAndViews) {
  std::vector<float> v = {1, 2, 3, 4, 5, 6};
  Tensor t = Tensor::from_f32(v, {2, 3});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.nbytes(), 24u);
  EXPECT_EQ(t.dim(-1), 3);
  Tensor r = t.narrow0(1, 1);
  EXPECT_EQ(r.to_f32_vector(), (std::vector<float>{4, 5, 6}));
  EXPECT_EQ(t.reshape({3, 2}).shape(), (Shape{3, 2}));
  EXPECT_THROW(t.reshape({4, 2}), Error);
  EXPECT_THROW(t.narrow0(1, 2), Error);
  Tensor s = Tensor::scalar(42.0f, DType::BF16);
  EXPECT_EQ(s.ndim(), 0);
  EXPECT_EQ(s.nbytes(), 2u);
  EXPECT_EQ(s.item(), 42.0);
}

TEST(Tensor, ConversionsRoundTrip) {
  auto v = test::random_normal(1001);
  Tensor f = Tensor::from_f32(v, {7, 11, 13});
  Tensor b = f.to(DType::BF16);
  Tensor back = b.to(DType::F32).to(DType::BF16);
  EXPECT_TRUE(tensors_bitwise_equal(b, back));
  Tensor h = f.to(DType::F16).to(DType::F32).to(DType::F16);
  EXPECT_TRUE(tensors_bitwise_equal(h, f.to(DType::F16)));
  EXPECT_TRUE(tensors_bitwise_equal(f.to(DType::F64).to(DType::F32), f));
}

TEST(Tensor, BorrowKeepsOwnerAlive) {
  auto owner = std::make_shared<std::vector<float>>(std::vector<float>{1, 2, 3});
  Tensor t = Tensor::borrow(owner->data(), {3}, DType::F32, owner);
  std::weak_ptr<std::vector<float>> w = owner;
  owner.reset();
  EXPECT_FALSE(w.expired());
  EXPECT_TRUE(t.is_borrowed());
  EXPECT_EQ(t.to_f32_vector()[2], 3.0f);
}

TEST(Error, CarriesContext) {
  try {
    throw err("bad shape {}", 3).file("a.safetensors").tensor("w").key("k");
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "a.safetensors: tensor 'w': key 'k': bad shape 3");
    EXPECT_EQ(e.kind(), ErrorKind::Input);
  }
}

}  // namespace
}  // namespace qarl
