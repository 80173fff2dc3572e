// TensorTableTarget: the ready-made RefitTarget keeps serving storage in place.
#include <gtest/gtest.h>

#include "qarl/core/error.h"
#include "qarl/refit/loader.h"
#include "qarl/refit/tensor_table_target.h"
#include "refit/refit_fakes.h"
#include "test_util.h"

namespace qarl::refit {
namespace {

using test::FakeEngine;
using test::FakeTrainer;
using test::TinyConfig;

// The same runtime layout as FakeEngine, registered into a TensorTableTarget.
TensorTableTarget table_like(const FakeEngine& layout, std::map<std::string, Tensor>& storage) {
  TensorTableTarget t;
  for (const auto& p : layout.params_) {
    storage[p.name] = layout.serving.at(p.name).clone();
    t.add(p, storage[p.name]);
  }
  t.set_non_local_prefixes(layout.non_local_prefixes());
  return t;
}

TEST(RefitTensorTable, RefitsInPlaceAndFailuresLeaveServingUntouched) {
  TinyConfig c;
  c.seed = qarl::test::fresh_seed();
  c.input_quant = true;
  SCOPED_TRACE(c.seed);
  FakeTrainer trainer(c);
  FakeEngine layout(c), reference(c);
  std::map<std::string, Tensor> storage;
  TensorTableTarget table = table_like(layout, storage);
  std::map<std::string, const void*> ptrs;
  for (const auto& [n, t] : storage) ptrs[n] = t.data();

  auto plan = plan_export(trainer);
  auto load_all = [&](RefitTarget& target, const std::function<Tensor(const std::string&, const Tensor&)>& f) {
    StrictLoader loader(target, NameMapper::dense());
    loader.begin();
    for_each_export(plan, [&](const std::string& n, const Tensor& t) { loader.load(n, f(n, t)); });
    loader.finish();
  };
  auto same = [](const std::string&, const Tensor& t) { return t; };
  load_all(reference, same);
  load_all(table, same);
  for (const auto& [n, t] : storage) {
    EXPECT_EQ(t.data(), ptrs[n]) << n;  // in place
    EXPECT_TRUE(tensors_bitwise_equal(t, reference.serving.at(n))) << n;
  }
  // A failing refit (non-finite K/V amax at the end of the stream, after every weight was
  // staged) leaves every serving tensor bit-identical.
  std::map<std::string, Tensor> before;
  for (const auto& [n, t] : storage) before[n] = t.clone();
  FakeTrainer other([&] { TinyConfig d = c; d.seed += 1; return d; }());
  auto plan2 = plan_export(other);
  StrictLoader loader(table, NameMapper::dense());
  loader.begin();
  EXPECT_THROW(for_each_export(plan2, [&](const std::string& n, const Tensor& t) {
                 loader.load(n, n == "model.layers.2.self_attn.v_bmm_quantizer._amax"
                                    ? Tensor::scalar(NAN, t.dtype()) : t);
               }),
               Error);
  for (const auto& [n, t] : storage) EXPECT_TRUE(tensors_bitwise_equal(t, before.at(n))) << n;
}

TEST(RefitTensorTable, RegistrationIsChecked) {
  TensorTableTarget t;
  RuntimeParam p{"a.weight", {2, 3}, DType::BF16, {}, ParamKind::Weight};
  EXPECT_THROW(t.add(p, Tensor::zeros({3, 2}, DType::BF16)), Error);
  EXPECT_THROW(t.add(p, Tensor::zeros({2, 3}, DType::F32)), Error);
  t.add(p, Tensor::zeros({2, 3}, DType::BF16));
  EXPECT_THROW(t.add(p, Tensor::zeros({2, 3}, DType::BF16)), Error);
}

}  // namespace
}  // namespace qarl::refit
