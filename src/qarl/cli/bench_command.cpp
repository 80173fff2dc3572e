// `qarl bench`: runs the built-in benchmarks (qarl/perf/registry.h) on the CPU and/or the
// GPU and prints achieved rates against limits measured in the same run (device copy
// bandwidth on the GPU, memcpy bandwidth on the CPU). --json writes the records for
// bench/gpu/peers.py, which puts them beside PyTorch's figures.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "qarl/cli/command.h"
#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/kernels/cuda/device.h"
#include "qarl/perf/registry.h"

namespace {

// True when `filter` is empty or any of its comma-separated parts occurs in `name`.
bool matches_filter(const std::string& name, const std::string& filter) {
  if (filter.empty()) return true;
  size_t at = 0;
  while (at <= filter.size()) {
    const size_t end = std::min(filter.find(',', at), filter.size());
    const std::string part = filter.substr(at, end - at);
    if (!part.empty() && name.find(part) != std::string::npos) return true;
    at = end + 1;
  }
  return false;
}
std::function<int()> setup(CLI::App& app) {
  struct Opts {
    std::string backend = "auto", json, filter;
    bool quick = false, list = false;
    int reps = 0;
    int64_t rows = 0;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--backend", o->backend, "cpu, cuda, all, or auto (cuda when a GPU is usable, else cpu)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda", "all"}));
  app.add_option("--filter", o->filter,
                 "only cases whose name contains this (several: comma-separated, any may match)");
  app.add_flag("--quick", o->quick, "small sizes, few repetitions (a smoke test)");
  app.add_option("--reps", o->reps, "timed repetitions per figure (default: each case's)");
  app.add_option("--rows", o->rows, "rows of the [rows, 128] benchmark tensors");
  app.add_option("--json", o->json, "write the results as a JSON list to this file");
  app.add_flag("--list", o->list, "list the cases and exit");
  return [o] {
    using namespace qarl;
    namespace gpu = kernels::gpu;
    const auto& reg = perf::builtin_registry();
    if (o->list) {
      for (const auto& c : reg.cases())
        std::printf("%-12s %-5s %s\n", c.name.c_str(), perf::backend_name(c.backend), c.description.c_str());
      return 0;
    }
    std::vector<perf::Backend> backends;
    if (o->backend == "cpu" || o->backend == "all") backends.push_back(perf::Backend::CPU);
    if (o->backend == "cuda" || o->backend == "all" || (o->backend == "auto" && gpu::available()))
      backends.push_back(perf::Backend::CUDA);
    if (o->backend == "auto" && backends.empty()) backends.push_back(perf::Backend::CPU);
    for (perf::Backend b : backends)
      if (b == perf::Backend::CUDA && !gpu::available())
        throw usage_err("--backend cuda: {}", gpu::unavailable_reason());

    perf::Options opt{o->quick, o->reps, o->rows};
    nlohmann::json records = nlohmann::json::array();
    std::printf("%-5s %-18s %-5s %-16s %10s %9s %10s %7s  %s\n", "dev", "case", "dtype", "shape",
                "time(us)", "GB/s", "limit", "%limit", "note");
    for (perf::Backend b : backends) {
      const perf::Limits lim = perf::measure_limits(b, opt);
      const double lim_gbps = lim.copy_bytes_per_s / 1e9;
      std::string where = b == perf::Backend::CUDA ? gpu::device_name() : "CPU";
      std::printf("# %s: %s, measured copy bandwidth %.0f GB/s (read + write)\n",
                  perf::backend_name(b), where.c_str(), lim_gbps);
      for (const auto& c : reg.cases()) {
        if (c.backend != b) continue;
        if (!matches_filter(c.name, o->filter)) continue;
        for (const perf::Result& r : c.run(opt)) {
          const double gbps = r.bytes / r.seconds / 1e9;
          std::printf("%-5s %-18s %-5s %-16s %10.1f %9.1f %10.1f %6.0f%%  %s\n",
                      perf::backend_name(b), r.name.c_str(), r.dtype.c_str(), r.shape.c_str(),
                      r.seconds * 1e6, gbps, lim_gbps, 100.0 * gbps / lim_gbps, r.note.c_str());
          std::fflush(stdout);
          nlohmann::json rec = {{"backend", perf::backend_name(b)}, {"device", where},
                                {"name", r.name}, {"dtype", r.dtype}, {"shape", r.shape},
                                {"seconds", r.seconds}, {"bytes", r.bytes}, {"gbps", gbps},
                                {"limit_gbps", lim_gbps}, {"fraction_of_limit", gbps / lim_gbps},
                                {"note", r.note}};
          if (r.flops > 0) rec["tflops"] = r.flops / r.seconds / 1e12;
          for (const auto& [k, v] : r.metrics) rec[k] = v;
          records.push_back(rec);
        }
      }
    }
    if (!o->json.empty()) write_file_atomic(o->json, records.dump(1) + "\n");
    return 0;
  };
}
QARL_REGISTER_COMMAND("bench", "Run the built-in benchmarks against measured hardware limits", setup);
}  // namespace
