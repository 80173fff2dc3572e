// MPI broadcast wire for the packed refit stream (CPU; Open MPI in CI). Built only into the
// separate qarl_refit_mpi library (tests/refit/extra.cmake) when CMake finds MPI, so that
// qarl itself does not depend on MPI. The caller owns MPI_Init/MPI_Finalize.
#pragma once
#ifdef QARL_REFIT_WITH_MPI
#include <mpi.h>

#include "qarl/refit/packed_transport.h"

namespace qarl::refit {

class MpiBroadcastWire : public BroadcastWire {
 public:
  MpiBroadcastWire(MPI_Comm comm, int root);
  bool is_root() const override { return rank_ == root_; }
  // MPI_Bcast in chunks of at most 1 GiB (MPI counts are int).
  void broadcast(void* data, size_t n) override;
  bool barrier(bool ok) override;  // MPI_Allreduce(MIN) of ok: everyone learns
  // Only when MPI was initialized with MPI_THREAD_SERIALIZED or more.
  bool background_ok() const override;

 private:
  MPI_Comm comm_;
  int root_, rank_ = 0;
};

}  // namespace qarl::refit
#endif
