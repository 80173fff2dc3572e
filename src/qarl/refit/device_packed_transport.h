// The packed stream of packed_transport.h with its batches in device memory, for wires that
// move device buffers (NcclBroadcastWire, nccl_wire.h). Same format: the 16-byte header
// (metadata fingerprint, target), batches planned by plan_packed_batches(), each followed
// by its CRC32C and index; the same failure semantics (aborted batches and a failing
// barrier from a sender destroyed mid-refit; a receiver that abandons drains the stream
// and fails the barrier).
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

class DevicePackedSender : public RefitSender {
 public:
  DevicePackedSender(BroadcastWire& wire, RefitMetadata meta, size_t target_bytes);
  ~DevicePackedSender() override;
  void push(const std::string& name, const Tensor& tensor) override;  // CPU or CUDA
  TransferStats finish() override;

 private:
  void start();
  BroadcastWire& wire_;
  RefitMetadata meta_;
  size_t target_;
  std::vector<PackedBatch> batches_;
  std::shared_ptr<Storage> buf_;  // device: the batch being packed (+ trailer)
  size_t batch_ = 0, next_ = 0, fill_ = 0;
  bool finished_ = false;
  TransferStats stats_;
  double t0_ = -1;
};

class DevicePackedReceiver : public RefitReceiver {
 public:
  DevicePackedReceiver(BroadcastWire& wire, RefitMetadata meta, size_t target_bytes,
                       Device yield = Device::CUDA);
  ~DevicePackedReceiver() override;
  bool next(NamedTensor& out) override;
  void acknowledge() override;
  TransferStats stats() const override { return stats_; }
  void abandon(const std::string& why) noexcept override;

 private:
  void start();
  BroadcastWire& wire_;
  RefitMetadata meta_;
  size_t target_;
  Device yield_;
  std::vector<PackedBatch> batches_;
  std::shared_ptr<Storage> buf_;
  size_t batch_ = 0, next_ = 0, off_ = 0;
  size_t received_ = 0;
  bool started_ = false, end_ = false, done_ = false, in_sync_ = false;
  TransferStats stats_;
  double t0_ = -1;
};

}  // namespace qarl::refit
