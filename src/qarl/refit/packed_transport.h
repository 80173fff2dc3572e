// Packed collective stream (the non-colocated path, reference-spec 4.1) with its batches in
// host memory: the stream of packed_protocol.h (unpadded batches planned by
// plan_packed_batches(), a 16-byte header, a CRC32C and index after every batch, aborted
// batches and a failing barrier, receiver drain on abandon), packed with memcpy (cudaMemcpy
// for a CUDA tensor), checksummed on the CPU (crc32c.h).
//
// The bytes move through a BroadcastWire: one root (the trainer), any number of leaves.
// TCP and MPI wires live here and in mpi_wire.h; the NCCL wire (nccl_wire.h) moves device
// buffers and carries the same stream format through device_packed_transport.h.
#pragma once
#include <memory>
#include <vector>

#include "qarl/refit/packed_protocol.h"
#include "qarl/refit/socket.h"

namespace qarl::refit {

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

class PackedSender : public PackedSenderBase {
 public:
  // Packs into the two round-robin `scratch` buffers; on a wire that allows it
  // (background_ok()), a worker thread broadcasts batch k while batch k+1 is packed.
  // Destroyed mid-refit: the remaining batches go out marked aborted, the barrier fails.
  PackedSender(BroadcastWire& wire, RefitMetadata meta, size_t target_bytes,
               std::shared_ptr<PackedScratch> scratch = nullptr);
};

class PackedReceiver : public PackedReceiverBase {
 public:
  // `yield`: the device of the tensors next() yields (CUDA: each is copied to the device).
  PackedReceiver(BroadcastWire& wire, RefitMetadata meta, size_t target_bytes,
                 Device yield = Device::CPU);
};

}  // namespace qarl::refit
