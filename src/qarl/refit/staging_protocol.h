// The staging protocol, once for both buffer kinds: POSIX shared memory
// (staging_transport.h) and CUDA IPC device memory (cuda_ipc_transport.h).
//
// The sender owns two ping-pong buffers of `bytes` each. Tensors are copied in stream order,
// each at a 512-byte aligned offset (used += ceil512(nbytes)); when the next tensor does not
// fit, the buffer is announced to the receiver with one control message
// {type: batch, buffer, names, used} and filling continues in the other buffer, after the
// receiver acknowledged that buffer's previous contents. A tensor larger than a buffer goes
// alone into a temporary allocation. The receiver checks that the names are the next ones of
// its metadata, recomputes every offset and checks it against used, yields zero-copy views,
// and acknowledges a buffer once the consumer moved past it. At the end the sender sends
// {type: complete, count, bytes}; the receiver checks them against the manifest (every
// metadata entry received, in order) and acknowledges once its consumer accepted the refit,
// or reports an error that the sender's push()/finish() rethrows. Every message carries the
// refit id: frames of an earlier, failed refit are skipped. A sender destroyed mid-refit
// sends {type: abort}. The hello carries the metadata fingerprint, so ends holding different
// metadata fail at once.
//
// What depends on the buffer kind is behind StagingSenderBuffers / StagingReceiverBuffers:
// how buffers are made and described in the hello, opened by the receiver, filled, marked
// ready before a batch is announced, waited on, viewed, and what the receiver does before
// an ACK lets the sender refill a buffer.
#pragma once
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qarl/core/error.h"
#include "qarl/refit/socket.h"
#include "qarl/refit/transport.h"

namespace qarl::refit {

inline constexpr size_t kStagingAlignment = 512;

// Sender side of one buffer kind: the two ping-pong buffers (ids 0 and 1).
class StagingSenderBuffers {
 public:
  virtual ~StagingSenderBuffers() = default;
  virtual size_t bytes() const = 0;  // of each buffer, a multiple of kStagingAlignment
  // Adds what the receiver needs to open the buffers to the hello.
  virtual void describe(nlohmann::json& hello) const = 0;
  // Buffer b at byte offset off <- tensor's bytes (may be asynchronous, see seal()).
  virtual void copy_in(int b, size_t off, const Tensor& tensor) = 0;
  // Buffer b is complete: called just before its batch is announced.
  virtual void seal(int b) { (void)b; }
  // An oversized tensor in a temporary allocation of `bytes`, filled and ready for the
  // receiver; adds its description to the batch message `msg`. The result keeps the
  // allocation alive until the receiver acknowledged it.
  virtual std::shared_ptr<void> temporary(const Tensor& tensor, size_t bytes,
                                          nlohmann::json& msg) = 0;
};

// The memory one batch lives in, on the receiver.
struct StagingBatchMemory {
  std::shared_ptr<const void> owner;  // keeps the mapping alive (yielded views hold it too)
  char* data = nullptr;
  size_t bytes = 0;
  Device device = Device::CPU;
};

// Receiver side of one buffer kind.
class StagingReceiverBuffers {
 public:
  virtual ~StagingReceiverBuffers() = default;
  // Names the transport in error messages ("bad <kind> hello: ...").
  virtual const char* kind() const = 0;
  // Checks on the hello before the metadata is compared (e.g. the sender's kind).
  virtual void check_hello(const nlohmann::json& hello) { (void)hello; }
  // Opens (or reuses) the sender's buffers described in the hello.
  virtual void open(const nlohmann::json& hello) = 0;
  // The temporary allocation a batch message names, or false for a ping-pong buffer.
  virtual bool temporary(const nlohmann::json& msg, StagingBatchMemory& out) = 0;
  // Ping-pong buffer b (0 or 1), once its announced contents are readable.
  virtual StagingBatchMemory buffer(int b) = 0;
  // Before a buffer is acknowledged (the sender refills it after the ACK).
  virtual void before_ack() {}
};

class StagingSenderBase : public RefitSender {
 public:
  // Sends the hello (buffer description, sizes, metadata fingerprint) and waits for its ACK.
  // The control connection is borrowed: it outlives one refit and serves the next ones.
  StagingSenderBase(Socket& control, RefitMetadata meta,
                    std::unique_ptr<StagingSenderBuffers> buffers);
  // Destroyed mid-refit (an error on the trainer side): tells the receiver to fail it.
  ~StagingSenderBase() override;
  void push(const std::string& name, const Tensor& tensor) override;
  TransferStats finish() override;

 private:
  void flush();
  void expect_ack(const char* what);
  void wait_one_ack();
  void wait_buffer_free(int b);

  Socket& ctl_;
  uint64_t id_;  // this refit's id: frames of an earlier, failed refit are discarded
  RefitMetadata meta_;
  std::unique_ptr<StagingSenderBuffers> bufs_;
  size_t buffer_bytes_;
  bool in_flight_[2] = {false, false};
  std::deque<int> pending_;  // buffer ids awaiting ACK, in send order (-1: temporary)
  int cur_ = 0;
  size_t used_ = 0;
  std::vector<std::string> names_;
  size_t next_ = 0;
  bool finished_ = false;
  TransferStats stats_;
  double t0_ = -1;
};

class StagingReceiverBase : public RefitReceiver {
 public:
  // Waits for the sender's hello, opens the buffers and acknowledges. `yield`: the device of
  // the tensors next() yields (views when it is the buffers' device, else copies).
  StagingReceiverBase(Socket& control, RefitMetadata meta,
                      std::unique_ptr<StagingReceiverBuffers> buffers, Device yield);
  ~StagingReceiverBase() override;
  bool next(NamedTensor& out) override;
  void acknowledge() override;
  TransferStats stats() const override { return stats_; }
  void abandon(const std::string& why) noexcept override;

 private:
  [[noreturn]] void fail(Error e);
  void ack();

  Socket& ctl_;
  uint64_t id_ = 0;
  RefitMetadata meta_;
  std::unique_ptr<StagingReceiverBuffers> bufs_;
  Device yield_;
  StagingBatchMemory batch_mem_;  // the memory the current batch lives in
  std::vector<std::pair<size_t, size_t>> batch_;  // (metadata index, offset)
  size_t batch_pos_ = 0;
  bool need_ack_ = false;
  size_t next_ = 0;
  bool end_ = false;   // COMPLETE received and checked, final ACK pending
  bool done_ = false;  // acknowledged or abandoned
  TransferStats stats_;
  double t0_ = -1;
};

}  // namespace qarl::refit
