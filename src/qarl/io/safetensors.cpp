// safetensors reader and writer. The checks follow the reference Rust crate
// (huggingface/safetensors, safetensors/src/tensor.rs: read_metadata + Metadata::validate):
// header length <= 100,000,000, header inside the file and starting with '{', valid JSON,
// tensors sorted by data_offsets must tile the data section exactly from 0 to its end (so
// gaps, overlaps and trailing bytes are all rejected), byte count == numel * itemsize with
// overflow checks, metadata values strings, unknown fields in a tensor entry ignored.
// Deliberate differences (docs/io.md): duplicate keys are rejected (serde keeps the last),
// dtypes qarl has no type for (F8_E5M2, U16, U32, U64, ...) are rejected, and the error
// messages name the file, the tensor and the problem.
#include "qarl/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/io/json_strict.h"

namespace qarl::io {

using json = nlohmann::ordered_json;

namespace {

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A non-negative JSON integer, or an Error naming what it was for.
uint64_t as_u64(const json& v, const std::string& label, const std::string& tensor,
                const char* what) {
  if (!v.is_number_unsigned())
    throw err("{} must be non-negative integers, got {}", what, v.dump()).file(label).tensor(tensor);
  return v.get<uint64_t>();
}

TensorInfo parse_tensor_entry(const std::string& name, const json& e, const std::string& label) {
  if (!e.is_object())
    throw err("entry must be an object with dtype, shape, data_offsets").file(label).tensor(name);
  TensorInfo t;
  t.name = name;
  auto dt = e.find("dtype");
  auto sh = e.find("shape");
  auto off = e.find("data_offsets");
  if (dt == e.end()) throw err("missing 'dtype'").file(label).tensor(name);
  if (sh == e.end()) throw err("missing 'shape'").file(label).tensor(name);
  if (off == e.end()) throw err("missing 'data_offsets'").file(label).tensor(name);
  if (!dt->is_string()) throw err("'dtype' must be a string").file(label).tensor(name);
  auto d = dtype_from_name(dt->get_ref<const std::string&>());
  if (!d)
    throw err("unknown or unsupported dtype '{}'", dt->get_ref<const std::string&>())
        .file(label).tensor(name);
  t.dtype = *d;
  if (!sh->is_array()) throw err("'shape' must be an array").file(label).tensor(name);
  uint64_t numel = 1;
  bool overflow = false;
  for (const auto& x : *sh) {
    uint64_t v = as_u64(x, label, name, "shape entries");
    if (v > uint64_t(std::numeric_limits<int64_t>::max()))
      throw err("shape entry {} is too large", v).file(label).tensor(name);
    t.shape.push_back(int64_t(v));
    overflow |= __builtin_mul_overflow(numel, v, &numel);
  }
  if (!off->is_array() || off->size() != 2)
    throw err("'data_offsets' must be [begin, end]").file(label).tensor(name);
  t.begin = as_u64((*off)[0], label, name, "data_offsets");
  t.end = as_u64((*off)[1], label, name, "data_offsets");
  uint64_t nbytes = 0;
  overflow |= __builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &nbytes);
  if (overflow || numel > uint64_t(std::numeric_limits<int64_t>::max()))
    throw err("shape {} overflows the byte count", shape_str(t.shape)).file(label).tensor(name);
  if (t.end < t.begin)
    throw err("data_offsets [{}, {}]: begin > end", t.begin, t.end).file(label).tensor(name);
  if (t.end - t.begin != nbytes)
    throw err("shape {} of dtype {} needs {} bytes but data_offsets [{}, {}] span {}",
              shape_str(t.shape), dtype_name(t.dtype), nbytes, t.begin, t.end, t.end - t.begin)
        .file(label).tensor(name);
  return t;
}

}  // namespace

SafetensorsFile SafetensorsFile::parse(std::shared_ptr<const void> keepalive,
                                       const uint8_t* bytes, uint64_t size,
                                       const std::string& label) {
  if (size < 8)
    throw err("file too small for a safetensors header ({} bytes, need at least 8)", size)
        .file(label);
  uint64_t n = read_u64_le(bytes);
  if (n > kMaxSafetensorsHeader)
    throw err("header length {} exceeds the limit of {} bytes", n, kMaxSafetensorsHeader).file(label);
  if (n > size - 8)
    throw err("header length {} runs past the end of the file ({} bytes): truncated file?", n, size)
        .file(label);
  std::string_view text(reinterpret_cast<const char*>(bytes + 8), n);
  if (n == 0 || text[0] != '{')
    throw err("header does not start with '{{'").file(label);
  json h = parse_json_strict(text, label);
  if (!h.is_object()) throw err("header is not a JSON object").file(label);

  SafetensorsFile f;
  f.path_ = label;
  f.header_size_ = n;
  f.file_size_ = size;
  std::vector<TensorInfo> infos;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (it->is_null()) continue;  // serde reads null as "no metadata"
      if (!it->is_object()) throw err("'__metadata__' must be an object").file(label).key("__metadata__");
      OrderedMetadata md;
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string())
          throw err("metadata values must be strings, got {}", m->dump())
              .file(label).key("__metadata__." + m.key());
        md.emplace_back(m.key(), m->get<std::string>());
        f.metadata_[m.key()] = m->get<std::string>();
      }
      f.metadata_order_ = std::move(md);
      continue;
    }
    infos.push_back(parse_tensor_entry(it.key(), it.value(), label));
  }
  // File order = ascending offsets; ties (empty tensors) keep header order.
  std::stable_sort(infos.begin(), infos.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t data_size = size - 8 - n;
  uint64_t pos = 0;
  for (size_t i = 0; i < infos.size(); ++i) {
    const TensorInfo& t = infos[i];
    if (t.begin < pos)
      throw err("data_offsets [{}, {}] overlap tensor '{}' (which ends at {})", t.begin, t.end,
                infos[i - 1].name, pos).file(label).tensor(t.name);
    if (t.begin > pos)
      throw err("data_offsets [{}, {}] leave a gap: the previous tensor ends at {}", t.begin,
                t.end, pos).file(label).tensor(t.name);
    if (t.end > data_size)
      throw err("data_offsets [{}, {}] run past the end of the data section ({} bytes): "
                "truncated file?", t.begin, t.end, data_size).file(label).tensor(t.name);
    pos = t.end;
  }
  if (pos != data_size)
    throw err("{} trailing bytes after the last tensor (data section is {} bytes, tensors "
              "cover {})", data_size - pos, data_size, pos).file(label);
  for (size_t i = 0; i < infos.size(); ++i) f.index_[infos[i].name] = i;
  f.tensors_ = std::move(infos);
  f.mapping_ = std::move(keepalive);
  f.data_ = bytes + 8 + n;
  return f;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw err("cannot open: {}", std::strerror(errno)).file(path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw err("cannot stat: {}", std::strerror(e)).file(path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw err("not a regular file").file(path);
  }
  uint64_t size = uint64_t(st.st_size);
  if (size == 0) {
    ::close(fd);
    return parse(nullptr, nullptr, 0, path);
  }
  void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) throw err("mmap failed: {}", std::strerror(e)).file(path);
  std::shared_ptr<const void> keep(p, [size](const void* q) { munmap(const_cast<void*>(q), size); });
  return parse(keep, static_cast<const uint8_t*>(p), size, path);
}

SafetensorsFile SafetensorsFile::from_bytes(std::shared_ptr<const std::string> bytes,
                                            const std::string& label) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(bytes->data());
  uint64_t size = bytes->size();
  return parse(std::move(bytes), p, size, label);
}

bool SafetensorsFile::contains(const std::string& name) const { return index_.count(name) > 0; }

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw err("no such tensor in this file").file(path_).tensor(name);
  return tensors_[it->second];
}

Tensor SafetensorsFile::get(const std::string& name) const {
  const TensorInfo& t = info(name);
  const uint8_t* p = data_ + t.begin;
  if (reinterpret_cast<uintptr_t>(p) % dtype_size(t.dtype) == 0)
    return Tensor::borrow(const_cast<uint8_t*>(p), t.shape, t.dtype, mapping_);
  Tensor out = Tensor::empty(t.shape, t.dtype);  // unaligned (non-standard header padding)
  if (t.end > t.begin) std::memcpy(out.data(), p, t.end - t.begin);
  return out;
}

std::string safetensors_header(const std::vector<std::pair<std::string, Tensor>>& tensors,
                               const std::optional<OrderedMetadata>& metadata) {
  std::string h = "{";
  bool first = true;
  if (metadata) {
    std::set<std::string> keys;
    h += "\"__metadata__\":{";
    for (size_t i = 0; i < metadata->size(); ++i) {
      const auto& [k, v] = (*metadata)[i];
      if (!keys.insert(k).second) throw err("duplicate metadata key").key(k);
      if (!is_valid_utf8(k) || !is_valid_utf8(v))
        throw err("metadata is not valid UTF-8").key(k);
      if (i) h += ',';
      h += json_quote(k) + ':' + json_quote(v);
    }
    h += '}';
    first = false;
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") throw err("'__metadata__' is reserved").tensor(name);
    if (!names.insert(name).second) throw err("duplicate tensor name").tensor(name);
    if (!is_valid_utf8(name)) throw err("tensor name is not valid UTF-8").tensor(name);
    if (!t.defined()) throw err("undefined tensor").tensor(name);
    if (!first) h += ',';
    first = false;
    uint64_t nb = t.nbytes();
    h += json_quote(name) + ":{\"dtype\":\"" + std::string(dtype_name(t.dtype())) + "\",\"shape\":[";
    for (size_t i = 0; i < t.shape().size(); ++i) {
      if (i) h += ',';
      h += std::to_string(t.shape()[i]);
    }
    h += "],\"data_offsets\":[" + std::to_string(offset) + ',' + std::to_string(offset + nb) + "]}";
    offset += nb;
  }
  h += '}';
  h.append((8 - h.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = char((n >> (8 * i)) & 0xFF);
  return out + h;
}

void save_safetensors_ordered(const std::string& path,
                              const std::vector<std::pair<std::string, Tensor>>& tensors,
                              const std::optional<OrderedMetadata>& metadata) {
  std::string header;
  try {
    header = safetensors_header(tensors, metadata);
  } catch (Error& e) {
    throw e.file(path);
  }
  write_file_atomic(path, [&](std::FILE* f) {
    if (std::fwrite(header.data(), 1, header.size(), f) != header.size())
      throw runtime_err("write failed: {}", std::strerror(errno)).file(path);
    for (const auto& [name, t] : tensors) {
      Tensor host = t.device() == Device::CPU ? t : t.to_device(Device::CPU);
      size_t nb = host.nbytes();
      if (nb && std::fwrite(host.data(), 1, nb, f) != nb)
        throw runtime_err("write failed: {}", std::strerror(errno)).file(path).tensor(name);
    }
  });
}

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::optional<OrderedMetadata> md;
  if (!metadata.empty()) md = OrderedMetadata(metadata.begin(), metadata.end());
  save_safetensors_ordered(path, tensors, md);
}

void resave_safetensors(const SafetensorsFile& file, const std::string& path) {
  std::vector<std::pair<std::string, Tensor>> ts;
  for (const auto& t : file.tensors()) ts.emplace_back(t.name, file.get(t.name));
  save_safetensors_ordered(path, ts, file.metadata_in_order());
}

}  // namespace qarl::io
