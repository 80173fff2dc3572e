#include "qarl/refit/packed_transport.h"

#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "qarl/core/error.h"
#include "qarl/refit/crc32c.h"
#include "qarl/refit/device_copy.h"

namespace qarl::refit {
namespace {

const PackedMemory kHostMemory = {
    Device::CPU,
    copy_to_host,
    [](void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); },
    [](void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); },
    [](void* dst, size_t n) { std::memset(dst, 0, n); },
    [](const void* data, size_t n) { return crc32c(data, n); },
};

// The two scratch buffers, used in turn; with a wire that allows it, a worker thread
// broadcasts one while the sender packs the other.
class HostSenderBuffers : public PackedSenderBuffers {
 public:
  HostSenderBuffers(BroadcastWire& wire, std::shared_ptr<PackedScratch> scratch)
      : wire_(wire), scratch_(std::move(scratch)) {
    if (!scratch_) scratch_ = std::make_shared<PackedScratch>();
  }
  ~HostSenderBuffers() override {
    try {
      stop_worker();
    } catch (...) {
    }
  }
  void start(size_t batches) override {
    if (wire_.background_ok() && batches > 1) worker_ = std::thread([this] { worker_loop(); });
  }
  unsigned char* begin(size_t bytes) override {
    wait_free(cur_);
    std::vector<unsigned char>& buf = scratch_->buf[cur_];
    if (buf.size() < bytes) buf.resize(bytes);
    return buf.data();
  }
  void send(size_t bytes) override {
    hand_off(cur_, bytes);
    cur_ ^= 1;
  }
  void drain() override { stop_worker(); }  // drains the queue first

 private:
  void hand_off(int buffer, size_t bytes);  // broadcast now, or queue for the worker
  void wait_free(int buffer);
  void stop_worker();
  void worker_loop();

  BroadcastWire& wire_;
  std::shared_ptr<PackedScratch> scratch_;
  int cur_ = 0;
  // Background broadcaster (when the wire allows it).
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<int, size_t>> queue_;
  bool busy_[2] = {false, false};
  bool stop_ = false;
  std::exception_ptr error_;
};

void HostSenderBuffers::worker_loop() {
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

void HostSenderBuffers::wait_free(int buffer) {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return !busy_[buffer] || error_; });
  if (error_) std::rethrow_exception(error_);
}

void HostSenderBuffers::hand_off(int buffer, size_t bytes) {
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

void HostSenderBuffers::stop_worker() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
  if (error_) std::rethrow_exception(error_);
}

}  // namespace

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
    : PackedSenderBase(wire, std::move(meta), target_bytes, kHostMemory,
                       std::make_unique<HostSenderBuffers>(wire, std::move(scratch)),
                       "this wire moves device buffers: use DevicePackedSender "
                       "(device_packed_transport.h)") {}

PackedReceiver::PackedReceiver(BroadcastWire& wire, RefitMetadata meta, size_t target_bytes,
                               Device yield)
    : PackedReceiverBase(wire, std::move(meta), target_bytes, kHostMemory, yield,
                         "this wire moves device buffers: use DevicePackedReceiver "
                         "(device_packed_transport.h)") {}

}  // namespace qarl::refit
