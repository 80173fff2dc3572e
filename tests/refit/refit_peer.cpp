// The rollout-side process of the two-process transport tests (and the receiver of the
// benchmark's socket variant). The test process is the trainer: it spawns this peer, which
// connects, receives, and checks what arrived against the same deterministic data.
//
//   refit_peer staging <unix socket path> <case> <seed>
//   refit_peer tcp     <port>             <case> <seed> <target batch bytes>
//   refit_peer ipc     <unix socket path> <case> <seed> [cuda|cpu]   (CUDA IPC staging;
//                      the receiver yields device tensors unless "cpu")
//   refit_peer nccl    <port>             <case> <seed> <target> <device>  (NCCL leaf on
//                      CUDA device <device>; device packed stream)
// case: mixed | large:<MB> | odd:<MB> | model | model-bad (the trainer sends a broken K/V amax; the
// peer's strict load must fail and leave its engine state unchanged).
// Exit: 0 ok, 1 data mismatch, 2 error (message on stderr), 3 expected failure observed.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "qarl/core/error.h"
#include "qarl/refit/cuda_ipc_transport.h"
#include "qarl/refit/device_copy.h"
#include "qarl/refit/device_packed_transport.h"
#include "qarl/refit/nccl_wire.h"
#include "qarl/refit/packed_transport.h"
#include "qarl/refit/refit.h"
#include "qarl/refit/staging_transport.h"
#include "refit/refit_fakes.h"
#include "refit/transport_cases.h"

using namespace qarl;
using namespace qarl::refit;

namespace {

test::TinyConfig model_config(uint64_t seed) {
  test::TinyConfig c;
  c.seed = seed;
  c.input_quant = true;
  c.layers = 4;
  c.hidden = 40;
  c.inter = 72;
  return c;
}

int run_model(RefitReceiver& rx, uint64_t seed, bool expect_failure) {
  test::TinyConfig c = model_config(seed);
  test::FakeEngine engine(c);
  auto before = engine.snapshot();
  StrictLoader loader(engine, NameMapper::dense());
  try {
    RefitResult r = receive_refit(rx, loader);
    std::fprintf(stderr, "peer: %s\n", describe(r.transfer).c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "peer: refit failed: %s\n", e.what());
    if (!expect_failure) return 2;
    if (!engine.same_as(before)) {
      std::fprintf(stderr, "peer: engine state changed by a failed refit\n");
      return 1;
    }
    std::fprintf(stderr, "peer: engine state unchanged\n");
    return 3;
  }
  if (expect_failure) return 1;
  // Reference: the same export loaded in-process.
  test::FakeTrainer trainer(c);
  test::FakeEngine reference(c);
  StrictLoader ref_loader(reference, NameMapper::dense());
  ref_loader.begin();
  for_each_export(plan_export(trainer), [&](const std::string& n, const Tensor& t) { ref_loader.load(n, t); });
  ref_loader.finish();
  if (!engine.same_as(reference.snapshot())) {
    std::fprintf(stderr, "peer: engine state differs from the in-process reference\n");
    return 1;
  }
  return 0;
}

int run(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: refit_peer staging|tcp <endpoint> <case> <seed> [target]\n");
    return 2;
  }
  std::string transport = argv[1], endpoint = argv[2], kase = argv[3];
  uint64_t seed = std::strtoull(argv[4], nullptr, 10);
  bool model = kase == "model" || kase == "model-bad";
  std::vector<NamedTensor> want;
  RefitMetadata meta;
  if (model) {
    meta = export_metadata(plan_export(test::FakeTrainer(model_config(seed))));
  } else if (kase.rfind("large:", 0) == 0 || kase.rfind("odd:", 0) == 0) {
    size_t colon = kase.find(':');
    want = test::make_case(kase.substr(0, colon), seed, std::atof(kase.c_str() + colon + 1));
    meta = test::metadata_of(want);
  } else {
    want = test::make_case(kase, seed);
    meta = test::metadata_of(want);
  }

  std::unique_ptr<RefitReceiver> rx;
  std::unique_ptr<BroadcastWire> wire;
  Socket ctl;
  if (transport == "staging") {
    ctl = connect_unix(endpoint);
    rx = std::make_unique<StagingReceiver>(ctl, meta);
  } else if (transport == "tcp") {
    if (argc < 6) throw usage_err("tcp needs a target batch size");
    wire = TcpBroadcastWire::leaf(connect_tcp("127.0.0.1", uint16_t(std::atoi(endpoint.c_str()))));
    rx = std::make_unique<PackedReceiver>(*wire, meta, std::strtoull(argv[5], nullptr, 10));
  } else if (transport == "ipc") {
    ctl = connect_unix(endpoint);
    Device yield = argc > 5 && std::string(argv[5]) == "cpu" ? Device::CPU : Device::CUDA;
    rx = std::make_unique<CudaIpcStagingReceiver>(ctl, meta, nullptr, yield);
  } else if (transport == "nccl") {
    if (argc < 7) throw usage_err("nccl needs a target batch size and a device");
    cuda_set_device(std::atoi(argv[6]));
    wire = NcclBroadcastWire::leaf(connect_tcp("127.0.0.1", uint16_t(std::atoi(endpoint.c_str()))));
    rx = std::make_unique<DevicePackedReceiver>(*wire, meta, std::strtoull(argv[5], nullptr, 10));
  } else {
    throw usage_err("unknown transport '{}'", transport);
  }

  if (model) return run_model(*rx, seed, kase == "model-bad");

  std::vector<NamedTensor> got;
  NamedTensor nt;
  // Copy each tensor out (a staging view is valid until the next call), keeping its
  // alignment property: clone() allocates aligned storage, so check alignment first.
  while (rx->next(nt)) {
    auto addr = reinterpret_cast<uintptr_t>(nt.tensor.data());
    if (nt.tensor.numel() > 0 && addr % dtype_size(nt.tensor.dtype()) != 0) {
      std::fprintf(stderr, "peer: '%s' yielded at a misaligned address\n", nt.name.c_str());
      return 1;
    }
    got.push_back({nt.name, want.empty() ? Tensor() : on_device(nt.tensor, Device::CPU).clone()});
  }
  rx->acknowledge();
  std::fprintf(stderr, "peer: %s\n", describe(rx->stats()).c_str());
  std::string diff = test::compare_streams(want, got);
  if (!diff.empty()) {
    std::fprintf(stderr, "peer: mismatch: %s\n", diff.c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "peer: error: %s\n", e.what());
    return 2;
  }
}
