// A small dense tensor: dtype, shape, device, and shared storage that is either owned
// (allocated here) or borrowed (a view into memory someone else keeps alive, e.g. an mmapped
// safetensors file). Tensors are always contiguous, row-major; views share storage.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "qarl/core/dtype.h"

namespace qarl {

enum class Device : uint8_t { CPU, CUDA };
using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);
std::string shape_str(const Shape& s);  // "[2, 3]"; "[]" for a 0-d tensor

// A block of bytes on one device. Owned storage frees itself; borrowed storage holds a
// keep-alive handle to whatever owns the bytes (an mmap, another buffer).
class Storage {
 public:
  static std::shared_ptr<Storage> allocate(size_t nbytes, Device device);
  static std::shared_ptr<Storage> borrow(void* data, size_t nbytes, Device device,
                                         std::shared_ptr<const void> keepalive);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  bool owned() const { return owned_; }

 private:
  Storage() = default;
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_ = Device::CPU;
  bool owned_ = false;
  std::shared_ptr<const void> keepalive_;
};

class Tensor {
 public:
  Tensor() = default;  // undefined tensor

  static Tensor empty(Shape shape, DType dtype, Device device = Device::CPU);
  static Tensor zeros(Shape shape, DType dtype, Device device = Device::CPU);
  // A borrowed view of external memory, kept alive by `keepalive`.
  static Tensor borrow(void* data, Shape shape, DType dtype,
                       std::shared_ptr<const void> keepalive, Device device = Device::CPU);
  // CPU tensor of `dtype` holding `values` (converted with round-to-nearest-even).
  static Tensor from_f32(std::span<const float> values, Shape shape, DType dtype = DType::F32);
  static Tensor scalar(float value, DType dtype = DType::F32);  // 0-d

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::CPU; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return int(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  size_t offset() const { return offset_; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  bool is_borrowed() const { return storage_ && !storage_->owned(); }

  void* data() const { return static_cast<char*>(storage_->data()) + offset_; }
  template <typename T>
  T* data_as() const { return static_cast<T*>(data()); }

  // Views (share storage).
  Tensor reshape(Shape shape) const;                  // same numel
  Tensor narrow0(int64_t start, int64_t length) const;  // rows [start, start+length) of dim 0

  // Copies.
  Tensor clone() const;                      // owned, same device
  Tensor to(DType dtype) const;              // CPU float conversions (F64/F32/BF16/F16)
  Tensor to_device(Device device) const;     // host <-> device copy
  void copy_from(const Tensor& src);         // same shape and dtype; any devices

  // Values as float (CPU, float dtypes and integers). For tests, printing, small tensors.
  std::vector<float> to_f32_vector() const;
  std::vector<double> to_f64_vector() const;
  double item() const;  // numel() == 1

  void fill_f32(float v);  // CPU, float dtypes

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;
  Shape shape_;
  DType dtype_ = DType::F32;
};

// Bytes are identical (shape, dtype and contents). For tests and round-trip checks.
bool tensors_bitwise_equal(const Tensor& a, const Tensor& b);

}  // namespace qarl
