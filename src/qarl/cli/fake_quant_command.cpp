// `qarl fake-quant --format fp8|nvfp4 (--amax A | --constant-amax) --in IN --out OUT
//  [--nvfp4-division triton|ieee]`:
// fake-quantizes every F32/BF16/F16 tensor of a safetensors file exactly as ModelOpt
// would (docs/quantization.md), keeping names, order, dtypes, shapes and metadata; tensors
// of other dtypes are copied unchanged. Other scripts depend on this exact interface.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "qarl/cli/command.h"
#include "qarl/core/error.h"
#include "qarl/io/safetensors.h"
#include "qarl/quant/fake_quant.h"

namespace {

float parse_amax(const std::string& s) {
  const char* b = s.c_str();
  char* end = nullptr;
  errno = 0;
  float v = std::strtof(b, &end);  // correctly rounded decimal -> fp32
  if (end == b || *end != '\0') throw qarl::usage_err("--amax '{}' is not a number", s);
  if (!std::isfinite(v))
    throw qarl::usage_err("--amax '{}' is not finite", s);
  if (v < 0) throw qarl::usage_err("--amax '{}' is negative", s);
  return v;
}

struct Options {
  std::string format, amax, in, out, division = "triton";
  bool constant_amax = false;
};

std::function<int()> setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  app.add_option("--format", o->format, "fp8 (E4M3 per tensor) or nvfp4 (E2M1, blocks of 16)")
      ->required()
      ->check(CLI::IsMember({"fp8", "nvfp4"}));
  auto* a = app.add_option("--amax", o->amax, "amax (fp32), as ModelOpt's _amax");
  auto* c = app.add_flag("--constant-amax", o->constant_amax,
                         "use ModelOpt's use_constant_amax (448)");
  a->excludes(c);
  c->excludes(a);
  app.add_option("--nvfp4-division", o->division,
                 "NVFP4 divisions: triton (ModelOpt's kernel on sm_90, default) or ieee "
                 "(the same formulas in PyTorch ops)")
      ->check(CLI::IsMember({"triton", "ieee"}));
  app.add_option("--in", o->in, "input .safetensors")->required();
  app.add_option("--out", o->out, "output .safetensors (written atomically)")->required();
  return [o] {
    using namespace qarl;
    if (o->amax.empty() && !o->constant_amax)
      throw usage_err("one of --amax A or --constant-amax is required");
    const float amax = o->constant_amax ? quant::kFp8ConstantAmax : parse_amax(o->amax);
    const quant::Format format = o->format == "fp8" ? quant::Format::FP8 : quant::Format::NVFP4;
    const quant::Nvfp4Division division =
        o->division == "ieee" ? quant::Nvfp4Division::kIeee : quant::Nvfp4Division::kTriton;
    io::SafetensorsFile f = io::SafetensorsFile::open(o->in);
    std::vector<std::pair<std::string, Tensor>> out;
    out.reserve(f.tensors().size());
    int quantized = 0, copied = 0;
    for (const io::TensorInfo& info : f.tensors()) {
      Tensor t = f.get(info.name);
      if (info.dtype == DType::F32 || info.dtype == DType::BF16 || info.dtype == DType::F16) {
        try {
          out.emplace_back(info.name, quant::fake_quant(t, format, amax, division));
        } catch (Error& e) {
          throw e.file(o->in).tensor(info.name);
        }
        ++quantized;
      } else {
        out.emplace_back(info.name, t.clone());
        ++copied;
      }
    }
    io::save_safetensors_ordered(o->out, out, f.metadata_in_order());
    std::printf("fake-quant %s amax %.9g: %d tensors quantized, %d copied -> %s\n",
                o->format.c_str(), double(amax), quantized, copied, o->out.c_str());
    return 0;
  };
}

QARL_REGISTER_COMMAND("fake-quant",
                      "Fake-quantize every float tensor of a safetensors file (FP8 / NVFP4)",
                      setup);

}  // namespace
