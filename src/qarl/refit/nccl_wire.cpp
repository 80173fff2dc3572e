#include "qarl/refit/nccl_wire.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "qarl/core/error.h"
#include "qarl/refit/device_copy.h"

#ifdef QARL_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace qarl::refit {

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
void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw runtime_err("NCCL {} failed: {}", what, ncclGetErrorString(r));
}
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
}  // namespace

std::string nccl_unavailable_reason() { return cuda_unusable_reason(); }

void NcclBroadcastWire::init(const void* unique_id, int rank, int nranks) {
  rank_ = rank;
  nranks_ = nranks;
  ncclUniqueId id;
  std::memcpy(&id, unique_id, sizeof id);
  ncclComm_t comm = nullptr;
  check(ncclCommInitRank(&comm, nranks, id, rank), "ncclCommInitRank");
  comm_ = comm;
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  stream_ = s;
  check(cudaMalloc(&flag_, sizeof(int)), "cudaMalloc (barrier flag)");
}

std::unique_ptr<NcclBroadcastWire> NcclBroadcastWire::root(std::vector<Socket> leaves) {
  require_available();
  ncclUniqueId id;
  check(ncclGetUniqueId(&id), "ncclGetUniqueId");
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
  ncclUniqueId id;
  check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  auto w = std::unique_ptr<NcclBroadcastWire>(new NcclBroadcastWire());
  w->init(&id, 0, 1);
  return w;
}

NcclBroadcastWire::~NcclBroadcastWire() {
  if (comm_) ncclCommDestroy(static_cast<ncclComm_t>(comm_));
  if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
  if (flag_) cudaFree(flag_);
}

void NcclBroadcastWire::broadcast_from(const void* send, void* recv, size_t n) {
  auto s = static_cast<cudaStream_t>(stream_);
  // The data was written on the legacy default stream: order our stream after it.
  check(cudaStreamSynchronize(0), "cudaStreamSynchronize");
  constexpr size_t kChunk = size_t(1) << 30;
  for (size_t off = 0; off < n; off += kChunk) {
    size_t k = std::min(kChunk, n - off);
    check(ncclBroadcast(static_cast<const char*>(send) + off, static_cast<char*>(recv) + off, k,
                        ncclChar, 0, static_cast<ncclComm_t>(comm_), s),
          "ncclBroadcast");
  }
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize (ncclBroadcast)");
}

void NcclBroadcastWire::broadcast(void* data, size_t n) { broadcast_from(data, data, n); }

bool NcclBroadcastWire::barrier(bool ok) {
  auto s = static_cast<cudaStream_t>(stream_);
  int v = ok ? 1 : 0;
  check(cudaMemcpyAsync(flag_, &v, sizeof v, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
  check(ncclAllReduce(flag_, flag_, 1, ncclInt32, ncclMin, static_cast<ncclComm_t>(comm_), s),
        "ncclAllReduce");
  check(cudaMemcpyAsync(&v, flag_, sizeof v, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize (barrier)");
  return v == 1;
}

#endif  // QARL_HAVE_NCCL

}  // namespace qarl::refit
