// Transports: batch planning, checksums, in-process logic (corruption, metadata mismatch),
// and round trips between two (or three) processes through the refit_peer executable.
#include <gtest/gtest.h>

#include <deque>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <spawn.h>
#include <sys/wait.h>
#include <thread>

#include "qarl/core/error.h"
#include "qarl/refit/crc32c.h"
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

// In-process wire: the root's broadcasts are queued, the leaf pops them (the sender runs to
// completion first; no threads needed). `corrupt_call` flips one byte of that broadcast.
struct Loopback {
  std::deque<std::vector<unsigned char>> q;
  int corrupt_call = -1, calls = 0;
  bool leaf_ok = true;
};
class LoopbackWire : public BroadcastWire {
 public:
  LoopbackWire(Loopback& lb, bool root, bool background = false, int fail_call = -1)
      : lb_(lb), root_(root), background_(background), fail_call_(fail_call) {}
  bool is_root() const override { return root_; }
  bool background_ok() const override { return background_; }
  void broadcast(void* data, size_t n) override {
    auto* p = static_cast<unsigned char*>(data);
    if (root_) {
      if (lb_.calls == fail_call_) throw runtime_err("loopback: injected send failure");
      lb_.q.emplace_back(p, p + n);
      if (lb_.calls++ == lb_.corrupt_call && n > 8) lb_.q.back()[n / 2] ^= 0x10;
    } else {
      if (lb_.q.empty() || lb_.q.front().size() != n) throw runtime_err("loopback: size mismatch");
      std::memcpy(p, lb_.q.front().data(), n);
      lb_.q.pop_front();
    }
  }
  bool barrier(bool ok) override {
    if (!root_) lb_.leaf_ok = ok;
    return root_ ? lb_.leaf_ok : ok;
  }

 private:
  Loopback& lb_;
  bool root_, background_;
  int fail_call_;
};

std::vector<NamedTensor> drain(RefitReceiver& rx) {
  std::vector<NamedTensor> got;
  NamedTensor nt;
  while (rx.next(nt)) got.push_back(nt);
  rx.acknowledge();
  return got;
}

TEST(RefitCrc32c, KnownVectorAndHardwareMatchesSoftware) {
  const char* s = "123456789";
  EXPECT_EQ(crc32c(s, 9), 0xE3069283u);
  EXPECT_EQ(crc32c_software(s, 9), 0xE3069283u);
  EXPECT_EQ(crc32c(s + 4, 5, crc32c(s, 4)), 0xE3069283u);  // chaining
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  auto v = qarl::test::random_normal(1000, 1.0f, seed);
  const char* p = reinterpret_cast<const char*>(v.data());
  for (size_t off : {0, 1, 3, 7})
    for (size_t n : {0, 1, 7, 8, 9, 63, 1001, 3989})
      EXPECT_EQ(crc32c(p + off, n), crc32c_software(p + off, n)) << off << " " << n;
}

TEST(RefitPacked, BatchBoundariesCloseAfterTheCrossingTensor) {
  RefitMetadata m = {{"a", {10}, DType::F32},  // 40
                     {"b", {}, DType::BF16},   // 2
                     {"c", {5}, DType::F32},   // 20  -> 62 > 50: closes [a,b,c]
                     {"d", {30}, DType::U8},   // 30
                     {"e", {3}, DType::F32},   // 12 -> 42
                     {"f", {}, DType::I64}};   // 8  -> 50, not > 50: final partial batch
  auto b = plan_packed_batches(m, 50);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].first, 0u);
  EXPECT_EQ(b[0].end, 3u);
  EXPECT_EQ(b[0].bytes, 62u);
  EXPECT_EQ(b[1].first, 3u);
  EXPECT_EQ(b[1].end, 6u);
  EXPECT_EQ(b[1].bytes, 50u);
  EXPECT_EQ(plan_packed_batches(m, 0).size(), m.size());
  EXPECT_EQ(plan_packed_batches(m, 1 << 20).size(), 1u);
  EXPECT_TRUE(plan_packed_batches({}, 50).empty());
}

TEST(RefitPacked, RoundTripRestoresScalarsAndMisalignedSlices) {
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  auto want = make_case("mixed", seed);
  RefitMetadata meta = metadata_of(want);
  for (size_t target : {size_t(0), size_t(2000), size_t(777), size_t(1) << 30}) {
    SCOPED_TRACE(target);
    Loopback lb;
    LoopbackWire root(lb, true), leaf(lb, false);
    PackedSender tx(root, meta, target);
    for (const auto& t : want) tx.push(t.name, t.tensor);
    TransferStats s = tx.finish();
    EXPECT_EQ(s.bytes, metadata_total_bytes(meta));
    EXPECT_EQ(s.batches, plan_packed_batches(meta, target).size());
    PackedReceiver rx(leaf, meta, target);
    auto got = drain(rx);
    EXPECT_EQ(compare_streams(want, got), "");
    EXPECT_EQ(got[0].tensor.shape(), Shape{});
    EXPECT_EQ(got[0].tensor.item(), 42.0);
    EXPECT_TRUE(lb.q.empty());
  }
  // The 2000-byte target gives several batches and a final partial one.
  auto b = plan_packed_batches(meta, 2000);
  EXPECT_GE(b.size(), 3u);
  EXPECT_LE(b.back().bytes, 2000u);
}

TEST(RefitPacked, BackgroundBroadcastGivesTheSameStreamAndPropagatesErrors) {
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  auto want = make_case("mixed", seed);
  RefitMetadata meta = metadata_of(want);
  auto scratch = std::make_shared<PackedScratch>();
  for (int refit = 0; refit < 2; ++refit) {  // scratch buffers reused by the second refit
    Loopback lb;
    LoopbackWire root(lb, true, /*background=*/true), leaf(lb, false);
    PackedSender tx(root, meta, 700, scratch);
    for (const auto& t : want) tx.push(t.name, t.tensor);
    TransferStats s = tx.finish();
    EXPECT_GE(s.batches, 5u);
    PackedReceiver rx(leaf, meta, 700);
    EXPECT_EQ(compare_streams(want, drain(rx)), "");
  }
  for (int fail_call : {1, 3}) {
    Loopback lb;
    LoopbackWire root(lb, true, true, fail_call);
    bool threw = false;
    try {
      PackedSender tx(root, meta, 700);
      for (const auto& t : want) tx.push(t.name, t.tensor);
      tx.finish();
    } catch (const Error& e) {
      threw = std::string(e.what()).find("injected") != std::string::npos;
    }
    EXPECT_TRUE(threw) << fail_call;
  }
}

TEST(RefitPacked, CorruptBatchIsDetectedByItsChecksum) {
  auto want = make_case("mixed", 5);
  RefitMetadata meta = metadata_of(want);
  auto batches = plan_packed_batches(meta, 2000);
  Loopback lb;
  lb.corrupt_call = 2;  // header is call 0, so this is batch 1
  LoopbackWire root(lb, true), leaf(lb, false);
  PackedSender tx(root, meta, 2000);
  for (const auto& t : want) tx.push(t.name, t.tensor);
  tx.finish();
  PackedReceiver rx(leaf, meta, 2000);
  try {
    drain(rx);
    FAIL() << "corruption not detected";
  } catch (const Error& e) {
    EXPECT_EQ(e.tensor(), meta[batches[1].first].name) << e.what();
  }
}

TEST(RefitPacked, DifferentMetadataOrMisorderedPushFails) {
  auto want = make_case("mixed", 6);
  RefitMetadata meta = metadata_of(want);
  Loopback lb;
  LoopbackWire root(lb, true), leaf(lb, false);
  PackedSender tx(root, meta, 2000);
  for (const auto& t : want) tx.push(t.name, t.tensor);
  tx.finish();
  RefitMetadata other = meta;
  other[3].shape = {8};
  PackedReceiver rx(leaf, other, 2000);
  NamedTensor nt;
  EXPECT_THROW(rx.next(nt), Error);

  Loopback lb2;
  LoopbackWire root2(lb2, true);
  PackedSender tx2(root2, meta, 2000);
  EXPECT_THROW(tx2.push(want[1].name, want[1].tensor), Error);  // out of order
  PackedSender tx3(root2, meta, 2000);
  EXPECT_THROW(tx3.push(want[0].name, Tensor::scalar(1.0f, DType::F32)), Error);  // dtype
  PackedSender tx4(root2, meta, 2000);
  tx4.push(want[0].name, want[0].tensor);
  EXPECT_THROW(tx4.finish(), Error);  // incomplete stream
}

TEST(RefitStaging, ThreadedRoundTripAlignsEveryTensorAndUsesTempBuffer) {
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  auto want = make_case("mixed", seed);
  RefitMetadata meta = metadata_of(want);
  auto [a, b] = socket_pair();
  std::vector<NamedTensor> got;
  std::string rx_error;
  std::thread receiver([&, sock = std::move(b)]() mutable {
    try {
      StagingReceiver rx(sock, meta);
      NamedTensor nt;
      while (rx.next(nt)) {
        if (reinterpret_cast<uintptr_t>(nt.tensor.data()) % kStagingAlignment != 0)
          rx_error = "unaligned " + nt.name;
        got.push_back({nt.name, nt.tensor.clone()});
      }
      rx.acknowledge();
    } catch (const std::exception& e) {
      rx_error = e.what();
    }
  });
  StagingSender tx(a, meta, 2048);  // the 12372-byte tensor is oversized
  for (const auto& t : want) tx.push(t.name, t.tensor);
  TransferStats s = tx.finish();
  receiver.join();
  EXPECT_EQ(rx_error, "");
  EXPECT_EQ(compare_streams(want, got), "");
  EXPECT_EQ(s.bytes, metadata_total_bytes(meta));
  EXPECT_GE(s.batches, 4u);
}

TEST(RefitStaging, MetadataMismatchFailsBothEnds) {
  auto want = make_case("mixed", 8);
  RefitMetadata meta = metadata_of(want), other = meta;
  other.pop_back();
  auto [a, b] = socket_pair();
  std::string rx_error;
  std::thread receiver([&, sock = std::move(b)]() mutable {
    try {
      StagingReceiver rx(sock, other);
    } catch (const std::exception& e) {
      rx_error = e.what();
    }
  });
  EXPECT_THROW(StagingSender(a, meta, 4096), Error);
  receiver.join();
  EXPECT_NE(rx_error.find("different refit metadata"), std::string::npos) << rx_error;
}

// ---- two processes -------------------------------------------------------------------

struct Peer {
  pid_t pid = -1;
  std::string err_path;
  int wait() {
    int status = 0;
    waitpid(pid, &status, 0);
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

std::vector<NamedTensor> model_stream(uint64_t seed, bool bad) {
  test::TinyConfig c;
  c.seed = seed;
  c.input_quant = true;
  c.layers = 4;
  c.hidden = 40;
  c.inter = 72;
  std::vector<NamedTensor> s;
  for_each_export(plan_export(test::FakeTrainer(c)),
                  [&](const std::string& n, const Tensor& t) { s.push_back({n, t}); });
  if (bad)
    for (auto& x : s)
      if (x.name == "model.layers.2.self_attn.v_bmm_quantizer._amax")
        x.tensor = Tensor::scalar(-1.0f, DType::BF16);  // the sentinel: never calibrated
  return s;
}

TEST(RefitTwoProcess, StagingSharedMemoryRoundTrip) {
  qarl::test::TempDir dir;
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  auto want = make_case("mixed", seed);
  Listener l = Listener::unix_path(dir.file("refit.sock"));
  Peer p = spawn_peer({"staging", dir.file("refit.sock"), "mixed", std::to_string(seed)},
                      dir.file("peer.err"));
  Socket ctl = l.accept();
  StagingSender tx(ctl, metadata_of(want), 2048);
  for (const auto& t : want) tx.push(t.name, t.tensor);
  TransferStats s = tx.finish();
  EXPECT_EQ(p.wait(), 0) << p.err();
  EXPECT_GE(s.batches, 4u);
}

TEST(RefitTwoProcess, TcpBroadcastToTwoReceivers) {
  qarl::test::TempDir dir;
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  auto want = make_case("mixed", seed);
  Listener l = Listener::tcp();
  std::vector<Peer> peers;
  for (int i = 0; i < 2; ++i)
    peers.push_back(spawn_peer({"tcp", std::to_string(l.port()), "mixed", std::to_string(seed),
                                "2000"},
                               dir.file(fmt::format("peer{}.err", i))));
  std::vector<Socket> leaves;
  for (int i = 0; i < 2; ++i) leaves.push_back(l.accept());
  auto wire = TcpBroadcastWire::root(std::move(leaves));
  PackedSender tx(*wire, metadata_of(want), 2000);
  for (const auto& t : want) tx.push(t.name, t.tensor);
  TransferStats s = tx.finish();
  for (auto& p : peers) EXPECT_EQ(p.wait(), 0) << p.err();
  EXPECT_GE(s.batches, 3u);
}

TEST(RefitTwoProcess, ModelRefitIntoPeerEngineThroughBothTransports) {
  qarl::test::TempDir dir;
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  auto stream = model_stream(seed, false);
  {
    Listener l = Listener::unix_path(dir.file("s.sock"));
    Peer p = spawn_peer({"staging", dir.file("s.sock"), "model", std::to_string(seed)}, dir.file("s.err"));
    Socket ctl = l.accept();
    StagingSender tx(ctl, metadata_of(stream), 4096);
    for (const auto& t : stream) tx.push(t.name, t.tensor);
    tx.finish();
    EXPECT_EQ(p.wait(), 0) << p.err();
  }
  {
    Listener l = Listener::tcp();
    Peer p = spawn_peer({"tcp", std::to_string(l.port()), "model", std::to_string(seed), "3000"},
                        dir.file("t.err"));
    std::vector<Socket> leaves;
    leaves.push_back(l.accept());
    auto wire = TcpBroadcastWire::root(std::move(leaves));
    PackedSender tx(*wire, metadata_of(stream), 3000);
    for (const auto& t : stream) tx.push(t.name, t.tensor);
    tx.finish();
    EXPECT_EQ(p.wait(), 0) << p.err();
  }
}

TEST(RefitTwoProcess, FailedRefitInPeerLeavesItsEngineUnchangedAndSenderSeesIt) {
  qarl::test::TempDir dir;
  uint64_t seed = qarl::test::fresh_seed();
  auto stream = model_stream(seed, true);
  Listener l = Listener::unix_path(dir.file("s.sock"));
  Peer p = spawn_peer({"staging", dir.file("s.sock"), "model-bad", std::to_string(seed)},
                      dir.file("s.err"));
  bool sender_failed = false;
  try {
    Socket ctl = l.accept();
    StagingSender tx(ctl, metadata_of(stream), 1 << 20);
    for (const auto& t : stream) tx.push(t.name, t.tensor);
    tx.finish();
  } catch (const Error&) {
    sender_failed = true;
  }
  EXPECT_TRUE(sender_failed);
  EXPECT_EQ(p.wait(), 3) << p.err();
  EXPECT_NE(p.err().find("model.layers.2.self_attn.v_bmm_quantizer._amax"), std::string::npos)
      << p.err();
  EXPECT_NE(p.err().find("engine state unchanged"), std::string::npos) << p.err();
}

}  // namespace
}  // namespace qarl::refit

namespace qarl::refit {
namespace {

// The control connection and the wire outlive one refit: consecutive refits reuse them.
TEST(RefitStaging, ConsecutiveRefitsReuseTheConnection) {
  auto [a, b] = socket_pair();
  std::vector<uint64_t> seeds = {qarl::test::fresh_seed(), qarl::test::fresh_seed()};
  std::string rx_error;
  std::thread receiver([&, sock = std::move(b)]() mutable {
    try {
      for (uint64_t seed : seeds) {
        auto want = make_case("mixed", seed);
        StagingReceiver rx(sock, metadata_of(want));
        std::vector<NamedTensor> got;
        NamedTensor nt;
        while (rx.next(nt)) got.push_back({nt.name, nt.tensor.clone()});
        rx.acknowledge();
        std::string d = compare_streams(want, got);
        if (!d.empty()) rx_error += d;
      }
    } catch (const std::exception& e) {
      rx_error += e.what();
    }
  });
  for (uint64_t seed : seeds) {
    auto want = make_case("mixed", seed);
    StagingSender tx(a, metadata_of(want), 1024);
    for (const auto& t : want) tx.push(t.name, t.tensor);
    tx.finish();
  }
  receiver.join();
  EXPECT_EQ(rx_error, "");
}

}  // namespace
}  // namespace qarl::refit

namespace qarl::refit {
namespace {

// A rollout that refuses a refit tells the trainer (whose push/finish throws), keeps its
// state, and the same connection carries the next refit. Four refits in a row: a wrong
// dtype on the first tensor (refused while the sender is ahead), a bad K/V amax (refused
// mid-stream), a missing K/V amax (refused at the final check, after the transport
// completed), then a good one.
void refuse_then_recover(bool staging) {
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  test::TinyConfig c;
  c.seed = seed;
  auto good = model_stream(seed, false);
  auto bad = model_stream(seed, true);
  auto missing = good;
  std::erase_if(missing, [](const NamedTensor& x) {
    return x.name == "model.layers.1.self_attn.k_bmm_quantizer._amax";
  });
  // Refused at the first tensor, while the sender is already ahead (stale frames follow).
  auto early = good;
  early[0].tensor = early[0].tensor.to(DType::F32);
  std::vector<std::vector<NamedTensor>> refits = {early, bad, missing, good};
  // model_stream uses a 4-layer, hidden-40 config; mirror it for the engine.
  c.input_quant = true;
  c.layers = 4;
  c.hidden = 40;
  c.inter = 72;

  std::vector<std::string> outcomes;
  bool engine_ok = true;
  auto rollout = [&](auto make_rx) {
    test::FakeEngine engine(c);
    for (const auto& s : refits) {
      auto before = engine.snapshot();
      StrictLoader loader(engine, NameMapper::dense());
      auto rx = make_rx(metadata_of(s));
      try {
        receive_refit(*rx, loader);
        outcomes.push_back("ok");
      } catch (const Error& e) {
        outcomes.push_back(e.tensor());
        engine_ok = engine_ok && engine.same_as(before);
      }
    }
  };
  std::vector<bool> sender_threw;
  auto trainer = [&](auto make_tx) {
    for (const auto& s : refits) {
      try {
        auto tx = make_tx(metadata_of(s));
        for (const auto& t : s) tx->push(t.name, t.tensor);
        tx->finish();
        sender_threw.push_back(false);
      } catch (const Error&) {
        sender_threw.push_back(true);
      }
    }
  };

  if (staging) {
    auto [a, b] = socket_pair();
    std::thread r([&, sock = std::move(b)]() mutable {
      rollout([&](RefitMetadata m) { return std::make_unique<StagingReceiver>(sock, m); });
    });
    auto pool = StagingBuffers::create(4096);
    trainer([&](RefitMetadata m) { return std::make_unique<StagingSender>(a, m, pool); });
    r.join();
  } else {
    Listener l = Listener::tcp();
    std::thread r([&] {
      auto wire = TcpBroadcastWire::leaf(connect_tcp("127.0.0.1", l.port()));
      rollout([&](RefitMetadata m) { return std::make_unique<PackedReceiver>(*wire, m, 3000); });
    });
    std::vector<Socket> leaves;
    leaves.push_back(l.accept());
    auto wire = TcpBroadcastWire::root(std::move(leaves));
    trainer([&](RefitMetadata m) { return std::make_unique<PackedSender>(*wire, m, 3000); });
    r.join();
  }
  EXPECT_EQ(outcomes, (std::vector<std::string>{
                          "model.embed_tokens.weight",
                          "model.layers.2.self_attn.v_bmm_quantizer._amax",
                          "model.layers.1.self_attn.attn.k_bmm_quantizer._amax", "ok"}));
  EXPECT_EQ(sender_threw, (std::vector<bool>{true, true, true, false}));
  EXPECT_TRUE(engine_ok);
}

TEST(RefitStaging, RefusedRefitIsReportedAndTheConnectionRecovers) { refuse_then_recover(true); }
TEST(RefitPacked, RefusedRefitIsReportedAndTheWireRecovers) { refuse_then_recover(false); }

}  // namespace
}  // namespace qarl::refit

namespace qarl::refit {
namespace {

// The trainer gives up halfway (an error on its side): the rollout fails that refit with
// an Error saying so, keeps its state, and the next refit on the same connection works.
void trainer_abort_then_recover(bool staging) {
  uint64_t seed = qarl::test::fresh_seed();
  SCOPED_TRACE(seed);
  auto stream = model_stream(seed, false);
  test::TinyConfig c;
  c.seed = seed;
  c.input_quant = true;
  c.layers = 4;
  c.hidden = 40;
  c.inter = 72;
  RefitMetadata meta = metadata_of(stream);
  std::vector<std::string> outcomes;
  bool engine_ok = true;
  auto rollout = [&](auto make_rx) {
    test::FakeEngine engine(c);
    for (int r = 0; r < 2; ++r) {
      auto before = engine.snapshot();
      StrictLoader loader(engine, NameMapper::dense());
      auto rx = make_rx();
      try {
        receive_refit(*rx, loader);
        outcomes.push_back("ok");
      } catch (const Error& e) {
        outcomes.push_back(std::string(e.what()).find("aborted") != std::string::npos ? "aborted" : e.what());
        engine_ok = engine_ok && engine.same_as(before);
      }
    }
  };
  auto trainer = [&](auto make_tx) {
    {
      auto tx = make_tx();
      for (size_t i = 0; i < stream.size() / 2; ++i) tx->push(stream[i].name, stream[i].tensor);
    }  // destroyed mid-refit
    auto tx = make_tx();
    for (const auto& t : stream) tx->push(t.name, t.tensor);
    tx->finish();
  };
  if (staging) {
    auto [a, b] = socket_pair();
    std::thread r([&, sock = std::move(b)]() mutable {
      rollout([&] { return std::make_unique<StagingReceiver>(sock, meta); });
    });
    auto pool = StagingBuffers::create(4096);
    EXPECT_NO_THROW(trainer([&] { return std::make_unique<StagingSender>(a, meta, pool); }));
    r.join();
  } else {
    Listener l = Listener::tcp();
    std::thread r([&] {
      auto wire = TcpBroadcastWire::leaf(connect_tcp("127.0.0.1", l.port()));
      rollout([&] { return std::make_unique<PackedReceiver>(*wire, meta, 3000); });
    });
    std::vector<Socket> leaves;
    leaves.push_back(l.accept());
    auto wire = TcpBroadcastWire::root(std::move(leaves));
    EXPECT_NO_THROW(trainer([&] { return std::make_unique<PackedSender>(*wire, meta, 3000); }));
    r.join();
  }
  EXPECT_EQ(outcomes, (std::vector<std::string>{"aborted", "ok"}));
  EXPECT_TRUE(engine_ok);
}

TEST(RefitStaging, TrainerAbortFailsTheRefitAndTheConnectionRecovers) { trainer_abort_then_recover(true); }
TEST(RefitPacked, TrainerAbortFailsTheRefitAndTheWireRecovers) { trainer_abort_then_recover(false); }

}  // namespace
}  // namespace qarl::refit
