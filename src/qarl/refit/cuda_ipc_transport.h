// Aligned staging buffers in device memory (the colocated GPU path): the staging transport
// of staging_transport.h with its two ping-pong buffers allocated by the trainer process
// with cudaMalloc and shared with the rollout process through CUDA IPC.
//
// Protocol and failure semantics are the shared-memory transport's: the same JSON control
// messages over the same control socket (hello, batch {buffer, names, used}, ack, error,
// abort, complete {count, bytes}), 512-byte aligned offsets, a tensor larger than a buffer
// alone in a temporary device allocation, the same checks on the receiver. What differs:
//  - the hello carries cudaIpcMemHandle_t of both buffers and cudaIpcEventHandle_t of one
//    interprocess event per buffer (hex); the receiver opens them (cudaIpcOpenMemHandle /
//    cudaIpcOpenEventHandle). Between two ends in one process (tests, a colocated engine in
//    the trainer's process) the raw pointers travel instead: CUDA cannot open a handle in
//    the process that exported it.
//  - push() enqueues cudaMemcpyAsync (device-to-device, or host-to-device for CPU tensors)
//    on the legacy default stream; a full buffer records its event before it is announced,
//    and the receiver waits on that event before yielding anything from it.
//  - before acknowledging a buffer the receiver synchronizes its device, so consumer work
//    still reading the yielded views (on any stream) is done before the sender refills it.
// Both processes use their current CUDA device (the same GPU, or peers with IPC access).
#pragma once
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qarl/core/error.h"
#include "qarl/refit/socket.h"
#include "qarl/refit/staging_transport.h"
#include "qarl/refit/transport.h"

namespace qarl::refit {

// Without CUDA (or without a device) the constructors below throw; this says why ("" when
// the transport can run).
std::string cuda_ipc_unavailable_reason();

// The sender's two device buffers and their events, kept across refits.
struct CudaIpcBuffers {
  void* ptr[2] = {nullptr, nullptr};
  void* event[2] = {nullptr, nullptr};  // cudaEvent_t, interprocess
  std::string mem_handle[2], event_handle[2];  // hex
  size_t bytes = 0;
  static std::shared_ptr<CudaIpcBuffers> create(size_t bytes);  // multiple of 512
  ~CudaIpcBuffers();
};

// Receiver side: opened mappings and events kept across refits (a handle cannot be opened
// twice in one process).
struct CudaIpcMapping;
struct CudaIpcMappings {
  std::map<std::string, std::shared_ptr<CudaIpcMapping>> by_handle;
};

class CudaIpcStagingSender : public RefitSender {
 public:
  CudaIpcStagingSender(Socket& control, RefitMetadata meta, std::shared_ptr<CudaIpcBuffers> buffers);
  CudaIpcStagingSender(Socket& control, RefitMetadata meta, size_t buffer_bytes);
  ~CudaIpcStagingSender() override;  // mid-refit: sends abort
  void push(const std::string& name, const Tensor& tensor) override;  // CPU or CUDA
  TransferStats finish() override;

 private:
  void flush();
  void expect_ack(const char* what);
  void wait_one_ack();
  void wait_buffer_free(int b);

  Socket& ctl_;
  uint64_t id_;
  RefitMetadata meta_;
  std::shared_ptr<CudaIpcBuffers> pool_;
  bool in_flight_[2] = {false, false};
  std::deque<int> pending_;
  int cur_ = 0;
  size_t used_ = 0;
  std::vector<std::string> names_;
  size_t next_ = 0;
  bool finished_ = false;
  TransferStats stats_;
  double t0_ = -1;
};

class CudaIpcStagingReceiver : public RefitReceiver {
 public:
  // `yield`: CUDA (default) gives zero-copy device views into the shared buffers, valid
  // until the next call; CPU copies each tensor to host memory.
  CudaIpcStagingReceiver(Socket& control, RefitMetadata meta, CudaIpcMappings* reuse = nullptr,
                         Device yield = Device::CUDA);
  ~CudaIpcStagingReceiver() override;
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
  Device yield_;
  bool same_process_ = false;
  std::shared_ptr<CudaIpcMapping> buf_[2], ev_[2];
  std::shared_ptr<CudaIpcMapping> batch_mem_;  // the allocation the current batch lives in
  std::vector<std::pair<size_t, size_t>> batch_;
  size_t batch_pos_ = 0;
  bool need_ack_ = false;
  size_t next_ = 0;
  bool end_ = false, done_ = false;
  TransferStats stats_;
  double t0_ = -1;
};

}  // namespace qarl::refit
