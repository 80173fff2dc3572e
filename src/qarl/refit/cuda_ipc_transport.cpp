#include "qarl/refit/cuda_ipc_transport.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "qarl/refit/control.h"
#include "qarl/refit/device_copy.h"

#ifdef QARL_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace qarl::refit {

using json = nlohmann::json;

#ifndef QARL_HAVE_CUDA
std::string cuda_ipc_unavailable_reason() { return "qarl was built without CUDA"; }
struct CudaIpcMapping {};
std::shared_ptr<CudaIpcBuffers> CudaIpcBuffers::create(size_t) {
  throw runtime_err("CUDA IPC staging: {}", cuda_ipc_unavailable_reason());
}
CudaIpcBuffers::~CudaIpcBuffers() = default;
CudaIpcStagingSender::CudaIpcStagingSender(Socket& c, RefitMetadata m, size_t b)
    : CudaIpcStagingSender(c, std::move(m), CudaIpcBuffers::create(b)) {}
CudaIpcStagingSender::CudaIpcStagingSender(Socket& c, RefitMetadata, std::shared_ptr<CudaIpcBuffers>)
    : ctl_(c), id_(0) {
  throw runtime_err("CUDA IPC staging: {}", cuda_ipc_unavailable_reason());
}
CudaIpcStagingSender::~CudaIpcStagingSender() = default;
void CudaIpcStagingSender::push(const std::string&, const Tensor&) {}
TransferStats CudaIpcStagingSender::finish() { return {}; }
CudaIpcStagingReceiver::CudaIpcStagingReceiver(Socket& c, RefitMetadata, CudaIpcMappings*, Device y)
    : ctl_(c), yield_(y) {
  throw runtime_err("CUDA IPC staging: {}", cuda_ipc_unavailable_reason());
}
CudaIpcStagingReceiver::~CudaIpcStagingReceiver() = default;
bool CudaIpcStagingReceiver::next(NamedTensor&) { return false; }
void CudaIpcStagingReceiver::acknowledge() {}
void CudaIpcStagingReceiver::abandon(const std::string&) noexcept {}
#else

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw runtime_err("CUDA {} failed: {}", what, cudaGetErrorString(e));
}

template <typename H>
std::string to_hex(const H& h) {
  static const char* d = "0123456789abcdef";
  const auto* p = reinterpret_cast<const unsigned char*>(&h);
  std::string s;
  for (size_t i = 0; i < sizeof h; ++i) {
    s += d[p[i] >> 4];
    s += d[p[i] & 15];
  }
  return s;
}

template <typename H>
H from_hex(const std::string& s) {
  H h{};
  if (s.size() != 2 * sizeof h) throw runtime_err("bad CUDA IPC handle (length {})", s.size());
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw runtime_err("bad CUDA IPC handle (character '{}')", c);
  };
  auto* p = reinterpret_cast<unsigned char*>(&h);
  for (size_t i = 0; i < sizeof h; ++i) p[i] = uint8_t(nib(s[2 * i]) << 4 | nib(s[2 * i + 1]));
  return h;
}

uint64_t as_u64(const void* p) { return uint64_t(reinterpret_cast<uintptr_t>(p)); }
template <typename T>
T from_u64(uint64_t v) { return reinterpret_cast<T>(uintptr_t(v)); }

// A temporary device allocation for an oversized tensor, with its handle.
struct TempAllocation {
  void* ptr = nullptr;
  ~TempAllocation() {
    if (ptr) cudaFree(ptr);
  }
};

}  // namespace

// An opened IPC allocation or event of the peer (closed when the last user lets go), or,
// between ends in one process, the peer's own pointer.
struct CudaIpcMapping {
  void* ptr = nullptr;
  size_t bytes = 0;
  bool is_event = false, opened = false;
  ~CudaIpcMapping() {
    if (!opened) return;
    if (is_event)
      cudaEventDestroy(static_cast<cudaEvent_t>(ptr));
    else
      cudaIpcCloseMemHandle(ptr);
  }
  static std::shared_ptr<CudaIpcMapping> open_mem(const json& j, size_t bytes, bool same_process) {
    auto m = std::make_shared<CudaIpcMapping>();
    m->bytes = bytes;
    if (same_process) {
      m->ptr = from_u64<void*>(j["ptr"].get<uint64_t>());
    } else {
      auto h = from_hex<cudaIpcMemHandle_t>(j["handle"].get<std::string>());
      check(cudaIpcOpenMemHandle(&m->ptr, h, cudaIpcMemLazyEnablePeerAccess),
            "cudaIpcOpenMemHandle");
      m->opened = true;
    }
    return m;
  }
  static std::shared_ptr<CudaIpcMapping> open_event(const json& j, bool same_process) {
    auto m = std::make_shared<CudaIpcMapping>();
    m->is_event = true;
    if (same_process) {
      m->ptr = from_u64<void*>(j["event_ptr"].get<uint64_t>());
    } else {
      cudaEvent_t e = nullptr;
      check(cudaIpcOpenEventHandle(&e, from_hex<cudaIpcEventHandle_t>(j["event"].get<std::string>())),
            "cudaIpcOpenEventHandle");
      m->ptr = e;
      m->opened = true;
    }
    return m;
  }
};

std::string cuda_ipc_unavailable_reason() { return cuda_unusable_reason(); }

std::shared_ptr<CudaIpcBuffers> CudaIpcBuffers::create(size_t bytes) {
  if (bytes < kStagingAlignment || bytes % kStagingAlignment)
    throw usage_err("staging buffer size {} must be a positive multiple of {}", bytes,
                    kStagingAlignment);
  std::string why = cuda_ipc_unavailable_reason();
  if (!why.empty()) throw runtime_err("CUDA IPC staging: {}", why);
  auto p = std::make_shared<CudaIpcBuffers>();
  p->bytes = bytes;
  for (int b = 0; b < 2; ++b) {
    check(cudaMalloc(&p->ptr[b], bytes), "cudaMalloc (staging buffer)");
    cudaIpcMemHandle_t h;
    check(cudaIpcGetMemHandle(&h, p->ptr[b]), "cudaIpcGetMemHandle");
    p->mem_handle[b] = to_hex(h);
    cudaEvent_t e;
    check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming | cudaEventInterprocess),
          "cudaEventCreate (interprocess)");
    p->event[b] = e;
    cudaIpcEventHandle_t eh;
    check(cudaIpcGetEventHandle(&eh, e), "cudaIpcGetEventHandle");
    p->event_handle[b] = to_hex(eh);
  }
  return p;
}

CudaIpcBuffers::~CudaIpcBuffers() {
  for (int b = 0; b < 2; ++b) {
    if (event[b]) cudaEventDestroy(static_cast<cudaEvent_t>(event[b]));
    if (ptr[b]) cudaFree(ptr[b]);
  }
}

// ---- sender ------------------------------------------------------------------------------

void CudaIpcStagingSender::expect_ack(const char* what) {
  json j;
  do {
    j = recv_control(ctl_);
  } while (j.value("id", uint64_t(0)) != id_);
  if (j["type"] == "ack") return;
  if (j["type"] == "error") {
    Error e = runtime_err("refit receiver failed ({}): {}", what, j.value("message", ""));
    if (j.contains("tensor")) e.tensor(j["tensor"].get<std::string>());
    throw e;
  }
  throw runtime_err("unexpected refit control message '{}' while waiting for an ACK ({})",
                    j["type"].dump(), what);
}

CudaIpcStagingSender::CudaIpcStagingSender(Socket& control, RefitMetadata meta, size_t buffer_bytes)
    : CudaIpcStagingSender(control, std::move(meta), CudaIpcBuffers::create(buffer_bytes)) {}

CudaIpcStagingSender::CudaIpcStagingSender(Socket& control, RefitMetadata meta,
                                           std::shared_ptr<CudaIpcBuffers> buffers)
    : ctl_(control), id_(new_refit_id()), meta_(std::move(meta)), pool_(std::move(buffers)) {
  json bufs = json::array();
  for (int b = 0; b < 2; ++b)
    bufs.push_back({{"handle", pool_->mem_handle[b]}, {"event", pool_->event_handle[b]},
                    {"ptr", as_u64(pool_->ptr[b])}, {"event_ptr", as_u64(pool_->event[b])}});
  send_control(ctl_, {{"type", "hello"},
                      {"id", id_},
                      {"transport", "cuda_ipc"},
                      {"pid", int64_t(::getpid())},
                      {"buffers", bufs},
                      {"bytes", pool_->bytes},
                      {"count", meta_.size()},
                      {"fingerprint", metadata_fingerprint(meta_)}});
  expect_ack("hello");
}

CudaIpcStagingSender::~CudaIpcStagingSender() {
  if (finished_) return;
  try {
    send_control(ctl_, {{"type", "abort"}, {"id", id_}});
  } catch (...) {
  }
}

void CudaIpcStagingSender::wait_one_ack() {
  QARL_ASSERT(!pending_.empty(), "no buffer in flight");
  expect_ack("buffer");
  int b = pending_.front();
  pending_.pop_front();
  if (b >= 0) in_flight_[b] = false;
}

void CudaIpcStagingSender::wait_buffer_free(int b) {
  while (in_flight_[b]) wait_one_ack();
}

void CudaIpcStagingSender::flush() {
  if (names_.empty()) return;
  // The receiver waits on this event before touching the buffer.
  check(cudaEventRecord(static_cast<cudaEvent_t>(pool_->event[cur_]), 0), "cudaEventRecord");
  send_control(ctl_, {{"type", "batch"}, {"id", id_}, {"buffer", cur_}, {"names", names_}, {"used", used_}});
  in_flight_[cur_] = true;
  pending_.push_back(cur_);
  ++stats_.batches;
  cur_ ^= 1;
  used_ = 0;
  names_.clear();
}

void CudaIpcStagingSender::push(const std::string& name, const Tensor& tensor) {
  if (t0_ < 0) t0_ = refit_now_s();
  if (next_ >= meta_.size())
    throw runtime_err("pushed beyond the end of the refit metadata ({} tensors)", meta_.size())
        .tensor(name);
  check_matches_meta(meta_[next_], name, tensor);
  const size_t n = tensor.nbytes(), aligned = align_up(n, kStagingAlignment);
  if (aligned > pool_->bytes) {
    // Oversized: alone in a temporary device allocation, synchronously.
    flush();
    TempAllocation tmp;
    check(cudaMalloc(&tmp.ptr, aligned), "cudaMalloc (oversized refit tensor)");
    copy_to_device_async(tmp.ptr, tensor);
    cuda_sync_default_stream();
    cudaIpcMemHandle_t h;
    check(cudaIpcGetMemHandle(&h, tmp.ptr), "cudaIpcGetMemHandle");
    send_control(ctl_, {{"type", "batch"}, {"id", id_}, {"temp", {{"handle", to_hex(h)}, {"ptr", as_u64(tmp.ptr)}}},
                        {"bytes", aligned}, {"names", {name}}, {"used", aligned}});
    pending_.push_back(-1);
    ++stats_.batches;
    while (!pending_.empty()) wait_one_ack();  // the receiver closed its mapping
  } else {
    if (used_ + aligned > pool_->bytes) flush();
    if (used_ == 0) wait_buffer_free(cur_);
    copy_to_device_async(static_cast<char*>(pool_->ptr[cur_]) + used_, tensor);
    names_.push_back(name);
    used_ += aligned;
  }
  ++next_;
  stats_.bytes += n;
  ++stats_.tensors;
}

TransferStats CudaIpcStagingSender::finish() {
  if (t0_ < 0) t0_ = refit_now_s();
  if (next_ != meta_.size())
    throw runtime_err("refit stream ended after {} of {} tensors; next expected '{}'", next_,
                      meta_.size(), meta_[next_].name);
  flush();
  while (!pending_.empty()) wait_one_ack();
  send_control(ctl_, {{"type", "complete"}, {"id", id_}, {"count", next_}, {"bytes", stats_.bytes}});
  finished_ = true;
  expect_ack("complete");
  stats_.seconds = refit_now_s() - t0_;
  return stats_;
}

// ---- receiver ----------------------------------------------------------------------------

CudaIpcStagingReceiver::CudaIpcStagingReceiver(Socket& control, RefitMetadata meta,
                                               CudaIpcMappings* reuse, Device yield)
    : ctl_(control), meta_(std::move(meta)), yield_(yield) {
  json h;
  do {
    h = recv_control(ctl_);
  } while (h["type"] != "hello");
  id_ = h.value("id", uint64_t(0));
  try {
    if (h.value("transport", "") != "cuda_ipc")
      throw runtime_err("the refit sender is not a CUDA IPC staging sender");
    if (h.value("fingerprint", uint64_t(0)) != metadata_fingerprint(meta_) ||
        h.value("count", size_t(0)) != meta_.size())
      throw runtime_err("sender and receiver hold different refit metadata ({} vs {} tensors)",
                        h.value("count", size_t(0)), meta_.size());
    std::string why = cuda_ipc_unavailable_reason();
    if (!why.empty()) throw runtime_err("CUDA IPC staging receiver: {}", why);
    same_process_ = h.value("pid", int64_t(-1)) == int64_t(::getpid());
    size_t bytes = h["bytes"].get<size_t>();
    for (int b = 0; b < 2; ++b) {
      const json& bj = h["buffers"][b];
      std::string key = same_process_ ? std::to_string(bj["ptr"].get<uint64_t>())
                                      : bj["handle"].get<std::string>();
      std::string ekey = same_process_ ? std::to_string(bj["event_ptr"].get<uint64_t>())
                                       : bj["event"].get<std::string>();
      if (reuse && reuse->by_handle.count(key) && reuse->by_handle[key]->bytes == bytes &&
          reuse->by_handle.count(ekey)) {
        buf_[b] = reuse->by_handle[key];
        ev_[b] = reuse->by_handle[ekey];
        continue;
      }
      buf_[b] = CudaIpcMapping::open_mem(bj, bytes, same_process_);
      ev_[b] = CudaIpcMapping::open_event(bj, same_process_);
      if (reuse) {
        reuse->by_handle[key] = buf_[b];
        reuse->by_handle[ekey] = ev_[b];
      }
    }
  } catch (Error& e) {
    fail(e);
  } catch (const std::exception& e) {
    fail(runtime_err("bad CUDA IPC staging hello: {}", e.what()));
  }
  send_control(ctl_, {{"type", "ack"}, {"id", id_}});
}

CudaIpcStagingReceiver::~CudaIpcStagingReceiver() {
  if (!done_) abandon("receiver destroyed before the end of the refit");
}

void CudaIpcStagingReceiver::abandon(const std::string& why) noexcept {
  if (done_) return;
  done_ = true;
  try {
    send_control(ctl_, {{"type", "error"}, {"id", id_}, {"message", why}});
  } catch (...) {
  }
}

void CudaIpcStagingReceiver::fail(Error e) {
  try {
    json j = {{"type", "error"}, {"id", id_}, {"message", e.message()}};
    if (!e.tensor().empty()) j["tensor"] = e.tensor();
    send_control(ctl_, j);
  } catch (...) {
  }
  done_ = true;
  throw e;
}

void CudaIpcStagingReceiver::ack() {
  // The consumer's reads of this buffer (on any stream of this process) finish first.
  cuda_device_synchronize();
  batch_mem_.reset();  // a temporary allocation is closed before the sender frees it
  send_control(ctl_, {{"type", "ack"}, {"id", id_}});
  need_ack_ = false;
}

void CudaIpcStagingReceiver::acknowledge() {
  if (done_) throw runtime_err("refit already acknowledged or abandoned");
  if (!end_) throw runtime_err("acknowledge() before the end of the refit stream");
  send_control(ctl_, {{"type", "ack"}, {"id", id_}});
  done_ = true;
  stats_.seconds = refit_now_s() - t0_;
}

bool CudaIpcStagingReceiver::next(NamedTensor& out) {
  out.tensor = Tensor();
  if (done_ || end_) return false;
  if (t0_ < 0) t0_ = refit_now_s();
  if (batch_pos_ < batch_.size()) {
    auto [i, off] = batch_[batch_pos_++];
    const TensorMeta& m = meta_[i];
    out.name = m.name;
    Tensor view = Tensor::borrow(static_cast<char*>(batch_mem_->ptr) + off, m.shape, m.dtype,
                                 batch_mem_, Device::CUDA);
    out.tensor = on_device(view, yield_);
    stats_.bytes += m.nbytes();
    ++stats_.tensors;
    return true;
  }
  if (need_ack_) ack();
  json j = recv_control(ctl_);
  try {
    if (j["type"] == "complete") {
      if (next_ != meta_.size() || j["count"].get<size_t>() != meta_.size() ||
          j["bytes"].get<size_t>() != metadata_total_bytes(meta_))
        throw runtime_err("incomplete refit: received {} of {} tensors (sender says {})", next_,
                          meta_.size(), j["count"].get<size_t>());
      end_ = true;
      return false;
    }
    if (j["type"] == "abort")
      throw runtime_err("the trainer aborted this refit after {} tensors (see its log)", next_);
    if (j["type"] != "batch") throw runtime_err("unexpected control message {}", j["type"].dump());
    if (j.contains("temp")) {
      // Written and synchronized by the sender before it sent this message.
      batch_mem_ = CudaIpcMapping::open_mem(j["temp"], j["bytes"].get<size_t>(), same_process_);
    } else {
      int b = j["buffer"].get<int>();
      if (b != 0 && b != 1) throw runtime_err("bad staging buffer id {}", b);
      check(cudaEventSynchronize(static_cast<cudaEvent_t>(ev_[b]->ptr)), "cudaEventSynchronize");
      batch_mem_ = buf_[b];
    }
    const auto& names = j["names"];
    size_t used = j["used"].get<size_t>(), off = 0;
    batch_.clear();
    batch_pos_ = 0;
    for (const auto& nj : names) {
      std::string name = nj.get<std::string>();
      if (next_ >= meta_.size())
        throw runtime_err("unexpected tensor beyond the end of the metadata").tensor(name);
      if (name != meta_[next_].name)
        throw runtime_err("out of order: expected '{}'", meta_[next_].name).tensor(name);
      batch_.push_back({next_, off});
      off += align_up(meta_[next_].nbytes(), kStagingAlignment);
      ++next_;
    }
    if (names.empty() || off != used || used > batch_mem_->bytes)
      throw runtime_err("staging buffer offsets disagree: computed {} bytes, sender says {} "
                        "(buffer {} bytes)", off, used, batch_mem_->bytes);
  } catch (Error& e) {
    fail(e);
  } catch (const std::exception& e) {
    fail(runtime_err("bad CUDA IPC staging control message: {}", e.what()));
  }
  need_ack_ = true;
  ++stats_.batches;
  return next(out);
}

#endif  // QARL_HAVE_CUDA

}  // namespace qarl::refit
