// The packed stream, once for both memory kinds: batches packed in host memory
// (packed_transport.h: TCP and MPI wires) or in device memory (device_packed_transport.h:
// the NCCL wire).
//
// Tensors are byte-concatenated with no padding, and both ends derive identical batch
// boundaries from the same ordered metadata and target batch size, so nothing but bytes
// travels: a batch closes as soon as its size exceeds the target (the crossing tensor
// included), the last batch may be partial. Each batch is followed by 8 bytes: its CRC32C
// and its index, which the receivers verify. The stream starts with a 16-byte header
// (metadata fingerprint and target size) so that ends holding different metadata fail
// before misreading anything. A sender destroyed mid-refit sends every remaining batch
// marked aborted and fails the barrier; a receiver that abandons drains the rest of the
// stream and fails the barrier, so every participant stays in step for the next refit.
//
// Receivers restore every slice as a tensor of its shape and dtype; a slice whose byte
// offset is not a multiple of its element size (after a 0-d bf16 amax, say) is copied to an
// aligned tensor, the others are zero-copy views of the batch buffer (which stays alive as
// long as any of them does).
//
// What depends on the memory kind is a PackedMemory (copies, zeroing, the checksum) and, on
// the sender, a PackedSenderBuffers (where batches are packed and how they reach the wire).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

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
  // carries the device packed stream (device_packed_transport.h); the host-packing senders
  // and receivers (packed_transport.h) refuse it.
  virtual bool device_buffers() const { return false; }
};

// The memory batches live in: host (memcpy, crc32c) or device (cudaMemcpy, crc32c_device).
struct PackedMemory {
  Device device;
  void (*copy_in)(void* dst, const Tensor& src);  // a pushed tensor's bytes
  void (*from_host)(void* dst, const void* src, size_t n);
  void (*to_host)(void* dst, const void* src, size_t n);
  void (*zero)(void* dst, size_t n);
  uint32_t (*crc)(const void* data, size_t n);  // CRC32C of n bytes in this memory
};

// Sender side: where batches are packed and how they reach the wire.
class PackedSenderBuffers {
 public:
  virtual ~PackedSenderBuffers() = default;
  // After the header went out; `batches`: how many follow.
  virtual void start(size_t batches) { (void)batches; }
  // The memory of the next batch (`bytes`: batch and trailer), once it is free.
  virtual unsigned char* begin(size_t bytes) = 0;
  // The batch begun last, complete with its trailer, onto the wire (now or queued).
  virtual void send(size_t bytes) = 0;
  // Every batch sent is on the wire; rethrows an error of a queued send.
  virtual void drain() {}
};

class PackedSenderBase : public RefitSender {
 public:
  // `wrong_wire`: the usage error for a wire whose device_buffers() does not match `memory`.
  PackedSenderBase(BroadcastWire& wire, RefitMetadata meta, size_t target_bytes,
                   const PackedMemory& memory, std::unique_ptr<PackedSenderBuffers> buffers,
                   const char* wrong_wire);
  // A sender destroyed mid-refit (an error on the trainer side) still walks the wire to the
  // end: every remaining batch goes out marked "aborted" and the barrier reports failure, so
  // the receivers fail this refit and stay in step for the next one.
  ~PackedSenderBase() override;
  void push(const std::string& name, const Tensor& tensor) override;
  TransferStats finish() override;

 private:
  void start();

  BroadcastWire& wire_;
  RefitMetadata meta_;
  size_t target_;
  PackedMemory mem_;
  std::unique_ptr<PackedSenderBuffers> bufs_;
  std::vector<PackedBatch> batches_;
  unsigned char* base_ = nullptr;  // the batch being packed
  size_t batch_ = 0, next_ = 0, fill_ = 0;
  bool finished_ = false;
  TransferStats stats_;
  double t0_ = -1;
};

class PackedReceiverBase : public RefitReceiver {
 public:
  // `yield`: the device of the tensors next() yields (views when it is the memory's device,
  // else copies).
  PackedReceiverBase(BroadcastWire& wire, RefitMetadata meta, size_t target_bytes,
                     const PackedMemory& memory, Device yield, const char* wrong_wire);
  ~PackedReceiverBase() override;
  bool next(NamedTensor& out) override;
  void acknowledge() override;
  TransferStats stats() const override { return stats_; }
  void abandon(const std::string& why) noexcept override;

 private:
  void start();

  BroadcastWire& wire_;
  RefitMetadata meta_;
  size_t target_;
  PackedMemory mem_;
  Device yield_;
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
