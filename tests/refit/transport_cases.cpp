#include "refit/transport_cases.h"

#include <cstring>
#include <stdexcept>
#include <tuple>

#include <fmt/format.h>

#include "qarl/core/rng.h"

namespace qarl::refit::test {
namespace {

Tensor random_tensor(Shape shape, DType dt, SequentialRng& rng) {
  Tensor t = Tensor::empty(shape, dt);
  int64_t n = t.numel();
  switch (dt) {
    case DType::I64:
      for (int64_t i = 0; i < n; ++i)
        t.data_as<int64_t>()[i] = int64_t((uint64_t(rng.next_u32()) << 32) | rng.next_u32());
      break;
    case DType::U8:
      for (int64_t i = 0; i < n; ++i) t.data_as<uint8_t>()[i] = uint8_t(rng.next_u32());
      break;
    default: {
      std::vector<float> v(static_cast<size_t>(n));
      for (auto& x : v) x = rng.normal();
      t = Tensor::from_f32(v, shape, dt);
    }
  }
  return t;
}

// A [rows, cols] fp32 tensor transposed into a contiguous [cols, rows] copy.
Tensor transposed_contiguous(int64_t rows, int64_t cols, SequentialRng& rng) {
  Tensor a = random_tensor({rows, cols}, DType::F32, rng);
  Tensor t = Tensor::empty({cols, rows}, DType::F32);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) t.data_as<float>()[j * rows + i] = a.data_as<float>()[i * cols + j];
  return t;
}

}  // namespace

std::vector<NamedTensor> make_case(const std::string& name, uint64_t seed, double total_mb) {
  SequentialRng rng(seed, 7);
  std::vector<NamedTensor> out;
  if (name == "mixed") {
    out.push_back({"kv_amax", Tensor::scalar(42.0f, DType::BF16)});
    out.push_back({"transposed", transposed_contiguous(4, 5, rng)});
    out.push_back({"model.layers.0.self_attn.q_proj.weight", random_tensor({37, 13}, DType::BF16, rng)});
    out.push_back({"ids", random_tensor({7}, DType::I64, rng)});
    out.push_back({"model.layers.0.self_attn.k_bmm_quantizer._amax", Tensor::scalar(3.5f, DType::BF16)});
    out.push_back({"f32_after_bf16_scalar", random_tensor({3, 11}, DType::F32, rng)});
    out.push_back({"half", random_tensor({5}, DType::F16, rng)});
    out.push_back({"bytes", random_tensor({13}, DType::U8, rng)});
    out.push_back({"i64_after_bytes", random_tensor({3}, DType::I64, rng)});
    out.push_back({"empty", Tensor::empty({0, 4}, DType::F32)});
    out.push_back({"f32_scalar", Tensor::scalar(-2.25f, DType::F32)});
    out.push_back({"oversized", random_tensor({1031, 3}, DType::F32, rng)});  // 12372 bytes
    out.push_back({"i64_scalar", random_tensor({}, DType::I64, rng)});
    out.push_back({"model.layers.1.mlp.down_proj.weight", random_tensor({29, 17}, DType::BF16, rng)});
    out.push_back({"transposed_big", transposed_contiguous(61, 7, rng)});
    out.push_back({"model.layers.1.self_attn.v_bmm_quantizer._amax", Tensor::scalar(1.75f, DType::BF16)});
    out.push_back({"tail_f32", random_tensor({19}, DType::F32, rng)});
  } else if (name == "large") {
    // Layers of a small transformer (hidden 1024, MLP 2816, bf16) until total_mb is reached.
    const int64_t h = 1024, inter = 2816;
    double bytes = 0;
    for (int layer = 0; bytes < total_mb * 1e6; ++layer) {
      std::string l = fmt::format("model.layers.{}.", layer);
      for (auto [n, shape] : std::vector<std::pair<std::string, Shape>>{
               {"self_attn.q_proj.weight", {h, h}}, {"self_attn.k_proj.weight", {h / 4, h}},
               {"self_attn.v_proj.weight", {h / 4, h}}, {"self_attn.o_proj.weight", {h, h}},
               {"mlp.gate_proj.weight", {inter, h}}, {"mlp.up_proj.weight", {inter, h}},
               {"mlp.down_proj.weight", {h, inter}}, {"input_layernorm.weight", {h}}}) {
        Tensor t = Tensor::empty(shape, DType::BF16);
        // Cheap deterministic fill (random generation of hundreds of MB would dominate).
        auto* p = t.data_as<uint16_t>();
        uint32_t x = uint32_t(seed) ^ uint32_t(layer * 7919);
        for (int64_t i = 0; i < t.numel(); ++i) p[i] = uint16_t((x = x * 1664525u + 1013904223u) >> 16);
        bytes += double(t.nbytes());
        out.push_back({l + n, t});
      }
      out.push_back({l + "self_attn.k_bmm_quantizer._amax", Tensor::scalar(2.0f + layer, DType::BF16)});
      out.push_back({l + "self_attn.v_bmm_quantizer._amax", Tensor::scalar(3.0f + layer, DType::BF16)});
    }
  } else if (name == "odd") {
    // Like "large" with sizes that are multiples of nothing (hidden 1021, MLP 2803, 257 K/V
    // rows), an fp32 norm, so no tensor ends on a 512-byte or batch boundary by design.
    const int64_t h = 1021, inter = 2803, kv = 257;
    double bytes = 0;
    for (int layer = 0; bytes < total_mb * 1e6; ++layer) {
      std::string l = fmt::format("model.layers.{}.", layer);
      for (auto [n, shape, dt] : std::vector<std::tuple<std::string, Shape, DType>>{
               {"self_attn.q_proj.weight", {h, h}, DType::BF16},
               {"self_attn.k_proj.weight", {kv, h}, DType::BF16},
               {"self_attn.v_proj.weight", {kv, h}, DType::BF16},
               {"self_attn.o_proj.weight", {h, h}, DType::BF16},
               {"mlp.gate_proj.weight", {inter, h}, DType::BF16},
               {"mlp.up_proj.weight", {inter, h}, DType::BF16},
               {"mlp.down_proj.weight", {h, inter}, DType::BF16},
               {"input_layernorm.weight", {h}, DType::F32}}) {
        Tensor t = Tensor::empty(shape, dt);
        auto* p = static_cast<unsigned char*>(t.data());
        uint32_t x = uint32_t(seed) ^ uint32_t(layer * 7919 + 13);
        for (size_t i = 0; i < t.nbytes(); ++i) p[i] = uint8_t((x = x * 1664525u + 1013904223u) >> 24);
        bytes += double(t.nbytes());
        out.push_back({l + n, t});
      }
      out.push_back({l + "self_attn.k_bmm_quantizer._amax", Tensor::scalar(2.0f + layer, DType::BF16)});
      out.push_back({l + "self_attn.v_bmm_quantizer._amax", Tensor::scalar(3.0f + layer, DType::BF16)});
    }
  } else {
    throw std::runtime_error("unknown transport case " + name);
  }
  return out;
}

RefitMetadata metadata_of(const std::vector<NamedTensor>& tensors) {
  RefitMetadata m;
  for (const auto& t : tensors) m.push_back({t.name, t.tensor.shape(), t.tensor.dtype()});
  return m;
}

std::string compare_streams(const std::vector<NamedTensor>& want, const std::vector<NamedTensor>& got) {
  if (want.size() != got.size())
    return fmt::format("{} tensors received, {} expected", got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i].name != got[i].name)
      return fmt::format("tensor {}: name '{}' != '{}'", i, got[i].name, want[i].name);
    if (!tensors_bitwise_equal(want[i].tensor, got[i].tensor))
      return fmt::format("tensor '{}' differs ({} {} vs {} {})", want[i].name,
                         dtype_name(got[i].tensor.dtype()), shape_str(got[i].tensor.shape()),
                         dtype_name(want[i].tensor.dtype()), shape_str(want[i].tensor.shape()));
    auto addr = reinterpret_cast<uintptr_t>(got[i].tensor.data());
    if (got[i].tensor.numel() > 0 && addr % dtype_size(got[i].tensor.dtype()) != 0)
      return fmt::format("tensor '{}' restored at a misaligned address", want[i].name);
  }
  return "";
}

}  // namespace qarl::refit::test
