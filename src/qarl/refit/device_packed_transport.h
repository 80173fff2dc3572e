// The packed stream of packed_protocol.h (the same code as packed_transport.h) with its
// batches in device memory, for wires that move device buffers (NcclBroadcastWire,
// nccl_wire.h). Same format: the 16-byte header (metadata fingerprint, target), batches
// planned by plan_packed_batches(), each followed by its CRC32C and index; the same failure
// semantics (aborted batches and a failing barrier from a sender destroyed mid-refit; a
// receiver that abandons drains the stream and fails the barrier).
//
// The sender packs with cudaMemcpyAsync (device-to-device, or host-to-device for CPU
// tensors) into one device batch buffer; the checksum is computed on the GPU
// (crc32c_device.h: equal to the host crc32c of the same bytes), so no batch is copied to
// the host on either side. The receiver verifies every batch the same way and yields
// zero-copy device views (a slice at an offset that is not a multiple of its element size
// is copied to an aligned device tensor), or host copies when asked for CPU tensors.
#pragma once
#include <memory>

#include "qarl/refit/packed_transport.h"

namespace qarl::refit {

class DevicePackedSender : public PackedSenderBase {
 public:
  // push() takes CPU or CUDA tensors. Destroyed mid-refit: aborted batches, failing barrier.
  DevicePackedSender(BroadcastWire& wire, RefitMetadata meta, size_t target_bytes);
};

class DevicePackedReceiver : public PackedReceiverBase {
 public:
  DevicePackedReceiver(BroadcastWire& wire, RefitMetadata meta, size_t target_bytes,
                       Device yield = Device::CUDA);
};

}  // namespace qarl::refit
