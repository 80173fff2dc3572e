// libFuzzer target for the safetensors header parser (SafetensorsFile::from_bytes).
// Input modes (first byte, low bit):
//   1: the bytes are a whole file, verbatim (length prefix included);
//   0: byte 1 is the data-section length L, the rest minus its last L bytes is the JSON
//      header; a correct length prefix is added, so the fuzzer explores the JSON checks.
// Oracle: every input either throws qarl::Error or parses; a parsed file's tensors must be
// readable, and re-serializing it must parse again to the same tensors (any other
// exception, sanitizer report or mismatch is a crash).
#include <cstdint>
#include <cstring>
#include <string>

#include "qarl/core/error.h"
#include "qarl/io/safetensors.h"

using namespace qarl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string file;
  if (data[0] & 1) {
    file.assign(reinterpret_cast<const char*>(data + 1), size - 1);
  } else {
    if (size < 2) return 0;
    size_t l = std::min<size_t>(data[1], size - 2);
    std::string header(reinterpret_cast<const char*>(data + 2), size - 2 - l);
    uint64_t n = header.size();
    file.assign(8, '\0');
    for (int i = 0; i < 8; ++i) file[i] = char((n >> (8 * i)) & 0xFF);
    file += header;
    file.append(reinterpret_cast<const char*>(data + size - l), l);
  }
  try {
    auto f = io::SafetensorsFile::from_bytes(std::make_shared<const std::string>(file), "fuzz");
    std::vector<std::pair<std::string, Tensor>> ts;
    uint64_t acc = 0;
    for (const auto& info : f.tensors()) {
      Tensor t = f.get(info.name);
      if (t.nbytes() != info.end - info.begin) __builtin_trap();
      const uint8_t* p = static_cast<const uint8_t*>(t.data());
      for (size_t i = 0; i < t.nbytes(); ++i) acc += p[i];  // ASan checks the range
      ts.emplace_back(info.name, t);
    }
    std::string again = io::safetensors_header(ts, f.metadata_in_order());
    for (const auto& [name, t] : ts) again.append(static_cast<const char*>(t.data()), t.nbytes());
    auto g = io::SafetensorsFile::from_bytes(std::make_shared<const std::string>(again), "again");
    if (g.tensors().size() != f.tensors().size() || g.metadata() != f.metadata()) __builtin_trap();
    for (size_t i = 0; i < g.tensors().size(); ++i) {
      const auto &a = f.tensors()[i], &b = g.tensors()[i];
      if (a.name != b.name || a.dtype != b.dtype || a.shape != b.shape || a.begin != b.begin ||
          a.end != b.end)
        __builtin_trap();
    }
    if (acc == 0xFFFFFFFFFFFFFFFFull) std::abort();  // keep `acc` alive
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Input) __builtin_trap();  // bad bytes are input errors only
  }
  return 0;
}
