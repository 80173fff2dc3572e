#include "qarl/core/tensor.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>
#include <cstring>

#include <fmt/format.h>

#include "qarl/core/env.h"
#include "qarl/core/error.h"
#include "qarl/core/half.h"

#ifdef QARL_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace qarl {

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

// ---- Storage -------------------------------------------------------------------------

#ifdef QARL_HAVE_CUDA
namespace {
// Freed device blocks are kept for reuse by exact size: cudaMalloc costs tens of
// microseconds and cudaFree synchronizes the device, which a decode step allocating its
// activations would pay on every call. Reuse is safe for work on the legacy default stream
// (where all of qarl's kernels run): a new owner's work is ordered after the old owner's, and
// the legacy stream also waits for other blocking streams. Work on a non-blocking stream
// must be finished before the tensor it uses is released. The cache is not capped by
// default (as PyTorch's allocator): a training step frees ~15 GB of activations at the
// Qwen3-0.6B shape, and with the earlier 8 GiB cap the rest went through cudaFree, whose
// device synchronizations left the H200 idle for ~20 ms of a 215 ms step. QARL_CUDA_CACHE_MB
// caps the cached bytes (e.g. when another process shares the GPU); on an out-of-memory the
// cache is emptied and the allocation retried.
class DeviceBlockCache {
 public:
  void* take(size_t bytes) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = free_.find(bytes);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached_ -= bytes;
    return p;
  }
  void give(void* p, size_t bytes) {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (cached_ + bytes <= limit()) {
        free_[bytes].push_back(p);
        cached_ += bytes;
        return;
      }
    }
    cudaFree(p);
  }
  void release_all() {
    std::lock_guard<std::mutex> g(mu_);
    for (auto& [n, v] : free_)
      for (void* p : v) cudaFree(p);
    free_.clear();
    cached_ = 0;
  }

 private:
  static size_t limit() {
    static const size_t l = [] {
      const auto mb = env_number("QARL_CUDA_CACHE_MB");  // core/env.h: checks the value
      return mb ? size_t(*mb) << 20 : SIZE_MAX;
    }();
    return l;
  }
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
};
// Leaked on purpose: device memory must not be freed after the CUDA runtime shut down.
DeviceBlockCache& device_cache() {
  static DeviceBlockCache* c = new DeviceBlockCache();
  return *c;
}
}  // namespace
#endif

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  std::shared_ptr<Storage> s(new Storage());
  s->nbytes_ = nbytes;
  s->device_ = device;
  s->owned_ = true;
  size_t alloc = nbytes == 0 ? 64 : (nbytes + 63) / 64 * 64;
  if (device == Device::CPU) {
    s->data_ = std::aligned_alloc(64, alloc);  // 64: a cache line, and AVX-512 loads
    if (!s->data_) throw runtime_err("out of host memory allocating {} bytes", nbytes);
  } else {
#ifdef QARL_HAVE_CUDA
    s->data_ = device_cache().take(alloc);
    if (!s->data_) {
      cudaError_t e = cudaMalloc(&s->data_, alloc);
      if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        device_cache().release_all();
        e = cudaMalloc(&s->data_, alloc);
      }
      if (e != cudaSuccess)
        throw runtime_err("cudaMalloc of {} bytes failed: {}", nbytes, cudaGetErrorString(e));
    }
#else
    throw runtime_err("this qarl was built without CUDA; cannot allocate device memory");
#endif
  }
  return s;
}

std::shared_ptr<Storage> Storage::borrow(void* data, size_t nbytes, Device device,
                                         std::shared_ptr<const void> keepalive) {
  std::shared_ptr<Storage> s(new Storage());
  s->data_ = data;
  s->nbytes_ = nbytes;
  s->device_ = device;
  s->owned_ = false;
  s->keepalive_ = std::move(keepalive);
  return s;
}

Storage::~Storage() {
  if (!owned_ || !data_) return;
  if (device_ == Device::CPU) {
    std::free(data_);
  } else {
#ifdef QARL_HAVE_CUDA
    device_cache().give(data_, nbytes_ == 0 ? 64 : (nbytes_ + 63) / 64 * 64);
#endif
  }
}

// ---- Tensor ----------------------------------------------------------------------------

static void check_shape(const Shape& shape) {
  for (int64_t d : shape)
    if (d < 0) throw err("negative dimension in shape {}", shape_str(shape));
}

Tensor Tensor::empty(Shape shape, DType dtype, Device device) {
  check_shape(shape);
  Tensor t;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.storage_ = Storage::allocate(t.nbytes(), device);
  return t;
}

Tensor Tensor::zeros(Shape shape, DType dtype, Device device) {
  Tensor t = empty(std::move(shape), dtype, device);
  if (device == Device::CPU) {
    std::memset(t.data(), 0, t.nbytes());
  } else {
#ifdef QARL_HAVE_CUDA
    cudaMemset(t.data(), 0, t.nbytes());
#endif
  }
  return t;
}

Tensor Tensor::borrow(void* data, Shape shape, DType dtype, std::shared_ptr<const void> keepalive,
                      Device device) {
  check_shape(shape);
  Tensor t;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.storage_ = Storage::borrow(data, t.nbytes(), device, std::move(keepalive));
  return t;
}

Tensor Tensor::from_f32(std::span<const float> values, Shape shape, DType dtype) {
  if (shape_numel(shape) != int64_t(values.size()))
    throw err("from_f32: {} values do not fill shape {}", values.size(), shape_str(shape));
  Tensor f = Tensor::empty(std::move(shape), DType::F32);
  std::memcpy(f.data(), values.data(), values.size() * 4);
  return dtype == DType::F32 ? f : f.to(dtype);
}

Tensor Tensor::scalar(float value, DType dtype) { return from_f32({&value, 1}, {}, dtype); }

int64_t Tensor::dim(int i) const {
  int n = ndim();
  if (i < 0) i += n;
  if (i < 0 || i >= n) throw err("dimension {} out of range for a {}-d tensor", i, n);
  return shape_[size_t(i)];
}

Tensor Tensor::reshape(Shape shape) const {
  check_shape(shape);
  if (shape_numel(shape) != numel())
    throw err("cannot reshape {} to {}", shape_str(shape_), shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::narrow0(int64_t start, int64_t length) const {
  if (ndim() == 0 || start < 0 || length < 0 || start + length > shape_[0])
    throw err("narrow0({}, {}) out of range for shape {}", start, length, shape_str(shape_));
  Tensor t = *this;
  int64_t row = shape_numel(Shape(shape_.begin() + 1, shape_.end()));
  t.offset_ += size_t(start * row) * dtype_size(dtype_);
  t.shape_[0] = length;
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = Tensor::empty(shape_, dtype_, device());
  t.copy_from(*this);
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  if (src.shape_ != shape_ || src.dtype_ != dtype_)
    throw err("copy_from: {} {} into {} {}", dtype_name(src.dtype_), shape_str(src.shape_),
              dtype_name(dtype_), shape_str(shape_));
  if (nbytes() == 0) return;
  if (device() == Device::CPU && src.device() == Device::CPU) {
    std::memmove(data(), src.data(), nbytes());
    return;
  }
#ifdef QARL_HAVE_CUDA
  cudaError_t e = cudaMemcpy(data(), src.data(), nbytes(), cudaMemcpyDefault);
  if (e != cudaSuccess) throw runtime_err("cudaMemcpy failed: {}", cudaGetErrorString(e));
#else
  throw runtime_err("this qarl was built without CUDA");
#endif
}

Tensor Tensor::to_device(Device d) const {
  Tensor t = Tensor::empty(shape_, dtype_, d);
  t.copy_from(*this);
  return t;
}

namespace {
double load_as_f64(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::F64: return static_cast<const double*>(p)[i];
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::U8: return static_cast<const uint8_t*>(p)[i];
    case DType::BOOL: return static_cast<const uint8_t*>(p)[i] ? 1.0 : 0.0;
    case DType::I8: return static_cast<const int8_t*>(p)[i];
    case DType::I16: return static_cast<const int16_t*>(p)[i];
    case DType::I32: return static_cast<const int32_t*>(p)[i];
    case DType::I64: return double(static_cast<const int64_t*>(p)[i]);
    case DType::F8_E4M3: break;
  }
  throw err("cannot read {} values as numbers here (decode with qarl/quant/formats.h)",
            dtype_name(t));
}
}  // namespace

Tensor Tensor::to(DType dst) const {
  if (dst == dtype_) return clone();
  if (device() != Device::CPU) throw err("Tensor::to(dtype) runs on CPU tensors only");
  auto is_conv = [](DType t) {
    return t == DType::F64 || t == DType::F32 || t == DType::BF16 || t == DType::F16;
  };
  if (!is_conv(dtype_) || !is_conv(dst))
    throw err("no conversion from {} to {}", dtype_name(dtype_), dtype_name(dst));
  Tensor out = Tensor::empty(shape_, dst);
  int64_t n = numel();
  const void* s = data();
  void* d = out.data();
  for (int64_t i = 0; i < n; ++i) {
    // F64 -> F32 first (one rounding), F32 -> narrower with RNE. A F64 -> BF16 conversion
    // rounds twice; qarl never relies on that path being correctly rounded.
    double v = load_as_f64(s, dtype_, i);
    switch (dst) {
      case DType::F64: static_cast<double*>(d)[i] = v; break;
      case DType::F32: static_cast<float*>(d)[i] = float(v); break;
      case DType::BF16: static_cast<uint16_t*>(d)[i] = f32_to_bf16(float(v)); break;
      case DType::F16: static_cast<uint16_t*>(d)[i] = f32_to_f16(float(v)); break;
      default: break;
    }
  }
  return out;
}

std::vector<double> Tensor::to_f64_vector() const {
  Tensor h = device() == Device::CPU ? *this : to_device(Device::CPU);
  std::vector<double> v(static_cast<size_t>(numel()));
  for (int64_t i = 0; i < numel(); ++i) v[size_t(i)] = load_as_f64(h.data(), dtype_, i);
  return v;
}

std::vector<float> Tensor::to_f32_vector() const {
  auto d = to_f64_vector();
  return std::vector<float>(d.begin(), d.end());
}

double Tensor::item() const {
  if (numel() != 1) throw err("item() needs exactly one element, tensor has shape {}",
                              shape_str(shape_));
  return to_f64_vector()[0];
}

void Tensor::fill_f32(float v) {
  if (device() != Device::CPU) throw err("fill_f32 runs on CPU tensors only");
  int64_t n = numel();
  switch (dtype_) {
    case DType::F32: for (int64_t i = 0; i < n; ++i) data_as<float>()[i] = v; break;
    case DType::F64: for (int64_t i = 0; i < n; ++i) data_as<double>()[i] = v; break;
    case DType::BF16: { uint16_t b = f32_to_bf16(v); for (int64_t i = 0; i < n; ++i) data_as<uint16_t>()[i] = b; break; }
    case DType::F16: { uint16_t b = f32_to_f16(v); for (int64_t i = 0; i < n; ++i) data_as<uint16_t>()[i] = b; break; }
    default: throw err("fill_f32 on a {} tensor", dtype_name(dtype_));
  }
}

bool tensors_bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ha = a.device() == Device::CPU ? a : a.to_device(Device::CPU);
  Tensor hb = b.device() == Device::CPU ? b : b.to_device(Device::CPU);
  return a.nbytes() == 0 || std::memcmp(ha.data(), hb.data(), a.nbytes()) == 0;
}

}  // namespace qarl
