// Refit throughput on the CPU between two processes (fork): a trainer process sends ~300 MB
// of bf16 transformer weights plus scalar K/V amax; the rollout process receives every
// tensor and copies it into preallocated destination tensors (as a load into the staged
// state would). Reports payload GB/s per refit for both transports:
//   staging: 512-byte aligned ping-pong shared-memory buffers + Unix socket control channel
//   packed:  unpadded packed stream with CRC32C per batch over a localhost TCP socket
// and on the GPU (skipped, with the reason, without a CUDA device):
//   cuda_ipc: 512-byte aligned ping-pong device buffers shared through CUDA IPC with a
//            rollout process (this executable re-run as the consumer, which copies every
//            tensor into preallocated device tensors); the trainer's tensors are on the GPU
//   nccl_1rank: the device packed stream's sender side on a one-rank NCCL communicator
//            (pack on the device, CRC32C on the device, ncclBroadcast); the two-rank
//            broadcast needs two GPUs (tests/refit/cuda_transport_test.cpp)
// Run: build/bench/refit_bench [--benchmark_filter=...]. QARL_REFIT_BENCH_MB sets the size.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "qarl/refit/cuda_ipc_transport.h"
#include "qarl/refit/device_copy.h"
#include "qarl/refit/device_packed_transport.h"
#include "qarl/refit/nccl_wire.h"
#include "qarl/refit/packed_transport.h"
#include "qarl/refit/staging_transport.h"

extern char** environ;

using namespace qarl;
using namespace qarl::refit;

namespace {

constexpr int kRefits = 5;

double bench_mb() {
  const char* e = std::getenv("QARL_REFIT_BENCH_MB");
  return e ? std::atof(e) : 300.0;
}

const std::vector<NamedTensor>& weights() {
  static const std::vector<NamedTensor> w = [] {
    std::vector<NamedTensor> out;
    const int64_t h = 1024, inter = 2816;
    double bytes = 0;
    for (int layer = 0; bytes < bench_mb() * 1e6; ++layer) {
      std::string l = fmt::format("model.layers.{}.", layer);
      for (auto [n, shape] : std::vector<std::pair<std::string, Shape>>{
               {"self_attn.q_proj.weight", {h, h}}, {"self_attn.k_proj.weight", {h / 4, h}},
               {"self_attn.v_proj.weight", {h / 4, h}}, {"self_attn.o_proj.weight", {h, h}},
               {"mlp.gate_proj.weight", {inter, h}}, {"mlp.up_proj.weight", {inter, h}},
               {"mlp.down_proj.weight", {h, inter}}, {"input_layernorm.weight", {h}}}) {
        Tensor t = Tensor::empty(shape, DType::BF16);
        auto* p = t.data_as<uint16_t>();
        uint32_t x = uint32_t(layer * 7919 + 1);
        for (int64_t i = 0; i < t.numel(); ++i) p[i] = uint16_t((x = x * 1664525u + 1013904223u) >> 16);
        bytes += double(t.nbytes());
        out.push_back({l + n, t});
      }
      out.push_back({l + "self_attn.k_bmm_quantizer._amax", Tensor::scalar(2.0f, DType::BF16)});
      out.push_back({l + "self_attn.v_bmm_quantizer._amax", Tensor::scalar(3.0f, DType::BF16)});
    }
    return out;
  }();
  return w;
}

RefitMetadata meta_of(const std::vector<NamedTensor>& w) {
  RefitMetadata m;
  for (const auto& t : w) m.push_back({t.name, t.tensor.shape(), t.tensor.dtype()});
  return m;
}

// The rollout process: receive kRefits + 1 (warm-up) refits, copying into destinations.
[[noreturn]] void consumer(RefitReceiver* (*make)(void*), void* ctx, const RefitMetadata& meta) {
  int rc = 0;
  try {
    std::vector<Tensor> dst;
    for (const auto& m : meta) dst.push_back(Tensor::zeros(m.shape, m.dtype));
    for (int r = 0; r < kRefits + 1; ++r) {
      std::unique_ptr<RefitReceiver> rx(make(ctx));
      NamedTensor nt;
      size_t i = 0;
      while (rx->next(nt)) dst[i++].copy_from(nt.tensor);
      rx->acknowledge();
      if (i != meta.size()) rc = 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    rc = 2;
  }
  _exit(rc);
}

void report(benchmark::State& state, double bytes) {
  state.counters["MB"] = bytes / 1e6;
  state.counters["GB/s"] = benchmark::Counter(bytes * double(state.iterations()) / 1e9,
                                              benchmark::Counter::kIsRate);
}

// Times `one()` (one whole refit to the consumer process `pid`) after a warm-up, then waits
// for the consumer and reports the bytes per refit.
template <class OneRefit>
void time_refits(benchmark::State& state, OneRefit one, pid_t pid) {
  one();  // warm-up
  double bytes = 0;
  for (auto _ : state) bytes = double(one().bytes);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) state.SkipWithError("consumer failed");
  report(state, bytes);
}

void BM_RefitStagingShm(benchmark::State& state) {
  const auto& w = weights();
  RefitMetadata meta = meta_of(w);
  const size_t buffer = size_t(state.range(0)) << 20;
  auto [a, b] = socket_pair();
  pid_t pid = fork();
  if (pid == 0) {
    a.close();
    StagingMappings maps;
    struct Ctx { Socket* s; const RefitMetadata* m; StagingMappings* maps; } ctx{&b, &meta, &maps};
    consumer([](void* c) -> RefitReceiver* {
      auto* x = static_cast<Ctx*>(c);
      return new StagingReceiver(*x->s, *x->m, x->maps);
    }, &ctx, meta);
  }
  b.close();
  auto pool = StagingBuffers::create(buffer);  // kept across refits
  auto one = [&] {
    StagingSender tx(a, meta, pool);
    for (const auto& t : w) tx.push(t.name, t.tensor);
    return tx.finish();
  };
  time_refits(state, one, pid);
}
BENCHMARK(BM_RefitStagingShm)->Arg(16)->Arg(64)->Iterations(kRefits)->UseRealTime()->Unit(benchmark::kMillisecond);

// Hides background_ok() to measure the packed sender without its broadcast thread.
class SerialWire : public BroadcastWire {
 public:
  explicit SerialWire(BroadcastWire& w) : w_(w) {}
  bool is_root() const override { return w_.is_root(); }
  void broadcast(void* d, size_t n) override { w_.broadcast(d, n); }
  bool barrier(bool ok) override { return w_.barrier(ok); }

 private:
  BroadcastWire& w_;
};

// range(0): batch MiB; range(1): 1 = overlap packing with broadcasting (a second thread).
void BM_RefitPackedTcp(benchmark::State& state) {
  const auto& w = weights();
  RefitMetadata meta = meta_of(w);
  const size_t target = size_t(state.range(0)) << 20;
  Listener l = Listener::tcp();
  uint16_t port = l.port();
  pid_t pid = fork();
  if (pid == 0) {
    auto wire = TcpBroadcastWire::leaf(connect_tcp("127.0.0.1", port));
    struct Ctx { BroadcastWire* w; const RefitMetadata* m; size_t t; } ctx{wire.get(), &meta, target};
    consumer([](void* c) -> RefitReceiver* {
      auto* x = static_cast<Ctx*>(c);
      return new PackedReceiver(*x->w, *x->m, x->t);
    }, &ctx, meta);
  }
  std::vector<Socket> leaves;
  leaves.push_back(l.accept());
  auto tcp = TcpBroadcastWire::root(std::move(leaves));
  SerialWire serial(*tcp);
  BroadcastWire* wire = state.range(1) ? static_cast<BroadcastWire*>(tcp.get()) : &serial;
  auto scratch = std::make_shared<PackedScratch>();  // kept across refits
  auto one = [&] {
    PackedSender tx(*wire, meta, target, scratch);
    for (const auto& t : w) tx.push(t.name, t.tensor);
    return tx.finish();
  };
  time_refits(state, one, pid);
}
BENCHMARK(BM_RefitPackedTcp)->Args({16, 0})->Args({16, 1})->Args({64, 0})->Args({64, 1})->Iterations(kRefits)->UseRealTime()->Unit(benchmark::kMillisecond);

// ---- GPU ----------------------------------------------------------------------------------

const std::vector<NamedTensor>& device_weights() {
  static const std::vector<NamedTensor> w = [] {
    std::vector<NamedTensor> out;
    for (const auto& t : weights()) out.push_back({t.name, t.tensor.to_device(Device::CUDA)});
    cuda_device_synchronize();
    return out;
  }();
  return w;
}

// The rollout process of BM_RefitCudaIpc: `refit_bench --ipc-consumer <socket path>`.
int ipc_consumer(const char* path) {
  try {
    RefitMetadata meta = meta_of(weights());
    std::vector<Tensor> dst;
    for (const auto& m : meta) dst.push_back(Tensor::zeros(m.shape, m.dtype, Device::CUDA));
    Socket ctl = connect_unix(path);
    CudaIpcMappings maps;
    for (int r = 0; r < kRefits + 1; ++r) {
      CudaIpcStagingReceiver rx(ctl, meta, &maps, Device::CUDA);
      NamedTensor nt;
      size_t i = 0;
      while (rx.next(nt)) copy_to_device_async(dst[i++].data(), nt.tensor);
      rx.acknowledge();
      if (i != meta.size()) return 1;
    }
    cuda_device_synchronize();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ipc consumer: %s\n", e.what());
    return 2;
  }
  return 0;
}

void BM_RefitCudaIpc(benchmark::State& state) {
  if (!cuda_device_usable()) {
    state.SkipWithError(cuda_unusable_reason().c_str());
    return;
  }
  const auto& w = device_weights();
  RefitMetadata meta = meta_of(w);
  const size_t buffer = size_t(state.range(0)) << 20;
  std::string path = fmt::format("/tmp/qarl-refit-bench-{}.sock", ::getpid());
  Listener l = Listener::unix_path(path);
  std::string self = "/proc/self/exe", flag = "--ipc-consumer";
  char* argv[] = {self.data(), flag.data(), path.data(), nullptr};
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv, environ) != 0) {
    state.SkipWithError("cannot spawn the consumer");
    return;
  }
  Socket ctl = l.accept();
  auto pool = CudaIpcBuffers::create(buffer);
  auto one = [&] {
    CudaIpcStagingSender tx(ctl, meta, pool);
    for (const auto& t : w) tx.push(t.name, t.tensor);
    return tx.finish();
  };
  time_refits(state, one, pid);
}
BENCHMARK(BM_RefitCudaIpc)->Arg(16)->Arg(64)->Iterations(kRefits)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_RefitNcclOneRankSender(benchmark::State& state) {
  std::string why = nccl_unavailable_reason();
  if (!why.empty()) {
    state.SkipWithError(("NCCL wire unavailable: " + why).c_str());
    return;
  }
  const auto& w = device_weights();
  RefitMetadata meta = meta_of(w);
  const size_t target = size_t(state.range(0)) << 20;
  auto wire = NcclBroadcastWire::single();
  auto one = [&] {
    DevicePackedSender tx(*wire, meta, target);
    for (const auto& t : w) tx.push(t.name, t.tensor);
    return tx.finish();
  };
  one();
  double bytes = 0;
  for (auto _ : state) bytes = double(one().bytes);
  report(state, bytes);
}
BENCHMARK(BM_RefitNcclOneRankSender)->Arg(16)->Arg(64)->Iterations(kRefits)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--ipc-consumer") == 0) return ipc_consumer(argv[2]);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
