// TensorQuantizer state: sentinel, amax validation, max calibration, forward/row parity.
#include <gtest/gtest.h>

#include <cmath>

#include "qarl/core/error.h"
#include "qarl/quant/quantizer.h"
#include "test_util.h"

namespace qarl::quant {
namespace {

QuantizerConfig fp8_cfg(bool constant) {
  QuantizerConfig c;
  c.enable = true;
  c.format = Format::FP8;
  c.use_constant_amax = constant;
  return c;
}
QuantizerConfig nvfp4_cfg() {
  QuantizerConfig c;
  c.enable = true;
  c.format = Format::NVFP4;
  c.block_size = 16;
  return c;
}

TEST(Quantizer, SentinelAndAmaxValidation) {
  TensorQuantizer q(nvfp4_cfg());
  EXPECT_TRUE(q.has_amax_buffer());
  EXPECT_EQ(q.amax_tensor().ndim(), 0);
  EXPECT_FALSE(q.amax_received());
  EXPECT_THROW(q.effective_amax(), Error);
  EXPECT_THROW(q.forward(Tensor::zeros({1, 16}, DType::BF16)), Error);
  q.set_amax(Tensor::scalar(42.0f, DType::BF16), "layers.0.k_bmm_quantizer._amax");
  EXPECT_TRUE(q.amax_received());
  EXPECT_EQ(q.amax_tensor().dtype(), DType::BF16);
  EXPECT_EQ(q.effective_amax(), 42.0f);
  q.set_amax(Tensor::from_f32(std::vector<float>{3.0f}, {1}));  // one element is fine -> 0-d
  EXPECT_EQ(q.amax_tensor().ndim(), 0);
  for (float bad : {INFINITY, -INFINITY, NAN, -2.0f}) {
    try {
      q.set_amax(bad, DType::F32, "x._amax");
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.tensor(), "x._amax");
    }
  }
  EXPECT_THROW(q.set_amax(Tensor::zeros(Shape{2}, DType::F32), "v"), Error);  // not a scalar
  EXPECT_EQ(q.effective_amax(), 3.0f);                        // unchanged by failures
  q.set_amax(kAmaxSentinel);
  EXPECT_FALSE(q.amax_received());
  // Constant amax: no buffer.
  TensorQuantizer c(fp8_cfg(true));
  EXPECT_FALSE(c.has_amax_buffer());
  EXPECT_FALSE(c.amax_tensor().defined());
  EXPECT_THROW(c.set_amax(1.0f), Error);
  EXPECT_EQ(c.effective_amax(), 448.0f);
  EXPECT_THROW(TensorQuantizer(QuantizerConfig{true, Format::NVFP4, 32, false, true}), Error);
}

TEST(Quantizer, MaxCalibrationDoesNotQuantizeThenFreezes) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  TensorQuantizer q(fp8_cfg(false));
  q.start_calibration();
  float want = 0;
  for (int b = 0; b < 3; ++b) {
    std::vector<float> v = test::random_normal(48, float(b + 1), seed + uint64_t(b));
    Tensor x = Tensor::from_f32(v, {3, 16}, DType::BF16);
    for (float f : x.to_f32_vector()) want = std::fmax(want, std::fabs(f));
    Tensor y = q.forward(x);
    EXPECT_TRUE(tensors_bitwise_equal(x, y));  // not quantized while calibrating
  }
  EXPECT_THROW(q.effective_amax(), Error);
  q.finish_calibration();
  EXPECT_EQ(q.amax_tensor().dtype(), DType::BF16);
  EXPECT_EQ(q.amax_tensor().ndim(), 0);
  EXPECT_EQ(q.effective_amax(), want);
  Tensor x = Tensor::from_f32(test::random_normal(32, 1.0f, seed + 9), {2, 16}, DType::BF16);
  EXPECT_TRUE(tensors_bitwise_equal(q.forward(x), fake_quant_fp8(x, want)));
  TensorQuantizer empty(fp8_cfg(false));
  empty.start_calibration();
  EXPECT_THROW(empty.finish_calibration(), Error);
  TensorQuantizer c(fp8_cfg(true));
  EXPECT_THROW(c.start_calibration(), Error);
}

TEST(Quantizer, RowEntryPointMatchesTensorForward) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  for (QuantizerConfig cfg : {fp8_cfg(false), fp8_cfg(true), nvfp4_cfg()}) {
    TensorQuantizer q(cfg);
    if (q.has_amax_buffer()) q.set_amax(2.5f, DType::BF16);
    Tensor x = Tensor::from_f32(test::random_normal(5 * 128, 1.0f, seed), {5, 128}, DType::BF16);
    Tensor whole = q.forward(x);
    Tensor rows = Tensor::empty({5, 128}, DType::BF16);
    for (int r = 0; r < 5; ++r)
      q.forward_row(x.narrow0(r, 1).data(), rows.narrow0(r, 1).data(), 128, DType::BF16);
    EXPECT_TRUE(tensors_bitwise_equal(whole, rows)) << describe(cfg);
    Tensor inplace = x.clone();
    q.forward_(inplace);
    EXPECT_TRUE(tensors_bitwise_equal(whole, inplace));
  }
}

TEST(Quantizer, DisabledPassesThroughAndBackward) {
  TensorQuantizer off;
  Tensor x = Tensor::from_f32(std::vector<float>{1.3f, -7.0f}, {2});
  EXPECT_TRUE(tensors_bitwise_equal(off.forward(x), x));
  QuantizerConfig c = fp8_cfg(false);
  c.pass_through_bwd = false;
  TensorQuantizer q(c);
  q.set_amax(2.0f);
  Tensor dy = Tensor::from_f32(std::vector<float>{1.0f, 1.0f}, {2});
  EXPECT_EQ(q.backward(dy, x).to_f32_vector(), (std::vector<float>{1.0f, 0.0f}));
  TensorQuantizer ste(fp8_cfg(false));
  ste.set_amax(2.0f);
  EXPECT_EQ(ste.backward(dy, x).to_f32_vector(), (std::vector<float>{1.0f, 1.0f}));
}

}  // namespace
}  // namespace qarl::quant
