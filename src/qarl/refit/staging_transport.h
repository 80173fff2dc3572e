// Aligned staging buffers (the colocated IPC path, reference-spec 4.2), on the CPU through
// POSIX shared memory plus a control socket: the staging protocol of staging_protocol.h
// (ping-pong buffers, 512-byte aligned offsets, batch / ack / error / abort / complete
// messages, the receiver's checks) with its buffers in shared-memory segments.
//
// The hello names the two segments; the receiver maps them (once, with StagingMappings).
// push() copies into the segment (memcpy, or cudaMemcpy for a CUDA tensor); a tensor larger
// than a buffer goes alone into a temporary segment. The receiver yields zero-copy host
// views (or device copies when asked for CUDA tensors).
#pragma once
#include <map>
#include <memory>
#include <string>

#include "qarl/refit/shm.h"
#include "qarl/refit/socket.h"
#include "qarl/refit/staging_protocol.h"

namespace qarl::refit {

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

class StagingSender : public StagingSenderBase {
 public:
  // Sends the hello (segment names, sizes, metadata fingerprint) and waits for its ACK.
  // The control connection is borrowed: it outlives one refit and serves the next ones.
  // Destroyed mid-refit (an error on the trainer side): tells the receiver to fail it.
  StagingSender(Socket& control, RefitMetadata meta, std::shared_ptr<StagingBuffers> buffers);
  StagingSender(Socket& control, RefitMetadata meta, size_t buffer_bytes);
};

class StagingReceiver : public StagingReceiverBase {
 public:
  // Waits for the sender's hello, maps the buffers and acknowledges. `yield`: the device of
  // the tensors next() yields (CUDA: each is copied to a fresh device tensor).
  StagingReceiver(Socket& control, RefitMetadata meta, StagingMappings* reuse = nullptr,
                  Device yield = Device::CPU);
};

}  // namespace qarl::refit
