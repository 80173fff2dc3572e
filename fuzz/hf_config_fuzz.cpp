// libFuzzer target for the config.json parser (parse_hf_config).
// Oracle: every input either throws qarl::Error(Input) or parses; a parsed config must
// survive hf_config_to_json -> parse_hf_config unchanged.
#include <cstdint>
#include <string>

#include "qarl/core/error.h"
#include "qarl/io/hf_config.h"

using namespace qarl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    io::HFConfig c = io::parse_hf_config(text, "fuzz.json");
    io::HFConfig d = io::parse_hf_config(io::hf_config_to_json(c), "again.json");
    if (!(c == d)) __builtin_trap();
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Input) __builtin_trap();
  }
  return 0;
}
