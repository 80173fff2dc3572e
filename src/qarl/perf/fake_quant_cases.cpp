// `qarl bench` cases for fake quantization: FP8 per-tensor and NVFP4 block-16 on a bf16
// tensor [rows, 128] (the GPU default, [2^21, 128], is the issue-9 target tensor), on the
// CPU (qarl/quant) and on the GPU (kernels/cuda). Bytes moved = input read + output written.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "qarl/core/rng.h"
#include "qarl/core/tensor.h"
#include "qarl/kernels/cuda/device.h"
#include "qarl/kernels/cuda/fake_quant.h"
#include "qarl/perf/registry.h"
#include "qarl/quant/fake_quant.h"

namespace qarl::perf {
namespace {

constexpr int64_t kCols = 128;

// A random normal tensor: 2^20 fresh values tiled (random data, not zeros, which can run
// faster than real data; tiling keeps set-up cheap for the 2^28-element GPU tensor).
Tensor random_bf16(int64_t rows) {
  const int64_t n = rows * kCols, tile = std::min<int64_t>(n, int64_t(1) << 20);
  CounterRng rng(20261129, 9);
  std::vector<float> v(static_cast<size_t>(tile));
  for (int64_t i = 0; i < tile; ++i) v[size_t(i)] = 3.0f * rng.normal(0, uint64_t(i));
  Tensor t = Tensor::from_f32(v, {tile}, DType::BF16);
  Tensor x = Tensor::empty({rows, kCols}, DType::BF16);
  auto* dst = static_cast<char*>(x.data());
  for (int64_t off = 0; off < n; off += tile)
    std::memcpy(dst + off * 2, t.data(), size_t(std::min(tile, n - off)) * 2);
  return x;
}

float amax_of(const Tensor& x) {
  float m = 0;
  const auto* p = x.data_as<uint16_t>();
  for (int64_t i = 0; i < std::min<int64_t>(x.numel(), int64_t(1) << 20); ++i) {
    uint32_t u = uint32_t(p[i] & 0x7fff) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    m = std::max(m, f);
  }
  return m;
}

std::vector<Result> run_cpu(const Options& opt) {
  const int64_t rows = opt.rows ? opt.rows : opt.quick ? 4096 : (int64_t(1) << 18);
  const int reps = opt.reps ? opt.reps : opt.quick ? 3 : 10;
  Tensor x = random_bf16(rows);
  const float amax = amax_of(x);
  std::vector<Result> out;
  for (quant::Format f : {quant::Format::FP8, quant::Format::NVFP4}) {
    Tensor y = x.clone();
    double s = time_median_cpu_s([&] { y.copy_from(x); quant::fake_quant_(y, f, amax); }, 1, reps);
    // fake_quant_ is in place: time the copy that restores y alone and subtract it, so
    // the figure is one read and one write of the tensor like the GPU's out-of-place call.
    double c = time_median_cpu_s([&] { y.copy_from(x); }, 1, reps);
    Result r{std::string("fake_quant_") + quant::format_name(f), "BF16", shape_str(x.shape()),
             std::max(s - c, 1e-9), 2.0 * double(x.nbytes()), 0,
             fmt::format("isa {}, in place (copy subtracted)", quant::fake_quant_isa())};
    out.push_back(r);
  }
  return out;
}

std::vector<Result> run_cuda(const Options& opt) {
  namespace gpu = kernels::gpu;
  const int64_t rows = opt.rows ? opt.rows : opt.quick ? (int64_t(1) << 14) : (int64_t(1) << 21);
  const int reps = opt.reps ? opt.reps : opt.quick ? 5 : 30;
  Tensor xh = random_bf16(rows);
  const float amax = amax_of(xh);
  Tensor x = xh.to_device(Device::CUDA);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), Device::CUDA);
  const double bytes = 2.0 * double(x.nbytes());
  std::vector<Result> out;
  double s = gpu::time_median_s([&] { gpu::copy_async(y, x); }, 3, reps);
  out.push_back({"copy", "BF16", shape_str(x.shape()), s, bytes, 0, "cudaMemcpyAsync D2D"});
  s = gpu::time_median_s([&] { gpu::fake_quant_fp8(x, amax, y); }, 3, reps);
  out.push_back({"fake_quant_fp8", "BF16", shape_str(x.shape()), s, bytes, 0, ""});
  s = gpu::time_median_s([&] { gpu::fake_quant_nvfp4(x, amax, y); }, 3, reps);
  out.push_back({"fake_quant_nvfp4", "BF16", shape_str(x.shape()), s, bytes, 0,
                 "Triton division (ModelOpt)"});
  s = gpu::time_median_s(
      [&] { gpu::fake_quant_nvfp4(x, amax, y, nullptr, quant::Nvfp4Division::kIeee); }, 3, reps);
  out.push_back({"fake_quant_nvfp4_ieee", "BF16", shape_str(x.shape()), s, bytes, 0,
                 "IEEE division (PyTorch formulas)"});
  // The KV codecs: FP8 writes 1 byte per element, NVFP4 0.5 + 1/16.
  Tensor codes = Tensor::empty(x.shape(), DType::U8, Device::CUDA);
  s = gpu::time_median_s([&] { gpu::encode_fp8(x, amax, codes); }, 3, reps);
  out.push_back({"kv_encode_fp8", "BF16", shape_str(x.shape()), s,
                 double(x.nbytes()) + double(x.numel()), 0, "simple kernel"});
  s = gpu::time_median_s([&] { gpu::decode_fp8(codes, amax, y); }, 3, reps);
  out.push_back({"kv_decode_fp8", "BF16", shape_str(x.shape()), s,
                 double(x.nbytes()) + double(x.numel()), 0, "simple kernel"});
  return out;
}

}  // namespace

void add_fake_quant_benchmarks(Registry& r) {
  r.add({"fake_quant", Backend::CPU, "FP8 / NVFP4 fake quant, bf16 [2^18, 128]", run_cpu});
  r.add({"fake_quant", Backend::CUDA,
         "device copy, FP8 / NVFP4 fake quant and FP8 KV codec, bf16 [2^21, 128]", run_cuda});
}

}  // namespace qarl::perf
