#include "qarl/refit/device_packed_transport.h"

#include <cstring>

#include "qarl/core/error.h"
#include "qarl/refit/control.h"
#include "qarl/refit/device_copy.h"

#ifdef QARL_HAVE_CUDA
#include <cuda_runtime.h>

#include "qarl/refit/crc32c_device.h"
#endif

namespace qarl::refit {
namespace {

constexpr size_t kTrailer = 8;  // u32 CRC32C, u32 batch index (as packed_transport.cpp)
constexpr uint32_t kAbortedBatch = 0xFFFFFFFFu;

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

// The kept buffer when nobody else holds it (no yielded view) and it is large enough.
std::shared_ptr<Storage> device_buffer(const std::shared_ptr<Storage>& keep, size_t n) {
  if (keep && keep.use_count() == 1 && keep->nbytes() >= n) return keep;
  return Storage::allocate(n, Device::CUDA);
}

}  // namespace

DevicePackedSender::DevicePackedSender(BroadcastWire& wire, RefitMetadata meta, size_t target_bytes)
    : wire_(wire), meta_(std::move(meta)), target_(target_bytes) {
  if (!wire_.is_root()) throw usage_err("a packed refit sender needs the root end of the wire");
  if (!wire_.device_buffers())
    throw usage_err("DevicePackedSender needs a wire that moves device buffers (NCCL)");
  batches_ = plan_packed_batches(meta_, target_);
}

DevicePackedSender::~DevicePackedSender() {
  if (t0_ < 0 || finished_) return;
  try {
    for (size_t b = batch_; b < batches_.size(); ++b) {
      auto poison = Storage::allocate(batches_[b].bytes + kTrailer, Device::CUDA);
      zero(poison->data(), batches_[b].bytes);
      uint32_t trailer[2] = {0, kAbortedBatch};
      to_dev(static_cast<char*>(poison->data()) + batches_[b].bytes, trailer, kTrailer);
      wire_.broadcast(poison->data(), batches_[b].bytes + kTrailer);
    }
    wire_.barrier(false);
  } catch (...) {
  }
}

void DevicePackedSender::start() {
  t0_ = refit_now_s();
  uint64_t header[2] = {metadata_fingerprint(meta_), target_};
  auto h = Storage::allocate(sizeof header, Device::CUDA);
  to_dev(h->data(), header, sizeof header);
  wire_.broadcast(h->data(), sizeof header);
}

void DevicePackedSender::push(const std::string& name, const Tensor& tensor) {
  if (t0_ < 0) start();
  if (next_ >= meta_.size())
    throw runtime_err("pushed beyond the end of the refit metadata ({} tensors)", meta_.size())
        .tensor(name);
  check_matches_meta(meta_[next_], name, tensor);
  const PackedBatch& b = batches_[batch_];
  if (next_ == b.first) {
    buf_ = device_buffer(buf_, b.bytes + kTrailer);
    fill_ = 0;
  }
  auto* base = static_cast<char*>(buf_->data());
  copy_to_device_async(base + fill_, tensor);
  size_t n = tensor.nbytes();
  fill_ += n;
  ++next_;
  stats_.bytes += n;
  ++stats_.tensors;
  if (next_ == b.end) {
    QARL_ASSERT(fill_ == b.bytes, "batch {} filled {} of {} bytes", batch_, fill_, b.bytes);
    // crc32c_device runs on the legacy default stream, after the copies above.
    uint32_t trailer[2] = {device_crc(base, b.bytes), uint32_t(batch_)};
    to_dev(base + b.bytes, trailer, kTrailer);
    wire_.broadcast(base, b.bytes + kTrailer);
    ++batch_;
    ++stats_.batches;
  }
}

TransferStats DevicePackedSender::finish() {
  if (t0_ < 0) start();
  if (next_ != meta_.size())
    throw runtime_err("refit stream ended after {} of {} tensors; next expected '{}'", next_,
                      meta_.size(), meta_[next_].name);
  finished_ = true;
  if (!wire_.barrier(true))
    throw runtime_err("a refit receiver failed (its engine keeps the previous state; see the "
                      "receiver's log for the tensor)");
  stats_.seconds = refit_now_s() - t0_;
  return stats_;
}

DevicePackedReceiver::DevicePackedReceiver(BroadcastWire& wire, RefitMetadata meta,
                                           size_t target_bytes, Device yield)
    : wire_(wire), meta_(std::move(meta)), target_(target_bytes), yield_(yield) {
  if (wire_.is_root()) throw usage_err("a packed refit receiver needs a leaf end of the wire");
  if (!wire_.device_buffers())
    throw usage_err("DevicePackedReceiver needs a wire that moves device buffers (NCCL)");
  batches_ = plan_packed_batches(meta_, target_);
}

DevicePackedReceiver::~DevicePackedReceiver() {
  if (!done_) abandon("receiver destroyed before the end of the refit");
}

void DevicePackedReceiver::abandon(const std::string& why) noexcept {
  if (done_) return;
  done_ = true;
  try {
    if (!started_) start();
  } catch (...) {
  }
  if (!in_sync_) return;
  try {
    for (size_t b = received_; b < batches_.size(); ++b) {
      auto sink = Storage::allocate(batches_[b].bytes + kTrailer, Device::CUDA);
      wire_.broadcast(sink->data(), batches_[b].bytes + kTrailer);
    }
    wire_.barrier(false);
  } catch (...) {
  }
  (void)why;
}

void DevicePackedReceiver::start() {
  started_ = true;
  t0_ = refit_now_s();
  uint64_t header[2] = {0, 0};
  auto h = Storage::allocate(sizeof header, Device::CUDA);
  wire_.broadcast(h->data(), sizeof header);
  to_host(header, h->data(), sizeof header);
  in_sync_ = header[0] == metadata_fingerprint(meta_) && header[1] == target_;
  if (!in_sync_)
    throw runtime_err("packed refit: the sender holds different metadata or batch size "
                      "(target {} vs {} bytes); batch boundaries would not agree",
                      header[1], target_);
}

void DevicePackedReceiver::acknowledge() {
  if (done_) throw runtime_err("refit already acknowledged or abandoned");
  if (!end_) throw runtime_err("acknowledge() before the end of the refit stream");
  done_ = true;
  wire_.barrier(true);
  stats_.seconds = refit_now_s() - t0_;
}

bool DevicePackedReceiver::next(NamedTensor& out) {
  out.tensor = Tensor();
  if (done_ || end_) return false;
  if (!started_) start();
  if (next_ == meta_.size()) {
    end_ = true;
    return false;
  }
  const PackedBatch& b = batches_[batch_];
  if (next_ == b.first) {
    buf_ = device_buffer(buf_, b.bytes + kTrailer);
    auto* p = static_cast<char*>(buf_->data());
    wire_.broadcast(p, b.bytes + kTrailer);
    ++received_;
    uint32_t trailer[2];
    to_host(trailer, p + b.bytes, kTrailer);
    if (trailer[1] == kAbortedBatch)
      throw runtime_err("the trainer aborted this refit at batch {} (see its log)", batch_)
          .tensor(meta_[b.first].name);
    uint32_t crc = device_crc(p, b.bytes);
    if (trailer[1] != uint32_t(batch_) || trailer[0] != crc)
      throw runtime_err("packed refit batch {} (tensors {}..{}) is corrupt: checksum {:08x}, "
                        "expected {:08x} (batch index {})",
                        batch_, meta_[b.first].name, meta_[b.end - 1].name, crc, trailer[0],
                        trailer[1])
          .tensor(meta_[b.first].name);
    off_ = 0;
    ++stats_.batches;
  }
  const TensorMeta& m = meta_[next_];
  auto* at = static_cast<char*>(buf_->data()) + off_;
  Tensor view = Tensor::borrow(at, m.shape, m.dtype, buf_, Device::CUDA);
  if (reinterpret_cast<uintptr_t>(at) % dtype_size(m.dtype) != 0) view = view.clone();
  out.name = m.name;
  out.tensor = on_device(view, yield_);
  off_ += m.nbytes();
  stats_.bytes += m.nbytes();
  ++stats_.tensors;
  ++next_;
  if (next_ == b.end) ++batch_;
  return true;
}

}  // namespace qarl::refit
