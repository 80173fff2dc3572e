// NCCL broadcast wire for the packed refit stream on the GPU: one communicator over the
// trainer (rank 0, the root) and every rollout process, one GPU each. broadcast() takes
// DEVICE pointers (device_buffers() is true), so it carries the device packed stream of
// device_packed_transport.h, not the host-packing PackedSender.
//
// Rendezvous: the root makes the ncclUniqueId and sends it, with each leaf's rank and the
// rank count, over the existing TCP sockets (Listener / connect_tcp, socket.h); then every
// rank calls ncclCommInitRankConfig. The communicator is non-blocking and every step is
// bounded by nccl_timeout_s(): a rank that died or never joins gives an Error on the others,
// not a hang. The constructors set NCCL_NVLS_ENABLE=0 in the environment
// before NCCL starts (NVLink multicast stays off; nothing here calls cuMulticastCreate).
//
// NCCL is optional at build time (CMake defines QARL_HAVE_NCCL when it finds nccl.h and
// libnccl); without it the factories throw an Error saying so.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "qarl/refit/packed_transport.h"
#include "qarl/refit/socket.h"

namespace qarl::refit {

// How long one NCCL step (communicator set-up, a broadcast, a barrier) may take before the
// wire aborts the communicator and throws: QARL_NCCL_TIMEOUT_S, default 300 s.
double nccl_timeout_s();

// "" when NCCL wires can be made here (built with NCCL and a CUDA device present).
std::string nccl_unavailable_reason();

class NcclBroadcastWire : public BroadcastWire {
 public:
  // Root (rank 0) of 1 + leaves.size() ranks; leaves: one connected socket per leaf.
  static std::unique_ptr<NcclBroadcastWire> root(std::vector<Socket> leaves);
  static std::unique_ptr<NcclBroadcastWire> leaf(Socket to_root);
  // A communicator of one rank (tests, benchmarks: broadcast is a device copy through NCCL).
  static std::unique_ptr<NcclBroadcastWire> single();
  ~NcclBroadcastWire() override;

  bool is_root() const override { return rank_ == 0; }
  bool device_buffers() const override { return true; }
  // ncclBroadcast in place on the device buffer, then waits for it (the caller reuses the
  // buffer right after). Chunks of at most 1 GiB.
  void broadcast(void* data, size_t n) override;
  // The root sends from `send`, every rank (the root too) receives into `recv`.
  void broadcast_from(const void* send, void* recv, size_t n);
  // ncclAllReduce(MIN) of ok over a device int: every rank learns whether all passed.
  bool barrier(bool ok) override;
  int rank() const { return rank_; }
  int nranks() const { return nranks_; }

 private:
  NcclBroadcastWire() = default;
  void init(const void* unique_id, int rank, int nranks);
  // Waits (at most timeout_s_) until the last call on the non-blocking communicator has been
  // taken; an error or the timeout aborts the communicator and throws.
  void settle(int nccl_result, const char* what);
  // Waits (at most timeout_s_) for stream_ to drain, watching the communicator's errors.
  void wait_stream(const char* what);
  [[noreturn]] void fail(const std::string& what, const std::string& why);
  std::string timeout_text() const;
  double timeout_s_ = 300.0;
  void* comm_ = nullptr;    // ncclComm_t
  void* stream_ = nullptr;  // cudaStream_t
  int* flag_ = nullptr;     // device int for the barrier
  int rank_ = 0, nranks_ = 1;
  std::vector<Socket> socks_;
};

}  // namespace qarl::refit
