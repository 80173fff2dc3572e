// GPU refit transports: the device CRC32C, CPU transports fed device tensors, the CUDA IPC
// staging transport (in one process through raw pointers, between two processes through
// IPC handles), and the device packed stream over NCCL (one rank loopback; two ranks on two
// GPUs). Every GPU case skips, with the reason, where no CUDA device (or no NCCL) is usable;
// the CPU checks of the same logic (the chunked CRC combine, the "why not" errors) run
// everywhere.
#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <fcntl.h>
#include <fstream>
#include <mutex>
#include <random>
#include <spawn.h>
#include <sstream>
#include <sys/wait.h>
#include <thread>

#include "qarl/core/error.h"
#include "qarl/refit/crc32c.h"
#include "qarl/refit/crc32c_device.h"
#include "qarl/refit/cuda_ipc_transport.h"
#include "qarl/refit/device_copy.h"
#include "qarl/refit/device_packed_transport.h"
#include "qarl/refit/nccl_wire.h"
#include "qarl/refit/packed_transport.h"
#include "qarl/refit/refit.h"
#include "qarl/refit/staging_transport.h"
#include "refit/refit_fakes.h"
#include "refit/transport_cases.h"
#include "test_util.h"

extern char** environ;

namespace qarl::refit {
namespace {

using test::compare_streams;
using test::make_case;
using test::metadata_of;

#define SKIP_WITHOUT_NCCL()                                                         \
  do {                                                                              \
    std::string why_ = nccl_unavailable_reason();                                   \
    if (!why_.empty()) GTEST_SKIP() << "NCCL wire unavailable: " << why_;           \
  } while (0)

std::vector<unsigned char> random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<unsigned char> v(n);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

std::vector<NamedTensor> to_cuda(const std::vector<NamedTensor>& s) {
  std::vector<NamedTensor> out;
  for (const auto& t : s) out.push_back({t.name, t.tensor.to_device(Device::CUDA)});
  return out;
}

// Drains a receiver into host copies, checking that yielded tensors are on `device`.
std::vector<NamedTensor> drain_to_host(RefitReceiver& rx, Device device, std::string* err) {
  std::vector<NamedTensor> got;
  NamedTensor nt;
  while (rx.next(nt)) {
    if (nt.tensor.device() != device && err) *err += "wrong device for " + nt.name + "; ";
    got.push_back({nt.name, on_device(nt.tensor, Device::CPU).clone()});
  }
  rx.acknowledge();
  return got;
}

// ---- CRC32C: the parallel form on the host, then on the device ---------------------------

TEST(RefitCrc32c, ChunkedTwoLevelCombineEqualsWholeBufferCrc) {
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  const size_t chunk = 1024, threads = 256, block = chunk * threads;
  Crc32cShift chunk_shift(chunk), block_shift(block);
  for (size_t n : {size_t(0), size_t(1), size_t(7), size_t(1023), size_t(1024), size_t(1025),
                   block - 1, block, block + 9, 3 * block + 1031}) {
    SCOPED_TRACE(n);
    auto data = random_bytes(n, seed + n);
    // Level 1: one raw CRC per chunk; level 2: one per block (what a thread block computes);
    // level 3: the host combine over blocks.
    std::vector<uint32_t> block_raw;
    for (size_t b0 = 0; b0 < n; b0 += block) {
      size_t bn = std::min(block, n - b0);
      std::vector<uint32_t> raws;
      for (size_t c0 = 0; c0 < bn; c0 += chunk)
        raws.push_back(crc32c_raw(0, data.data() + b0 + c0, std::min(chunk, bn - c0)));
      block_raw.push_back(crc32c_raw_combine(0, raws.data(), raws.size(), chunk_shift, bn));
    }
    for (uint32_t init : {0u, 0xDEADBEEFu}) {
      uint32_t got = ~crc32c_raw_combine(~init, block_raw.data(), block_raw.size(), block_shift, n);
      EXPECT_EQ(got, crc32c(data.data(), n, init));
    }
  }
}

TEST(CudaRefitCrc, DeviceChecksumEqualsHostCrc32c) {
  SKIP_WITHOUT_GPU();
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  const size_t block = kCrcChunk * kCrcBlockThreads;
  for (size_t n : {size_t(1), size_t(5), size_t(8), size_t(1023), size_t(1024), size_t(4099),
                   block - 3, block, 2 * block + 1, size_t(37) * 1000 * 1000 + 11}) {
    SCOPED_TRACE(n);
    auto data = random_bytes(n, seed ^ n);
    auto d = Storage::allocate(n, Device::CUDA);
    Tensor::borrow(d->data(), {int64_t(n)}, DType::U8, d, Device::CUDA)
        .copy_from(Tensor::borrow(data.data(), {int64_t(n)}, DType::U8, nullptr));
    EXPECT_EQ(crc32c_device(d->data(), n), crc32c(data.data(), n));
    EXPECT_EQ(crc32c_device(d->data(), n, 0x12345678u), crc32c(data.data(), n, 0x12345678u));
    data[n / 2] ^= 1;  // one flipped bit changes it
    EXPECT_NE(crc32c_device(d->data(), n), crc32c(data.data(), n));
  }
}

// ---- the CPU transports take device tensors and yield on the device ----------------------

TEST(CudaRefitDeviceTensors, SharedMemoryStagingTakesAndYieldsDeviceTensors) {
  SKIP_WITHOUT_GPU();
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  auto want = make_case("mixed", seed);
  auto dev = to_cuda(want);
  RefitMetadata meta = metadata_of(want);
  auto [a, b] = socket_pair();
  std::vector<NamedTensor> got;
  std::string rx_error;
  std::thread receiver([&, sock = std::move(b)]() mutable {
    try {
      StagingReceiver rx(sock, meta, nullptr, Device::CUDA);
      got = drain_to_host(rx, Device::CUDA, &rx_error);
    } catch (const std::exception& e) {
      rx_error += e.what();
    }
  });
  StagingSender tx(a, meta, 2048);
  for (size_t i = 0; i < dev.size(); ++i)  // device and host tensors mixed
    tx.push(dev[i].name, i % 3 == 0 ? want[i].tensor : dev[i].tensor);
  tx.finish();
  receiver.join();
  EXPECT_EQ(rx_error, "");
  EXPECT_EQ(compare_streams(want, got), "");
}

// In-process wire between two threads: the root's broadcasts are queued (host or device
// copies, by the wire's kind), the leaf takes them in order; the barrier is a real
// rendezvous, so the root learns the leaf's verdict. With `nccl` (a one-rank communicator)
// every root broadcast goes through ncclBroadcast into the queued device buffer.
class ThreadWire {
 public:
  struct End : BroadcastWire {
    ThreadWire* w;
    bool root;
    End(ThreadWire* w, bool root) : w(w), root(root) {}
    bool is_root() const override { return root; }
    bool device_buffers() const override { return w->device; }
    void broadcast(void* d, size_t n) override { w->bcast(root, d, n); }
    bool barrier(bool ok) override { return w->barrier(root, ok); }
  };
  explicit ThreadWire(bool device, NcclBroadcastWire* nccl = nullptr) : device(device), nccl(nccl) {}
  End root_end{this, true}, leaf_end{this, false};
  bool device;
  NcclBroadcastWire* nccl;
  int corrupt_call = -1;

 private:
  void bcast(bool root, void* d, size_t n) {
    std::unique_lock<std::mutex> lk(mu_);
    if (root) {
      std::shared_ptr<Storage> s = Storage::allocate(n, device ? Device::CUDA : Device::CPU);
      Tensor dst = Tensor::borrow(s->data(), {int64_t(n)}, DType::U8, s, s->device());
      if (nccl)
        nccl->broadcast_from(d, s->data(), n);
      else
        dst.copy_from(Tensor::borrow(d, {int64_t(n)}, DType::U8, nullptr, s->device()));
      if (calls_++ == corrupt_call && n > 8) {
        Tensor one = dst.narrow0(int64_t(n / 2), 1).to_device(Device::CPU);
        one.data_as<uint8_t>()[0] ^= 0x10;
        dst.narrow0(int64_t(n / 2), 1).copy_from(one);
      }
      q_.push_back(s);
      cv_.notify_all();
    } else {
      cv_.wait(lk, [&] { return !q_.empty(); });
      auto s = q_.front();
      q_.pop_front();
      if (s->nbytes() != n) throw runtime_err("thread wire: size mismatch");
      Tensor::borrow(d, {int64_t(n)}, DType::U8, nullptr, s->device())
          .copy_from(Tensor::borrow(s->data(), {int64_t(n)}, DType::U8, s, s->device()));
    }
  }
  bool barrier(bool root, bool ok) {
    std::unique_lock<std::mutex> lk(mu_);
    if (!root) {
      leaf_ok_ = ok;
      leaf_at_barrier_ = true;
      cv_.notify_all();
      return ok;
    }
    cv_.wait(lk, [&] { return leaf_at_barrier_; });
    leaf_at_barrier_ = false;
    return ok && leaf_ok_;
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Storage>> q_;
  int calls_ = 0;
  bool leaf_ok_ = true, leaf_at_barrier_ = false;
};

TEST(CudaRefitDeviceTensors, HostPackedStreamTakesAndYieldsDeviceTensors) {
  SKIP_WITHOUT_GPU();
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  auto want = make_case("mixed", seed);
  auto dev = to_cuda(want);
  RefitMetadata meta = metadata_of(want);
  ThreadWire w(/*device=*/false);
  std::vector<NamedTensor> got;
  std::string rx_error;
  std::thread receiver([&] {
    try {
      PackedReceiver rx(w.leaf_end, meta, 700, Device::CUDA);
      got = drain_to_host(rx, Device::CUDA, &rx_error);
    } catch (const std::exception& e) {
      rx_error += e.what();
    }
  });
  PackedSender tx(w.root_end, meta, 700);
  for (const auto& t : dev) tx.push(t.name, t.tensor);
  tx.finish();
  receiver.join();
  EXPECT_EQ(rx_error, "");
  EXPECT_EQ(compare_streams(want, got), "");
  // A device wire is refused by the host-packing ends, and the reverse.
  ThreadWire dw(/*device=*/true);
  EXPECT_THROW(PackedSender(dw.root_end, meta, 700), Error);
  EXPECT_THROW(PackedReceiver(dw.leaf_end, meta, 700), Error);
  EXPECT_THROW(DevicePackedSender(w.root_end, meta, 700), Error);
}

// ---- CUDA IPC staging ------------------------------------------------------------------

TEST(RefitCudaIpc, WithoutADeviceTheTransportSaysWhy) {
  if (cuda_device_usable()) GTEST_SKIP() << "a CUDA device is present (the GPU cases run)";
  std::string why = cuda_ipc_unavailable_reason();
  EXPECT_FALSE(why.empty());
  try {
    CudaIpcBuffers::create(4096);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
  }
}

TEST(CudaRefitIpc, InProcessRoundTripsReuseBuffersAndMappings) {
  SKIP_WITHOUT_GPU();
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  auto want = make_case("mixed", seed);
  auto dev = to_cuda(want);
  RefitMetadata meta = metadata_of(want);
  auto [a, b] = socket_pair();
  std::vector<std::vector<NamedTensor>> got(3);
  std::string rx_error;
  std::thread receiver([&, sock = std::move(b)]() mutable {
    try {
      CudaIpcMappings maps;
      for (int r = 0; r < 3; ++r) {
        Device y = r == 1 ? Device::CPU : Device::CUDA;
        CudaIpcStagingReceiver rx(sock, meta, &maps, y);
        std::vector<NamedTensor> g;
        NamedTensor nt;
        while (rx.next(nt)) {
          if (nt.tensor.device() != y) rx_error += "wrong device; ";
          if (y == Device::CUDA && reinterpret_cast<uintptr_t>(nt.tensor.data()) % kStagingAlignment)
            rx_error += "unaligned " + nt.name + "; ";
          g.push_back({nt.name, on_device(nt.tensor, Device::CPU).clone()});
        }
        rx.acknowledge();
        got[size_t(r)] = g;
      }
    } catch (const std::exception& e) {
      rx_error += e.what();
    }
  });
  auto pool = CudaIpcBuffers::create(2048);  // the 12372-byte tensor is oversized
  for (int r = 0; r < 3; ++r) {
    CudaIpcStagingSender tx(a, meta, pool);
    for (size_t i = 0; i < want.size(); ++i)
      tx.push(want[i].name, (i + size_t(r)) % 2 ? dev[i].tensor : want[i].tensor);
    TransferStats s = tx.finish();
    EXPECT_EQ(s.bytes, metadata_total_bytes(meta));
    EXPECT_GE(s.batches, 4u);
  }
  receiver.join();
  EXPECT_EQ(rx_error, "");
  for (const auto& g : got) EXPECT_EQ(compare_streams(want, g), "");
}

std::vector<NamedTensor> model_stream(uint64_t seed, bool bad);  // below

test::TinyConfig model_config(uint64_t seed) {
  test::TinyConfig c;
  c.seed = seed;
  c.input_quant = true;
  c.layers = 4;
  c.hidden = 40;
  c.inter = 72;
  return c;
}

std::vector<NamedTensor> model_stream(uint64_t seed, bool bad) {
  std::vector<NamedTensor> s;
  for_each_export(plan_export(test::FakeTrainer(model_config(seed))),
                  [&](const std::string& n, const Tensor& t) { s.push_back({n, t}); });
  if (bad)
    for (auto& x : s)
      if (x.name == "model.layers.2.self_attn.v_bmm_quantizer._amax")
        x.tensor = Tensor::scalar(-1.0f, DType::BF16);
  return s;
}

// The rollout refuses a refit mid-stream (sender throws), the trainer aborts one halfway
// (receiver fails "aborted"), then a good refit: the engine changes only with the last,
// and the connection carries all three.
TEST(CudaRefitIpc, RefusedAndAbortedRefitsFailBothEndsAndTheConnectionRecovers) {
  SKIP_WITHOUT_GPU();
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  auto good = to_cuda(model_stream(seed, false));
  auto bad = to_cuda(model_stream(seed, true));
  RefitMetadata meta = metadata_of(good);
  auto [a, b] = socket_pair();
  std::vector<std::string> outcomes;
  bool engine_ok = true;
  std::thread rollout([&, sock = std::move(b)]() mutable {
    test::FakeEngine engine(model_config(seed));
    CudaIpcMappings maps;
    for (int r = 0; r < 3; ++r) {
      auto before = engine.snapshot();
      StrictLoader loader(engine, NameMapper::dense());
      try {
        CudaIpcStagingReceiver rx(sock, meta, &maps);
        receive_refit(rx, loader);
        outcomes.push_back("ok");
      } catch (const Error& e) {
        std::string w = e.what();
        outcomes.push_back(w.find("aborted") != std::string::npos ? "aborted" : e.tensor());
        engine_ok = engine_ok && engine.same_as(before);
      }
    }
  });
  auto pool = CudaIpcBuffers::create(4096);
  bool refused_seen = false;
  try {
    CudaIpcStagingSender tx(a, meta, pool);
    for (const auto& t : bad) tx.push(t.name, t.tensor);
    tx.finish();
  } catch (const Error&) {
    refused_seen = true;
  }
  {
    CudaIpcStagingSender tx(a, meta, pool);
    for (size_t i = 0; i < good.size() / 2; ++i) tx.push(good[i].name, good[i].tensor);
  }  // destroyed mid-refit: abort
  CudaIpcStagingSender tx(a, meta, pool);
  for (const auto& t : good) tx.push(t.name, t.tensor);
  EXPECT_NO_THROW(tx.finish());
  rollout.join();
  EXPECT_TRUE(refused_seen);
  EXPECT_EQ(outcomes, (std::vector<std::string>{"model.layers.2.self_attn.v_bmm_quantizer._amax",
                                                "aborted", "ok"}));
  EXPECT_TRUE(engine_ok);
}

// ---- two processes (the rollout is tests/refit/refit_peer.cpp) ---------------------------

struct Peer {
  pid_t pid = -1;
  std::string err_path;
  // The peer's exit code; a peer still running after timeout_s is killed (a hang becomes a
  // failure with the peer's stderr, not a stuck test binary).
  int wait(double timeout_s = 120.0) {
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ADD_FAILURE() << "refit_peer still running after " << timeout_s << " s: killed";
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  std::string err() const {
    std::ifstream f(err_path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
};

Peer spawn_peer(const std::vector<std::string>& args, const std::string& err_path) {
  std::vector<std::string> all = {qarl::test::refit_peer_binary()};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : all) argv.push_back(s.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  Peer p;
  p.err_path = err_path;
  int rc = posix_spawn(&p.pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("posix_spawn refit_peer failed");
  return p;
}

TransferStats ipc_send(const std::string& kase, uint64_t seed, const std::vector<NamedTensor>& s,
                       size_t buffer, const std::string& yield, int want_rc,
                       qarl::test::TempDir& dir) {
  Listener l = Listener::unix_path(dir.file("ipc.sock"));
  Peer p = spawn_peer({"ipc", dir.file("ipc.sock"), kase, std::to_string(seed), yield},
                      dir.file("ipc.err"));
  TransferStats st;
  bool threw = false;
  try {
    Socket ctl = l.accept();
    CudaIpcStagingSender tx(ctl, metadata_of(s), buffer);
    for (const auto& t : s) tx.push(t.name, t.tensor);
    st = tx.finish();
  } catch (const Error& e) {
    threw = true;
    if (want_rc == 0) ADD_FAILURE() << e.what();
  }
  EXPECT_EQ(p.wait(), want_rc) << p.err();
  if (want_rc != 0) {
    EXPECT_TRUE(threw) << "the sender did not see the peer's failure";
  }
  return st;
}

TEST(CudaRefitIpc, TwoProcessRoundTripMixedBothYields) {
  SKIP_WITHOUT_GPU();
  qarl::test::TempDir dir;
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  auto dev = to_cuda(make_case("mixed", seed));
  TransferStats s = ipc_send("mixed", seed, dev, 2048, "cuda", 0, dir);
  EXPECT_GE(s.batches, 4u);
  ipc_send("mixed", seed, dev, 2048, "cpu", 0, dir);
}

TEST(CudaRefitIpc, TwoProcessBenchLikeSetWithOddSizes) {
  SKIP_WITHOUT_GPU();
  qarl::test::TempDir dir;
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  auto dev = to_cuda(make_case("odd", seed, 96));
  TransferStats s = ipc_send("odd:96", seed, dev, size_t(16) << 20, "cuda", 0, dir);
  std::printf("CUDA IPC staging, 2 x 16 MiB device buffers, two processes: %s\n", describe(s).c_str());
  RecordProperty("ipc_gb_per_s", std::to_string(s.gb_per_s()));
  EXPECT_GE(s.batches, 6u);
}

TEST(CudaRefitIpc, TwoProcessModelRefitAndRefusedRefit) {
  SKIP_WITHOUT_GPU();
  qarl::test::TempDir dir;
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  ipc_send("model", seed, to_cuda(model_stream(seed, false)), 4096, "cuda", 0, dir);
  // The peer's strict load refuses a K/V amax at the sentinel: exit 3 = failure observed,
  // engine unchanged; the sender's finish() throws.
  ipc_send("model-bad", seed, to_cuda(model_stream(seed, true)), 1 << 20, "cuda", 3, dir);
}

// ---- NCCL --------------------------------------------------------------------------------

TEST(RefitNccl, WithoutNcclOrADeviceTheWireSaysWhy) {
  std::string why = nccl_unavailable_reason();
  if (why.empty()) GTEST_SKIP() << "NCCL and a CUDA device are present (the GPU cases run)";
  try {
    NcclBroadcastWire::single();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
  }
}

TEST(CudaRefitNccl, OneRankLoopbackRoundTripsThroughNcclBroadcast) {
  SKIP_WITHOUT_GPU();
  SKIP_WITHOUT_NCCL();
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  auto nccl = NcclBroadcastWire::single();
  ASSERT_EQ(nccl->nranks(), 1);
  struct Case { std::vector<NamedTensor> want; size_t target; };
  std::vector<Case> cases = {{make_case("mixed", seed), 0}, {make_case("mixed", seed), 777},
                             {make_case("mixed", seed), size_t(1) << 30},
                             {make_case("odd", seed, 48), size_t(8) << 20}};
  for (auto& c : cases) {
    SCOPED_TRACE(c.target);
    auto dev = to_cuda(c.want);
    RefitMetadata meta = metadata_of(c.want);
    for (Device y : {Device::CUDA, Device::CPU}) {
      ThreadWire w(/*device=*/true, nccl.get());
      std::vector<NamedTensor> got;
      std::string rx_error;
      std::thread receiver([&] {
        try {
          DevicePackedReceiver rx(w.leaf_end, meta, c.target, y);
          got = drain_to_host(rx, y, &rx_error);
        } catch (const std::exception& e) {
          rx_error += e.what();
        }
      });
      DevicePackedSender tx(w.root_end, meta, c.target);
      for (size_t i = 0; i < dev.size(); ++i)
        tx.push(dev[i].name, i % 4 == 1 ? c.want[i].tensor : dev[i].tensor);
      TransferStats s = tx.finish();
      receiver.join();
      EXPECT_EQ(rx_error, "");
      EXPECT_EQ(compare_streams(c.want, got), "");
      EXPECT_EQ(s.batches, plan_packed_batches(meta, c.target).size());
      if (c.target == (size_t(8) << 20) && y == Device::CUDA)
        std::printf("NCCL 1-rank loopback, device packed stream, 8 MiB batches: %s\n",
                    describe(s).c_str());
    }
  }
}

TEST(CudaRefitNccl, CorruptBatchIsDetectedAndAbandonOrAbortFailsBothEnds) {
  SKIP_WITHOUT_GPU();
  SKIP_WITHOUT_NCCL();
  auto nccl = NcclBroadcastWire::single();
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  auto want = make_case("mixed", seed);
  auto dev = to_cuda(want);
  RefitMetadata meta = metadata_of(want);
  auto batches = plan_packed_batches(meta, 2000);
  // 1: batch 1 corrupted on the wire: the receiver names its first tensor and abandons;
  //    the sender's finish() sees the failed barrier.
  // 2: the sender is destroyed after half the tensors: the receiver fails "aborted".
  for (int scenario : {1, 2}) {
    SCOPED_TRACE(scenario);
    ThreadWire w(true, nccl.get());
    if (scenario == 1) w.corrupt_call = 2;  // call 0 is the header
    std::string rx_error, rx_tensor;
    std::thread receiver([&] {
      DevicePackedReceiver rx(w.leaf_end, meta, 2000);
      try {
        NamedTensor nt;
        while (rx.next(nt)) {
        }
        rx.acknowledge();
      } catch (const Error& e) {
        rx_error = e.what();
        rx_tensor = e.tensor();
        rx.abandon(e.what());
      }
    });
    bool sender_threw = false;
    try {
      DevicePackedSender tx(w.root_end, meta, 2000);
      size_t n = scenario == 2 ? dev.size() / 2 : dev.size();
      for (size_t i = 0; i < n; ++i) tx.push(dev[i].name, dev[i].tensor);
      if (scenario == 1) tx.finish();
    } catch (const Error&) {
      sender_threw = true;
    }
    receiver.join();
    if (scenario == 1) {
      EXPECT_TRUE(sender_threw);
      EXPECT_NE(rx_error.find("corrupt"), std::string::npos) << rx_error;
      EXPECT_EQ(rx_tensor, meta[batches[1].first].name);
    } else {
      EXPECT_NE(rx_error.find("aborted"), std::string::npos) << rx_error;
    }
  }
}

// Sets an environment variable for one test (inherited by the peers it spawns).
struct ScopedEnv {
  std::string name;
  ScopedEnv(const char* n, const char* v) : name(n) { ::setenv(n, v, 1); }
  ~ScopedEnv() { ::unsetenv(name.c_str()); }
};

TEST(CudaRefitNccl, TwoRanksOnTwoGpusBroadcastToAPeerProcess) {
  SKIP_WITHOUT_GPU();
  SKIP_WITHOUT_NCCL();
  int n = cuda_device_count();
  if (n < 2) GTEST_SKIP() << "needs 2 GPUs (found " << n << "): NCCL refuses two ranks on one GPU";
  ScopedEnv timeout("QARL_NCCL_TIMEOUT_S", "45");  // a hang fails the test instead
  qarl::test::TempDir dir;
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  auto want = make_case("odd", seed, 64);
  const size_t target = size_t(16) << 20;
  Listener l = Listener::tcp();
  Peer p = spawn_peer({"nccl", std::to_string(l.port()), "odd:64", std::to_string(seed),
                       std::to_string(target), "1"},
                      dir.file("nccl.err"));
  cuda_set_device(0);
  try {
    std::vector<Socket> leaves;
    leaves.push_back(l.accept());
    auto wire = NcclBroadcastWire::root(std::move(leaves));
    auto dev = to_cuda(want);
    DevicePackedSender tx(*wire, metadata_of(want), target);
    for (const auto& t : dev) tx.push(t.name, t.tensor);
    TransferStats s = tx.finish();
    std::printf("NCCL 2 ranks (GPU 0 -> GPU 1), 16 MiB batches: %s\n", describe(s).c_str());
  } catch (const Error& e) {
    ADD_FAILURE() << "root: " << e.what();
  }
  EXPECT_EQ(p.wait(75.0), 0) << "peer stderr:\n" << p.err();
}

// A leaf that takes the rendezvous and never joins: the root's communicator set-up must end
// in an Error naming the step and the timeout (and abort the communicator), not hang.
TEST(CudaRefitNccl, RootGivesUpOnALeafThatNeverJoins) {
  SKIP_WITHOUT_GPU();
  SKIP_WITHOUT_NCCL();
  ScopedEnv timeout("QARL_NCCL_TIMEOUT_S", "3");
  Listener l = Listener::tcp();
  std::atomic<bool> root_done{false};
  std::thread silent([&] {
    Socket s = connect_tcp("127.0.0.1", l.port());
    char buf[sizeof(int32_t) * 2 + 128];  // rank, rank count, ncclUniqueId
    s.recv_all(buf, sizeof buf);          // the rendezvous; then nothing
    for (int i = 0; i < 3000 && !root_done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  });
  std::vector<Socket> leaves;
  leaves.push_back(l.accept());
  const auto t0 = std::chrono::steady_clock::now();
  try {
    auto wire = NcclBroadcastWire::root(std::move(leaves));
    ADD_FAILURE() << "root() returned with a rank missing";
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("ncclCommInitRankConfig"), std::string::npos) << what;
    EXPECT_NE(what.find("not done after 3 s"), std::string::npos) << what;
  }
  root_done = true;
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(waited, 30.0);
  silent.join();
}

TEST(CudaRefitNccl, TimeoutSettingIsCheckedAndNamed) {
  {
    ScopedEnv t("QARL_NCCL_TIMEOUT_S", "12.5");
    EXPECT_EQ(nccl_timeout_s(), 12.5);
  }
  for (const char* bad : {"0", "-3", "abc", "5s", "inf", "nan"}) {
    ScopedEnv t("QARL_NCCL_TIMEOUT_S", bad);
    try {
      nccl_timeout_s();
      ADD_FAILURE() << "accepted QARL_NCCL_TIMEOUT_S=" << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("QARL_NCCL_TIMEOUT_S"), std::string::npos);
    }
  }
  EXPECT_EQ(nccl_timeout_s(), 300.0);
}

}  // namespace
}  // namespace qarl::refit
