// Packed collective stream (the non-colocated path, reference-spec 4.1): tensors are
// byte-concatenated with no padding, and both ends derive identical batch boundaries from
// the same ordered metadata and target batch size, so nothing but bytes travels: a batch
// closes as soon as its size exceeds the target (the crossing tensor included), the last
// batch may be partial. Each batch is followed by 8 bytes: its CRC32C and its index, which
// the receivers verify. The stream starts with a 16-byte header (metadata fingerprint and
// target size) so that ends holding different metadata fail before misreading anything.
//
// Receivers restore every slice as a tensor of its shape and dtype; a slice whose byte
// offset is not a multiple of its element size (after a 0-d bf16 amax, say) is copied to an
// aligned tensor, the others are zero-copy views of the batch buffer (which stays alive as
// long as any of them does).
//
// The bytes move through a BroadcastWire: one root (the trainer), any number of leaves.
// TCP and MPI wires live here and in mpi_wire.h; the NCCL wire (nccl_wire.h) moves device
// buffers and carries the same stream format through device_packed_transport.h.
#pragma once
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "qarl/refit/socket.h"
#include "qarl/refit/transport.h"

namespace qarl::refit {

struct PackedBatch {
  size_t first = 0, end = 0;  // metadata indices [first, end)
  size_t bytes = 0;
};
// The one batching rule both ends use.
std::vector<PackedBatch> plan_packed_batches(const RefitMetadata& meta, size_t target_bytes);

class BroadcastWire {
 public:
  virtual ~BroadcastWire() = default;
  virtual bool is_root() const = 0;
  // Root: sends n bytes to every leaf. Leaf: receives n bytes.
  virtual void broadcast(void* data, size_t n) = 0;
  // Returns once every participant reached it (the end of a refit), with whether all of
  // them passed ok = true (the root learns about failed leaves; a leaf may only know itself).
  virtual bool barrier(bool ok) = 0;
  // Whether broadcast() may be called from a thread other than the one that created the
  // wire (one thread at a time). The packed sender then overlaps packing batch k+1 with
  // broadcasting batch k.
  virtual bool background_ok() const { return false; }
  // Whether broadcast() takes device pointers (the NCCL wire, nccl_wire.h). Such a wire
  // carries the device packed stream (device_packed_transport.h); the senders and receivers
  // below, which pack in host memory, refuse it.
  virtual bool device_buffers() const { return false; }
};

// TCP broadcast: the root writes every batch to each leaf's socket in turn.
class TcpBroadcastWire : public BroadcastWire {
 public:
  static std::unique_ptr<TcpBroadcastWire> root(std::vector<Socket> leaves);
  static std::unique_ptr<TcpBroadcastWire> leaf(Socket to_root);
  bool is_root() const override { return root_; }
  void broadcast(void* data, size_t n) override;
  bool barrier(bool ok) override;
  bool background_ok() const override { return true; }

 private:
  bool root_ = false;
  std::vector<Socket> socks_;
};

// Two packing buffers (round robin, as NeMo-RL's NRL_REFIT_NUM_BUFFERS=2), kept across
// refits so that their pages are faulted in once.
struct PackedScratch {
  std::vector<unsigned char> buf[2];
};

class PackedSender : public RefitSender {
 public:
  PackedSender(BroadcastWire& wire, RefitMetadata meta, size_t target_bytes,
               std::shared_ptr<PackedScratch> scratch = nullptr);
  // A sender destroyed mid-refit (an error on the trainer side) still walks the wire to the
  // end: every remaining batch goes out marked "aborted" and the barrier reports failure, so
  // the receivers fail this refit and stay in step for the next one.
  ~PackedSender() override;
  void push(const std::string& name, const Tensor& tensor) override;
  TransferStats finish() override;

 private:
  void start();
  void hand_off(int buffer, size_t bytes);  // broadcast now, or queue for the worker
  void wait_free(int buffer);
  void stop_worker();
  void worker_loop();

  BroadcastWire& wire_;
  RefitMetadata meta_;
  size_t target_;
  std::vector<PackedBatch> batches_;
  std::shared_ptr<PackedScratch> scratch_;
  int cur_ = 0;
  size_t batch_ = 0, next_ = 0, fill_ = 0;
  TransferStats stats_;
  double t0_ = -1;
  // Background broadcaster (when the wire allows it).
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<int, size_t>> queue_;
  bool busy_[2] = {false, false};
  bool stop_ = false;
  bool finished_ = false;
  std::exception_ptr error_;
};

class PackedReceiver : public RefitReceiver {
 public:
  // `yield`: the device of the tensors next() yields (CUDA: each is copied to the device).
  PackedReceiver(BroadcastWire& wire, RefitMetadata meta, size_t target_bytes,
                 Device yield = Device::CPU);
  ~PackedReceiver() override;
  bool next(NamedTensor& out) override;
  void acknowledge() override;
  TransferStats stats() const override { return stats_; }
  void abandon(const std::string& why) noexcept override;

 private:
  void start();
  BroadcastWire& wire_;
  RefitMetadata meta_;
  size_t target_;
  Device yield_ = Device::CPU;
  std::vector<PackedBatch> batches_;
  std::shared_ptr<Storage> buf_;
  size_t batch_ = 0, next_ = 0, off_ = 0;
  size_t received_ = 0;  // batches taken off the wire
  bool started_ = false, end_ = false, done_ = false;
  bool in_sync_ = false;  // header agreed: batch sizes known, the stream can be drained
  TransferStats stats_;
  double t0_ = -1;
};

}  // namespace qarl::refit
