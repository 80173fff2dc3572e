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
namespace {
std::unique_ptr<StagingSenderBuffers> cuda_ipc_sender_buffers(std::shared_ptr<CudaIpcBuffers>) {
  throw runtime_err("CUDA IPC staging: {}", cuda_ipc_unavailable_reason());
}
std::unique_ptr<StagingReceiverBuffers> cuda_ipc_receiver_buffers(CudaIpcMappings*) {
  throw runtime_err("CUDA IPC staging: {}", cuda_ipc_unavailable_reason());
}
}  // namespace
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

// ---- the buffer kind of the staging protocol (staging_protocol.h) -----------------------

namespace {

class CudaIpcSenderBuffers : public StagingSenderBuffers {
 public:
  explicit CudaIpcSenderBuffers(std::shared_ptr<CudaIpcBuffers> pool) : pool_(std::move(pool)) {}
  size_t bytes() const override { return pool_->bytes; }
  void describe(json& hello) const override {
    json bufs = json::array();
    for (int b = 0; b < 2; ++b)
      bufs.push_back({{"handle", pool_->mem_handle[b]}, {"event", pool_->event_handle[b]},
                      {"ptr", as_u64(pool_->ptr[b])}, {"event_ptr", as_u64(pool_->event[b])}});
    hello["transport"] = "cuda_ipc";
    hello["pid"] = int64_t(::getpid());
    hello["buffers"] = bufs;
  }
  void copy_in(int b, size_t off, const Tensor& tensor) override {
    copy_to_device_async(static_cast<char*>(pool_->ptr[b]) + off, tensor);
  }
  // The receiver waits on this event before touching the buffer.
  void seal(int b) override {
    check(cudaEventRecord(static_cast<cudaEvent_t>(pool_->event[b]), 0), "cudaEventRecord");
  }
  std::shared_ptr<void> temporary(const Tensor& tensor, size_t bytes, json& msg) override {
    auto tmp = std::make_shared<TempAllocation>();
    check(cudaMalloc(&tmp->ptr, bytes), "cudaMalloc (oversized refit tensor)");
    copy_to_device_async(tmp->ptr, tensor);
    cuda_sync_default_stream();
    cudaIpcMemHandle_t h;
    check(cudaIpcGetMemHandle(&h, tmp->ptr), "cudaIpcGetMemHandle");
    msg["temp"] = {{"handle", to_hex(h)}, {"ptr", as_u64(tmp->ptr)}};
    return tmp;  // freed once the receiver acknowledged (it closed its mapping)
  }

 private:
  std::shared_ptr<CudaIpcBuffers> pool_;
};

class CudaIpcReceiverBuffers : public StagingReceiverBuffers {
 public:
  explicit CudaIpcReceiverBuffers(CudaIpcMappings* reuse) : reuse_(reuse) {}
  const char* kind() const override { return "CUDA IPC staging"; }
  void check_hello(const json& h) override {
    if (h.value("transport", "") != "cuda_ipc")
      throw runtime_err("the refit sender is not a CUDA IPC staging sender");
  }
  void open(const json& h) override {
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
      if (reuse_ && reuse_->by_handle.count(key) && reuse_->by_handle[key]->bytes == bytes &&
          reuse_->by_handle.count(ekey)) {
        buf_[b] = reuse_->by_handle[key];
        ev_[b] = reuse_->by_handle[ekey];
        continue;
      }
      buf_[b] = CudaIpcMapping::open_mem(bj, bytes, same_process_);
      ev_[b] = CudaIpcMapping::open_event(bj, same_process_);
      if (reuse_) {
        reuse_->by_handle[key] = buf_[b];
        reuse_->by_handle[ekey] = ev_[b];
      }
    }
  }
  bool temporary(const json& j, StagingBatchMemory& out) override {
    if (!j.contains("temp")) return false;
    // Written and synchronized by the sender before it sent this message.
    out = memory(CudaIpcMapping::open_mem(j["temp"], j["bytes"].get<size_t>(), same_process_));
    return true;
  }
  StagingBatchMemory buffer(int b) override {
    check(cudaEventSynchronize(static_cast<cudaEvent_t>(ev_[b]->ptr)), "cudaEventSynchronize");
    return memory(buf_[b]);
  }
  // The consumer's reads of this buffer (on any stream of this process) finish first.
  void before_ack() override { cuda_device_synchronize(); }

 private:
  static StagingBatchMemory memory(std::shared_ptr<CudaIpcMapping> m) {
    char* data = static_cast<char*>(m->ptr);
    size_t bytes = m->bytes;
    return {std::move(m), data, bytes, Device::CUDA};
  }
  CudaIpcMappings* reuse_;
  bool same_process_ = false;
  std::shared_ptr<CudaIpcMapping> buf_[2], ev_[2];
};

std::unique_ptr<StagingSenderBuffers> cuda_ipc_sender_buffers(std::shared_ptr<CudaIpcBuffers> pool) {
  return std::make_unique<CudaIpcSenderBuffers>(std::move(pool));
}
std::unique_ptr<StagingReceiverBuffers> cuda_ipc_receiver_buffers(CudaIpcMappings* reuse) {
  return std::make_unique<CudaIpcReceiverBuffers>(reuse);
}

}  // namespace

#endif  // QARL_HAVE_CUDA

CudaIpcStagingSender::CudaIpcStagingSender(Socket& control, RefitMetadata meta, size_t buffer_bytes)
    : CudaIpcStagingSender(control, std::move(meta), CudaIpcBuffers::create(buffer_bytes)) {}

CudaIpcStagingSender::CudaIpcStagingSender(Socket& control, RefitMetadata meta,
                                           std::shared_ptr<CudaIpcBuffers> buffers)
    : StagingSenderBase(control, std::move(meta), cuda_ipc_sender_buffers(std::move(buffers))) {}

CudaIpcStagingReceiver::CudaIpcStagingReceiver(Socket& control, RefitMetadata meta,
                                               CudaIpcMappings* reuse, Device yield)
    : StagingReceiverBase(control, std::move(meta), cuda_ipc_receiver_buffers(reuse), yield) {}

}  // namespace qarl::refit
