// One interface for every refit transport (staging buffers over shared memory, packed stream
// over TCP or MPI broadcast; NCCL later): the trainer side pushes (name, tensor) in stream
// order and finishes; the rollout side, holding the same ordered metadata, receives the same
// pairs in the same order. Names never travel as a source of truth: both ends walk the
// metadata, and a transport checks that the sender pushes exactly that sequence.
//
// A NCCL transport fits as a BroadcastWire (packed_transport.h) over device buffers, or as a
// staging transport whose buffers are CUDA IPC handles: the interface below does not change.
#pragma once
#include <string>

#include "qarl/refit/stream.h"

namespace qarl::refit {

class RefitSender {
 public:
  virtual ~RefitSender() = default;
  // Tensors in metadata order, CPU, matching their metadata (shape, dtype); the transport
  // copies what it needs before returning, so the caller may free `tensor` afterwards.
  virtual void push(const std::string& name, const Tensor& tensor) = 0;
  // Flushes, waits until every receiver has everything, and reports the transfer.
  virtual TransferStats finish() = 0;
};

class RefitReceiver {
 public:
  virtual ~RefitReceiver() = default;
  // The next (name, tensor) of the stream; false after the last one (the transport's end of
  // stream checks passed). A yielded tensor stays valid at least until the next call (a
  // staging transport reuses its buffers after that); copy it to keep it.
  virtual bool next(NamedTensor& out) = 0;
  // After next() returned false: the consumer accepted the refit (e.g. the strict loader
  // committed). Completes the final handshake; only then does the sender's finish() return.
  virtual void acknowledge() = 0;
  // The consumer failed, before or after the end of the stream (e.g. the strict loader
  // refused a tensor): keep the connection usable and tell the sender, whose push() or
  // finish() then throws. A staging receiver sends an error message; a packed receiver
  // drains the rest of the stream (a collective: every participant must get through it) and
  // reports failure at the final barrier. The destructor of a receiver that was neither
  // acknowledged nor abandoned abandons (fail closed). Never throws.
  virtual void abandon(const std::string& why) noexcept = 0;
  virtual TransferStats stats() const = 0;
};

inline size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

}  // namespace qarl::refit
