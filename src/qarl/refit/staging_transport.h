// Aligned staging buffers (the colocated IPC path, reference-spec 4.2), on the CPU through
// POSIX shared memory plus a control socket.
//
// The sender owns two ping-pong shared-memory buffers of `buffer_bytes` each. Tensors are
// copied in stream order, each at a 512-byte aligned offset (used += ceil512(nbytes)); when
// the next tensor does not fit, the buffer is announced to the receiver with one control
// message {segment, names, used_bytes} and filling continues in the other buffer, after the
// receiver acknowledged that buffer's previous contents. A tensor larger than a buffer goes
// alone into a temporary segment. The receiver checks that the names are the next ones of
// its metadata, recomputes every offset and checks it against used_bytes, yields zero-copy
// views, and acknowledges a buffer once the consumer moved past it. At the end the sender
// sends COMPLETE with its count and byte total; the receiver checks them against the
// manifest (every metadata entry received, in order) and acknowledges, or reports an error
// that the sender's finish() rethrows.
#pragma once
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qarl/core/error.h"
#include "qarl/refit/shm.h"
#include "qarl/refit/socket.h"
#include "qarl/refit/transport.h"

namespace qarl::refit {

inline constexpr size_t kStagingAlignment = 512;

// The two ping-pong buffers, kept across refits so that their pages are faulted in once
// (fresh shared memory costs a page fault per 4 KiB on both sides).
struct StagingBuffers {
  std::shared_ptr<ShmSegment> seg[2];
  size_t bytes = 0;
  static std::shared_ptr<StagingBuffers> create(size_t bytes);  // multiple of 512
};

// Receiver side: mappings of the sender's buffers kept across refits.
struct StagingMappings {
  std::map<std::string, std::shared_ptr<ShmSegment>> by_name;
};

class StagingSender : public RefitSender {
 public:
  StagingSender(Socket& control, RefitMetadata meta, std::shared_ptr<StagingBuffers> buffers);
  // Destroyed mid-refit (an error on the trainer side): tells the receiver to fail it.
  ~StagingSender() override;
  // Sends the hello (segment names, sizes, metadata fingerprint) and waits for its ACK.
  // The control connection is borrowed: it outlives one refit and serves the next ones.
  StagingSender(Socket& control, RefitMetadata meta, size_t buffer_bytes);
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
  size_t buffer_bytes_;
  std::shared_ptr<StagingBuffers> pool_;
  std::shared_ptr<ShmSegment> buf_[2];
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

class StagingReceiver : public RefitReceiver {
 public:
  // Waits for the sender's hello, maps the buffers and acknowledges. `yield`: the device of
  // the tensors next() yields (CUDA: each is copied to a fresh device tensor).
  StagingReceiver(Socket& control, RefitMetadata meta, StagingMappings* reuse = nullptr,
                  Device yield = Device::CPU);
  ~StagingReceiver() override;
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
  Device yield_ = Device::CPU;
  std::shared_ptr<ShmSegment> buf_[2];
  std::shared_ptr<ShmSegment> batch_seg_;  // the segment the current batch lives in
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
