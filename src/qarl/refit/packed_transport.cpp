#include "qarl/refit/packed_transport.h"

#include <chrono>
#include <cstring>

#include "qarl/core/error.h"
#include "qarl/refit/crc32c.h"
#include "qarl/refit/device_copy.h"

namespace qarl::refit {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

constexpr size_t kTrailer = 8;  // u32 CRC32C, u32 batch index
constexpr uint32_t kAbortedBatch = 0xFFFFFFFFu;  // index of a batch the sender gave up on

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

std::unique_ptr<TcpBroadcastWire> TcpBroadcastWire::root(std::vector<Socket> leaves) {
  auto w = std::unique_ptr<TcpBroadcastWire>(new TcpBroadcastWire());
  w->root_ = true;
  w->socks_ = std::move(leaves);
  return w;
}

std::unique_ptr<TcpBroadcastWire> TcpBroadcastWire::leaf(Socket to_root) {
  auto w = std::unique_ptr<TcpBroadcastWire>(new TcpBroadcastWire());
  w->socks_.push_back(std::move(to_root));
  return w;
}

void TcpBroadcastWire::broadcast(void* data, size_t n) {
  if (root_) {
    for (auto& s : socks_) s.send_all(data, n);
  } else {
    socks_[0].recv_all(data, n);
  }
}

bool TcpBroadcastWire::barrier(bool ok) {
  char c = ok ? 'K' : 'E';
  if (!root_) {
    socks_[0].send_all(&c, 1);
    return ok;
  }
  bool all = ok;
  for (auto& s : socks_) {
    s.recv_all(&c, 1);
    all = all && c == 'K';
  }
  return all;
}

PackedSender::PackedSender(BroadcastWire& wire, RefitMetadata meta, size_t target_bytes,
                           std::shared_ptr<PackedScratch> scratch)
    : wire_(wire), meta_(std::move(meta)), target_(target_bytes), scratch_(std::move(scratch)) {
  if (!wire_.is_root()) throw usage_err("a packed refit sender needs the root end of the wire");
  if (wire_.device_buffers())
    throw usage_err("this wire moves device buffers: use DevicePackedSender (device_packed_transport.h)");
  if (!scratch_) scratch_ = std::make_shared<PackedScratch>();
  batches_ = plan_packed_batches(meta_, target_);
}

PackedSender::~PackedSender() {
  try {
    stop_worker();
  } catch (...) {
  }
  if (t0_ < 0 || finished_) return;
  try {
    for (size_t b = batch_; b < batches_.size(); ++b) {
      std::vector<unsigned char> poison(batches_[b].bytes + kTrailer, 0);
      uint32_t trailer[2] = {0, kAbortedBatch};
      std::memcpy(poison.data() + batches_[b].bytes, trailer, kTrailer);
      wire_.broadcast(poison.data(), poison.size());
    }
    wire_.barrier(false);
  } catch (...) {
  }
}

void PackedSender::start() {
  t0_ = now_s();
  uint64_t header[2] = {metadata_fingerprint(meta_), target_};
  wire_.broadcast(header, sizeof header);
  if (wire_.background_ok() && batches_.size() > 1)
    worker_ = std::thread([this] { worker_loop(); });
}

void PackedSender::worker_loop() {
  while (true) {
    std::pair<int, size_t> job;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopped and drained
      job = queue_.front();
    }
    std::exception_ptr e;
    try {
      wire_.broadcast(scratch_->buf[job.first].data(), job.second);
    } catch (...) {
      e = std::current_exception();
    }
    std::lock_guard<std::mutex> lk(mu_);
    queue_.pop_front();
    busy_[job.first] = false;
    if (e) {
      error_ = e;
      queue_.clear();
      busy_[0] = busy_[1] = false;
      stop_ = true;
    }
    cv_.notify_all();
    if (e) return;
  }
}

void PackedSender::wait_free(int buffer) {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return !busy_[buffer] || error_; });
  if (error_) std::rethrow_exception(error_);
}

void PackedSender::hand_off(int buffer, size_t bytes) {
  if (!worker_.joinable()) {
    wire_.broadcast(scratch_->buf[buffer].data(), bytes);
    return;
  }
  std::lock_guard<std::mutex> lk(mu_);
  if (error_) std::rethrow_exception(error_);
  busy_[buffer] = true;
  queue_.emplace_back(buffer, bytes);
  cv_.notify_all();
}

void PackedSender::stop_worker() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
  if (error_) std::rethrow_exception(error_);
}

void PackedSender::push(const std::string& name, const Tensor& tensor) {
  if (t0_ < 0) start();
  if (next_ >= meta_.size())
    throw runtime_err("pushed beyond the end of the refit metadata ({} tensors)", meta_.size())
        .tensor(name);
  check_matches_meta(meta_[next_], name, tensor);
  const PackedBatch& b = batches_[batch_];
  std::vector<unsigned char>& buf = scratch_->buf[cur_];
  if (next_ == b.first) {
    wait_free(cur_);
    if (buf.size() < b.bytes + kTrailer) buf.resize(b.bytes + kTrailer);
    fill_ = 0;
  }
  size_t n = tensor.nbytes();
  copy_to_host(buf.data() + fill_, tensor);
  fill_ += n;
  ++next_;
  stats_.bytes += n;
  ++stats_.tensors;
  if (next_ == b.end) {
    QARL_ASSERT(fill_ == b.bytes, "batch {} filled {} of {} bytes", batch_, fill_, b.bytes);
    uint32_t trailer[2] = {crc32c(buf.data(), b.bytes), uint32_t(batch_)};
    std::memcpy(buf.data() + b.bytes, trailer, kTrailer);
    hand_off(cur_, b.bytes + kTrailer);
    cur_ ^= 1;
    ++batch_;
    ++stats_.batches;
  }
}

TransferStats PackedSender::finish() {
  if (t0_ < 0) start();
  if (next_ != meta_.size())
    throw runtime_err("refit stream ended after {} of {} tensors; next expected '{}'", next_,
                      meta_.size(), meta_[next_].name);
  stop_worker();  // drains the queue first
  finished_ = true;
  if (!wire_.barrier(true))
    throw runtime_err("a refit receiver failed (its engine keeps the previous state; see the "
                      "receiver's log for the tensor)");
  stats_.seconds = now_s() - t0_;
  return stats_;
}

PackedReceiver::~PackedReceiver() {
  if (!done_) abandon("receiver destroyed before the end of the refit");
}

void PackedReceiver::abandon(const std::string& why) noexcept {
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
      std::vector<unsigned char> sink(batches_[b].bytes + kTrailer);
      wire_.broadcast(sink.data(), sink.size());
    }
    wire_.barrier(false);
  } catch (...) {
  }
  (void)why;
}

PackedReceiver::PackedReceiver(BroadcastWire& wire, RefitMetadata meta, size_t target_bytes,
                               Device yield)
    : wire_(wire), meta_(std::move(meta)), target_(target_bytes), yield_(yield) {
  if (wire_.is_root()) throw usage_err("a packed refit receiver needs a leaf end of the wire");
  if (wire_.device_buffers())
    throw usage_err("this wire moves device buffers: use DevicePackedReceiver (device_packed_transport.h)");
  batches_ = plan_packed_batches(meta_, target_);
}

void PackedReceiver::start() {
  started_ = true;
  t0_ = now_s();
  uint64_t header[2] = {0, 0};
  wire_.broadcast(header, sizeof header);
  in_sync_ = header[0] == metadata_fingerprint(meta_) && header[1] == target_;
  if (!in_sync_)
    throw runtime_err("packed refit: the sender holds different metadata or batch size "
                      "(target {} vs {} bytes); batch boundaries would not agree",
                      header[1], target_);
}

void PackedReceiver::acknowledge() {
  if (done_) throw runtime_err("refit already acknowledged or abandoned");
  if (!end_) throw runtime_err("acknowledge() before the end of the refit stream");
  done_ = true;
  wire_.barrier(true);
  stats_.seconds = now_s() - t0_;
}

bool PackedReceiver::next(NamedTensor& out) {
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
    // more is reused (no fresh pages to fault in for every batch).
    if (!buf_ || buf_.use_count() != 1 || buf_->nbytes() < b.bytes + kTrailer)
      buf_ = Storage::allocate(b.bytes + kTrailer, Device::CPU);
    auto* p = static_cast<unsigned char*>(buf_->data());
    wire_.broadcast(p, b.bytes + kTrailer);
    ++received_;
    uint32_t trailer[2];
    std::memcpy(trailer, p + b.bytes, kTrailer);
    if (trailer[1] == kAbortedBatch)
      throw runtime_err("the trainer aborted this refit at batch {} (see its log)", batch_)
          .tensor(meta_[b.first].name);
    uint32_t crc = crc32c(p, b.bytes);
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
  Tensor view = Tensor::borrow(at, m.shape, m.dtype, buf_);
  // Unpadded packing: after a 2-byte scalar the next slice may sit at an odd offset. Only
  // such slices are copied (to an aligned owned tensor), as NeMo-RL's restore_tensor does.
  if (reinterpret_cast<uintptr_t>(at) % dtype_size(m.dtype) != 0) view = view.clone();
  view = on_device(view, yield_);
  out.name = m.name;
  out.tensor = std::move(view);
  off_ += m.nbytes();
  stats_.bytes += m.nbytes();
  ++stats_.tensors;
  ++next_;
  if (next_ == b.end) ++batch_;
  return true;
}

}  // namespace qarl::refit
