#include "qarl/refit/device_packed_transport.h"

#include "qarl/core/error.h"
#include "qarl/refit/device_copy.h"

#ifdef QARL_HAVE_CUDA
#include <cuda_runtime.h>

#include "qarl/refit/crc32c_device.h"
#endif

namespace qarl::refit {
namespace {

#ifdef QARL_HAVE_CUDA
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw runtime_err("CUDA {} failed: {}", what, cudaGetErrorString(e));
}
void to_dev(void* d, const void* h, size_t n) {
  check(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice), "cudaMemcpy (to device)");
}
void to_host(void* h, const void* d, size_t n) {
  check(cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost), "cudaMemcpy (to host)");
}
uint32_t device_crc(const void* d, size_t n) { return crc32c_device(d, n); }
void zero(void* d, size_t n) { check(cudaMemset(d, 0, n), "cudaMemset"); }
#else
[[noreturn]] void no_cuda() { throw runtime_err("the device packed refit stream needs CUDA: qarl was built without it"); }
void to_dev(void*, const void*, size_t) { no_cuda(); }
void to_host(void*, const void*, size_t) { no_cuda(); }
uint32_t device_crc(const void*, size_t) { no_cuda(); }
void zero(void*, size_t) { no_cuda(); }
#endif

const PackedMemory kDeviceMemory = {Device::CUDA, copy_to_device_async, to_dev, to_host, zero,
                                    device_crc};

// One device batch buffer, broadcast in place once packed.
class DeviceSenderBuffers : public PackedSenderBuffers {
 public:
  explicit DeviceSenderBuffers(BroadcastWire& wire) : wire_(wire) {}
  unsigned char* begin(size_t bytes) override {
    if (!(buf_ && buf_.use_count() == 1 && buf_->nbytes() >= bytes))
      buf_ = Storage::allocate(bytes, Device::CUDA);
    return static_cast<unsigned char*>(buf_->data());
  }
  void send(size_t bytes) override { wire_.broadcast(buf_->data(), bytes); }

 private:
  BroadcastWire& wire_;
  std::shared_ptr<Storage> buf_;  // device: the batch being packed (+ trailer)
};

}  // namespace

DevicePackedSender::DevicePackedSender(BroadcastWire& wire, RefitMetadata meta, size_t target_bytes)
    : PackedSenderBase(wire, std::move(meta), target_bytes, kDeviceMemory,
                       std::make_unique<DeviceSenderBuffers>(wire),
                       "DevicePackedSender needs a wire that moves device buffers (NCCL)") {}

DevicePackedReceiver::DevicePackedReceiver(BroadcastWire& wire, RefitMetadata meta,
                                           size_t target_bytes, Device yield)
    : PackedReceiverBase(wire, std::move(meta), target_bytes, kDeviceMemory, yield,
                         "DevicePackedReceiver needs a wire that moves device buffers (NCCL)") {}

}  // namespace qarl::refit
