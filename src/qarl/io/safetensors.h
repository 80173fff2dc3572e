// safetensors files: read (memory-mapped, every header field checked against the file) and
// write (atomically). Format: 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the
// data section; offsets are relative to the data section.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "qarl/core/tensor.h"

namespace qarl::io {

// Largest header accepted: the reference implementation's limit, 100,000,000 bytes.
constexpr uint64_t kMaxSafetensorsHeader = 100'000'000ull;

// `__metadata__` in file order. Absent (nullopt) and empty ({}) are different on disk, so
// both are kept apart for byte-exact round trips.
using OrderedMetadata = std::vector<std::pair<std::string, std::string>>;

struct TensorInfo {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte range in the data section
};

// An open safetensors file. Tensors it returns borrow the mapping and keep it alive.
class SafetensorsFile {
 public:
  // Throws Error(Input) naming the file and the offending tensor/key on any inconsistency:
  // truncated file, header length past the end, bad JSON, unknown dtype, shape/offset byte
  // count mismatch, out-of-range or overlapping ranges, duplicate names.
  static SafetensorsFile open(const std::string& path);
  // Same checks on bytes in memory (used by the fuzzer); `label` stands in for the path.
  static SafetensorsFile from_bytes(std::shared_ptr<const std::string> bytes,
                                    const std::string& label);

  const std::string& path() const { return path_; }
  // Tensors in file order (ascending data offset).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The same, in header order; nullopt when the header has no `__metadata__` key.
  const std::optional<OrderedMetadata>& metadata_in_order() const { return metadata_order_; }
  uint64_t header_size() const { return header_size_; }  // N, the JSON length incl. padding
  uint64_t file_size() const { return file_size_; }
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // Error naming the tensor if absent
  // Borrowed and zero-copy when the data is aligned to the element size (always so for
  // files written with the standard layout); an owned copy otherwise.
  Tensor get(const std::string& name) const;

 private:
  std::string path_;
  std::shared_ptr<const void> mapping_;  // keeps the bytes alive
  const uint8_t* data_ = nullptr;        // start of the data section
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  std::optional<OrderedMetadata> metadata_order_;
  uint64_t header_size_ = 0, file_size_ = 0;

  static SafetensorsFile parse(std::shared_ptr<const void> keepalive, const uint8_t* bytes,
                               uint64_t size, const std::string& label);
};

// Writes tensors (any device; copied to host) in the given order, each at the next offset,
// the header padded with spaces to a multiple of 8 bytes as the reference writer does.
// Atomic: temp file, fsync, rename. Duplicate names are an error.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// Exact-layout form: metadata in the given order, or no `__metadata__` key at all when
// nullopt. save_safetensors(...) above omits the key when `metadata` is empty.
void save_safetensors_ordered(const std::string& path,
                              const std::vector<std::pair<std::string, Tensor>>& tensors,
                              const std::optional<OrderedMetadata>& metadata);
// The 8-byte length plus padded JSON header for tensors laid out back to back in order.
std::string safetensors_header(const std::vector<std::pair<std::string, Tensor>>& tensors,
                               const std::optional<OrderedMetadata>& metadata);
// Rewrites an open file's tensors and metadata to `path` in its order: for files written
// with the standard layout (compact JSON as serde_json writes it), the result is the same
// bytes.
void resave_safetensors(const SafetensorsFile& file, const std::string& path);

}  // namespace qarl::io
