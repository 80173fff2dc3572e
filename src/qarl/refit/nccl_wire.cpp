#include "qarl/refit/nccl_wire.h"

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "qarl/core/env.h"
#include "qarl/core/error.h"
#include "qarl/refit/device_copy.h"

#ifdef QARL_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace qarl::refit {

double nccl_timeout_s() { return env_number("QARL_NCCL_TIMEOUT_S").value_or(300.0); }

#ifndef QARL_HAVE_NCCL
std::string nccl_unavailable_reason() {
  return "qarl was built without NCCL (CMake found no nccl.h/libnccl; set QARL_NCCL_ROOT)";
}
std::unique_ptr<NcclBroadcastWire> NcclBroadcastWire::root(std::vector<Socket>) {
  throw runtime_err("NCCL refit wire: {}", nccl_unavailable_reason());
}
std::unique_ptr<NcclBroadcastWire> NcclBroadcastWire::leaf(Socket) {
  throw runtime_err("NCCL refit wire: {}", nccl_unavailable_reason());
}
std::unique_ptr<NcclBroadcastWire> NcclBroadcastWire::single() {
  throw runtime_err("NCCL refit wire: {}", nccl_unavailable_reason());
}
NcclBroadcastWire::~NcclBroadcastWire() = default;
void NcclBroadcastWire::broadcast(void*, size_t) {}
void NcclBroadcastWire::broadcast_from(const void*, void*, size_t) {}
bool NcclBroadcastWire::barrier(bool) { return false; }
void NcclBroadcastWire::init(const void*, int, int) {}
#else

namespace {
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw runtime_err("CUDA {} failed: {}", what, cudaGetErrorString(e));
}
void require_available() {
  std::string why = nccl_unavailable_reason();
  if (!why.empty()) throw runtime_err("NCCL refit wire: {}", why);
  // The machine's rule: NVLink multicast (NVLS) stays off, whatever the caller's environment.
  ::setenv("NCCL_NVLS_ENABLE", "0", 1);
}
struct Rendezvous {
  int32_t rank, nranks;
  ncclUniqueId id;
};
using Clock = std::chrono::steady_clock;
Clock::time_point deadline_after(double s) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}
ncclUniqueId unique_id() {
  ncclUniqueId id;
  ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess) throw runtime_err("NCCL ncclGetUniqueId failed: {}", ncclGetErrorString(r));
  return id;
}
}  // namespace

std::string nccl_unavailable_reason() { return cuda_unusable_reason(); }

// The communicator is non-blocking (config.blocking = 0): NCCL calls return at once and the
// wire polls their state, so a peer that died or never joins becomes an Error after the
// timeout (the communicator is aborted) instead of a hang of the whole trainer.
void NcclBroadcastWire::fail(const std::string& what, const std::string& why) {
  if (comm_) ncclCommAbort(static_cast<ncclComm_t>(comm_));
  comm_ = nullptr;
  throw runtime_err("NCCL {} failed (rank {} of {}): {}; the communicator was aborted", what, rank_,
                    nranks_, why);
}

std::string NcclBroadcastWire::timeout_text() const {
  return fmt::format("not done after {} s (QARL_NCCL_TIMEOUT_S); another rank may have died or "
                     "never joined",
                     timeout_s_);
}

void NcclBroadcastWire::settle(int result, const char* what) {
  auto r = ncclResult_t(result);
  if (r != ncclSuccess && r != ncclInProgress) fail(what, ncclGetErrorString(r));
  const auto deadline = deadline_after(timeout_s_);
  auto comm = static_cast<ncclComm_t>(comm_);
  for (;;) {
    ncclResult_t state = ncclInProgress;
    ncclResult_t q = ncclCommGetAsyncError(comm, &state);
    if (q != ncclSuccess) fail(what, ncclGetErrorString(q));
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) fail(what, ncclGetErrorString(state));
    if (Clock::now() > deadline) fail(what, timeout_text());
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

void NcclBroadcastWire::wait_stream(const char* what) {
  auto s = static_cast<cudaStream_t>(stream_);
  auto comm = static_cast<ncclComm_t>(comm_);
  const auto deadline = deadline_after(timeout_s_);
  for (int spin = 0;; ++spin) {
    cudaError_t e = cudaStreamQuery(s);
    if (e == cudaSuccess) return;
    if (e != cudaErrorNotReady) check(e, what);
    ncclResult_t state = ncclSuccess;
    if (ncclCommGetAsyncError(comm, &state) == ncclSuccess && state != ncclSuccess &&
        state != ncclInProgress)
      fail(what, ncclGetErrorString(state));
    if (Clock::now() > deadline) fail(what, timeout_text());
    // Spin a little (a barrier finishes in microseconds), then give the core back.
    if (spin > 1000) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

void NcclBroadcastWire::init(const void* id_bytes, int rank, int nranks) {
  rank_ = rank;
  nranks_ = nranks;
  timeout_s_ = nccl_timeout_s();
  ncclUniqueId id;
  std::memcpy(&id, id_bytes, sizeof id);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  ncclResult_t r = ncclCommInitRankConfig(&comm, nranks, id, rank, &config);
  if (comm == nullptr)
    throw runtime_err("NCCL ncclCommInitRankConfig failed (rank {} of {}): {}", rank, nranks,
                      ncclGetErrorString(r));
  comm_ = comm;
  settle(r, "ncclCommInitRankConfig");
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  stream_ = s;
  check(cudaMalloc(&flag_, sizeof(int)), "cudaMalloc (barrier flag)");
}

std::unique_ptr<NcclBroadcastWire> NcclBroadcastWire::root(std::vector<Socket> leaves) {
  require_available();
  ncclUniqueId id = unique_id();
  int n = int(leaves.size()) + 1;
  for (int i = 0; i < int(leaves.size()); ++i) {
    Rendezvous r{i + 1, n, id};
    leaves[size_t(i)].send_all(&r, sizeof r);
  }
  auto w = std::unique_ptr<NcclBroadcastWire>(new NcclBroadcastWire());
  w->socks_ = std::move(leaves);
  w->init(&id, 0, n);
  return w;
}

std::unique_ptr<NcclBroadcastWire> NcclBroadcastWire::leaf(Socket to_root) {
  require_available();
  Rendezvous r;
  to_root.recv_all(&r, sizeof r);
  if (r.nranks < 2 || r.rank < 1 || r.rank >= r.nranks)
    throw runtime_err("bad NCCL rendezvous message (rank {} of {})", r.rank, r.nranks);
  auto w = std::unique_ptr<NcclBroadcastWire>(new NcclBroadcastWire());
  w->socks_.push_back(std::move(to_root));
  w->init(&r.id, r.rank, r.nranks);
  return w;
}

std::unique_ptr<NcclBroadcastWire> NcclBroadcastWire::single() {
  require_available();
  ncclUniqueId id = unique_id();
  auto w = std::unique_ptr<NcclBroadcastWire>(new NcclBroadcastWire());
  w->init(&id, 0, 1);
  return w;
}

NcclBroadcastWire::~NcclBroadcastWire() {
  if (comm_) {
    // Finalize (non-blocking), wait a bounded time, then destroy; abort if it will not finish.
    auto comm = static_cast<ncclComm_t>(comm_);
    ncclResult_t state = ncclCommFinalize(comm);
    const auto deadline = deadline_after(std::min(timeout_s_, 30.0));
    while (state == ncclInProgress && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      if (ncclCommGetAsyncError(comm, &state) != ncclSuccess) break;
    }
    if (state == ncclSuccess) ncclCommDestroy(comm);
    else ncclCommAbort(comm);
  }
  if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
  if (flag_) cudaFree(flag_);
}

void NcclBroadcastWire::broadcast_from(const void* send, void* recv, size_t n) {
  if (comm_ == nullptr) throw runtime_err("NCCL broadcast on an aborted communicator");
  auto s = static_cast<cudaStream_t>(stream_);
  // The data was written on the legacy default stream: order our stream after it.
  check(cudaStreamSynchronize(0), "cudaStreamSynchronize");
  constexpr size_t kChunk = size_t(1) << 30;
  for (size_t off = 0; off < n; off += kChunk) {
    size_t k = std::min(kChunk, n - off);
    settle(ncclBroadcast(static_cast<const char*>(send) + off, static_cast<char*>(recv) + off, k,
                         ncclChar, 0, static_cast<ncclComm_t>(comm_), s),
           "ncclBroadcast");
  }
  wait_stream("ncclBroadcast");
}

void NcclBroadcastWire::broadcast(void* data, size_t n) { broadcast_from(data, data, n); }

bool NcclBroadcastWire::barrier(bool ok) {
  if (comm_ == nullptr) throw runtime_err("NCCL barrier on an aborted communicator");
  auto s = static_cast<cudaStream_t>(stream_);
  int v = ok ? 1 : 0;
  check(cudaMemcpyAsync(flag_, &v, sizeof v, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
  settle(ncclAllReduce(flag_, flag_, 1, ncclInt32, ncclMin, static_cast<ncclComm_t>(comm_), s),
         "ncclAllReduce (barrier)");
  check(cudaMemcpyAsync(&v, flag_, sizeof v, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync");
  wait_stream("ncclAllReduce (barrier)");
  return v == 1;
}

#endif  // QARL_HAVE_NCCL

}  // namespace qarl::refit
