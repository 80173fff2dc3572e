#include "qarl/refit/packed_protocol.h"

#include "qarl/core/error.h"
#include "qarl/refit/control.h"
#include "qarl/refit/device_copy.h"

namespace qarl::refit {
namespace {

constexpr size_t kTrailer = 8;  // u32 CRC32C, u32 batch index
constexpr uint32_t kAbortedBatch = 0xFFFFFFFFu;  // index of a batch the sender gave up on

// The kept buffer when nobody else holds it (no yielded view) and it is large enough: no
// fresh pages to fault in for every batch.
std::shared_ptr<Storage> reusable_buffer(const std::shared_ptr<Storage>& keep, size_t n,
                                         Device device) {
  if (keep && keep.use_count() == 1 && keep->nbytes() >= n) return keep;
  return Storage::allocate(n, device);
}

}  // namespace

std::vector<PackedBatch> plan_packed_batches(const RefitMetadata& meta, size_t target_bytes) {
  std::vector<PackedBatch> out;
  PackedBatch cur;
  for (size_t i = 0; i < meta.size(); ++i) {
    cur.bytes += meta[i].nbytes();
    cur.end = i + 1;
    if (cur.bytes > target_bytes) {  // the crossing tensor closes the batch it is in
      out.push_back(cur);
      cur = PackedBatch{i + 1, i + 1, 0};
    }
  }
  if (cur.end > cur.first) out.push_back(cur);  // final partial batch
  return out;
}

// ---- sender ------------------------------------------------------------------------------

PackedSenderBase::PackedSenderBase(BroadcastWire& wire, RefitMetadata meta, size_t target_bytes,
                                   const PackedMemory& memory,
                                   std::unique_ptr<PackedSenderBuffers> buffers,
                                   const char* wrong_wire)
    : wire_(wire), meta_(std::move(meta)), target_(target_bytes), mem_(memory),
      bufs_(std::move(buffers)) {
  if (!wire_.is_root()) throw usage_err("a packed refit sender needs the root end of the wire");
  if (wire_.device_buffers() != (mem_.device == Device::CUDA)) throw usage_err("{}", wrong_wire);
  batches_ = plan_packed_batches(meta_, target_);
}

PackedSenderBase::~PackedSenderBase() {
  try {
    bufs_->drain();
  } catch (...) {
  }
  if (t0_ < 0 || finished_) return;
  try {
    for (size_t b = batch_; b < batches_.size(); ++b) {
      auto poison = Storage::allocate(batches_[b].bytes + kTrailer, mem_.device);
      auto* p = static_cast<unsigned char*>(poison->data());
      mem_.zero(p, batches_[b].bytes);
      uint32_t trailer[2] = {0, kAbortedBatch};
      mem_.from_host(p + batches_[b].bytes, trailer, kTrailer);
      wire_.broadcast(p, batches_[b].bytes + kTrailer);
    }
    wire_.barrier(false);
  } catch (...) {
  }
}

void PackedSenderBase::start() {
  t0_ = refit_now_s();
  uint64_t header[2] = {metadata_fingerprint(meta_), target_};
  auto h = Storage::allocate(sizeof header, mem_.device);
  mem_.from_host(h->data(), header, sizeof header);
  wire_.broadcast(h->data(), sizeof header);
  bufs_->start(batches_.size());
}

void PackedSenderBase::push(const std::string& name, const Tensor& tensor) {
  if (t0_ < 0) start();
  if (next_ >= meta_.size())
    throw runtime_err("pushed beyond the end of the refit metadata ({} tensors)", meta_.size())
        .tensor(name);
  check_matches_meta(meta_[next_], name, tensor);
  const PackedBatch& b = batches_[batch_];
  if (next_ == b.first) {
    base_ = bufs_->begin(b.bytes + kTrailer);
    fill_ = 0;
  }
  size_t n = tensor.nbytes();
  mem_.copy_in(base_ + fill_, tensor);
  fill_ += n;
  ++next_;
  stats_.bytes += n;
  ++stats_.tensors;
  if (next_ == b.end) {
    QARL_ASSERT(fill_ == b.bytes, "batch {} filled {} of {} bytes", batch_, fill_, b.bytes);
    // On the device, crc32c_device runs on the legacy default stream, after the copies above.
    uint32_t trailer[2] = {mem_.crc(base_, b.bytes), uint32_t(batch_)};
    mem_.from_host(base_ + b.bytes, trailer, kTrailer);
    bufs_->send(b.bytes + kTrailer);
    ++batch_;
    ++stats_.batches;
  }
}

TransferStats PackedSenderBase::finish() {
  if (t0_ < 0) start();
  if (next_ != meta_.size())
    throw runtime_err("refit stream ended after {} of {} tensors; next expected '{}'", next_,
                      meta_.size(), meta_[next_].name);
  bufs_->drain();  // every batch on the wire first
  finished_ = true;
  if (!wire_.barrier(true))
    throw runtime_err("a refit receiver failed (its engine keeps the previous state; see the "
                      "receiver's log for the tensor)");
  stats_.seconds = refit_now_s() - t0_;
  return stats_;
}

// ---- receiver ----------------------------------------------------------------------------

PackedReceiverBase::PackedReceiverBase(BroadcastWire& wire, RefitMetadata meta,
                                       size_t target_bytes, const PackedMemory& memory,
                                       Device yield, const char* wrong_wire)
    : wire_(wire), meta_(std::move(meta)), target_(target_bytes), mem_(memory), yield_(yield) {
  if (wire_.is_root()) throw usage_err("a packed refit receiver needs a leaf end of the wire");
  if (wire_.device_buffers() != (mem_.device == Device::CUDA)) throw usage_err("{}", wrong_wire);
  batches_ = plan_packed_batches(meta_, target_);
}

PackedReceiverBase::~PackedReceiverBase() {
  if (!done_) abandon("receiver destroyed before the end of the refit");
}

void PackedReceiverBase::abandon(const std::string& why) noexcept {
  if (done_) return;
  done_ = true;
  try {
    if (!started_) start();
  } catch (...) {
  }
  if (!in_sync_) return;  // sizes unknown: the caller must drop this connection
  try {
    // Receive the rest without looking at it, then report the failure at the barrier.
    for (size_t b = received_; b < batches_.size(); ++b) {
      auto sink = Storage::allocate(batches_[b].bytes + kTrailer, mem_.device);
      wire_.broadcast(sink->data(), batches_[b].bytes + kTrailer);
    }
    wire_.barrier(false);
  } catch (...) {
  }
  (void)why;
}

void PackedReceiverBase::start() {
  started_ = true;
  t0_ = refit_now_s();
  uint64_t header[2] = {0, 0};
  auto h = Storage::allocate(sizeof header, mem_.device);
  wire_.broadcast(h->data(), sizeof header);
  mem_.to_host(header, h->data(), sizeof header);
  in_sync_ = header[0] == metadata_fingerprint(meta_) && header[1] == target_;
  if (!in_sync_)
    throw runtime_err("packed refit: the sender holds different metadata or batch size "
                      "(target {} vs {} bytes); batch boundaries would not agree",
                      header[1], target_);
}

void PackedReceiverBase::acknowledge() {
  if (done_) throw runtime_err("refit already acknowledged or abandoned");
  if (!end_) throw runtime_err("acknowledge() before the end of the refit stream");
  done_ = true;
  wire_.barrier(true);
  stats_.seconds = refit_now_s() - t0_;
}

bool PackedReceiverBase::next(NamedTensor& out) {
  out.tensor = Tensor();  // drop the caller's previous view, so its buffer can be reused
  if (done_ || end_) return false;
  if (!started_) start();
  if (next_ == meta_.size()) {
    end_ = true;  // the barrier waits for the consumer's verdict (acknowledge/abandon)
    return false;
  }
  const PackedBatch& b = batches_[batch_];
  if (next_ == b.first) {
    // Views handed out earlier keep their batch buffer alive; a buffer nobody holds any
    // more is reused.
    buf_ = reusable_buffer(buf_, b.bytes + kTrailer, mem_.device);
    auto* p = static_cast<unsigned char*>(buf_->data());
    wire_.broadcast(p, b.bytes + kTrailer);
    ++received_;
    uint32_t trailer[2];
    mem_.to_host(trailer, p + b.bytes, kTrailer);
    if (trailer[1] == kAbortedBatch)
      throw runtime_err("the trainer aborted this refit at batch {} (see its log)", batch_)
          .tensor(meta_[b.first].name);
    uint32_t crc = mem_.crc(p, b.bytes);
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
  auto* at = static_cast<unsigned char*>(buf_->data()) + off_;
  Tensor view = Tensor::borrow(at, m.shape, m.dtype, buf_, mem_.device);
  // Unpadded packing: after a 2-byte scalar the next slice may sit at an odd offset. Only
  // such slices are copied (to an aligned owned tensor), as NeMo-RL's restore_tensor does.
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
