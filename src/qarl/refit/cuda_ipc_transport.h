// Aligned staging buffers in device memory (the colocated GPU path): the staging protocol
// of staging_protocol.h (shared with the shared-memory transport, staging_transport.h) with
// its two ping-pong buffers allocated by the trainer process with cudaMalloc and shared with
// the rollout process through CUDA IPC.
//
// Protocol and failure semantics are the shared-memory transport's (the same code): the same
// JSON control messages over the same control socket (hello, batch {buffer, names, used},
// ack, error, abort, complete {count, bytes}), 512-byte aligned offsets, a tensor larger than
// a buffer alone in a temporary device allocation, the same checks on the receiver. What
// differs (CudaIpcSenderBuffers / CudaIpcReceiverBuffers in the .cpp):
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
#include <map>
#include <memory>
#include <string>

#include "qarl/refit/socket.h"
#include "qarl/refit/staging_protocol.h"

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

class CudaIpcStagingSender : public StagingSenderBase {
 public:
  // push() takes CPU or CUDA tensors; destroyed mid-refit: sends abort.
  CudaIpcStagingSender(Socket& control, RefitMetadata meta, std::shared_ptr<CudaIpcBuffers> buffers);
  CudaIpcStagingSender(Socket& control, RefitMetadata meta, size_t buffer_bytes);
};

class CudaIpcStagingReceiver : public StagingReceiverBase {
 public:
  // `yield`: CUDA (default) gives zero-copy device views into the shared buffers, valid
  // until the next call; CPU copies each tensor to host memory.
  CudaIpcStagingReceiver(Socket& control, RefitMetadata meta, CudaIpcMappings* reuse = nullptr,
                         Device yield = Device::CUDA);
};

}  // namespace qarl::refit
