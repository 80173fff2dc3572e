// Compiled for real only in qarl_refit_mpi (QARL_REFIT_WITH_MPI); empty in qarl_lib.
#ifdef QARL_REFIT_WITH_MPI
#include "qarl/refit/mpi_wire.h"

#include <algorithm>

#include "qarl/core/error.h"

namespace qarl::refit {
namespace {
void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw runtime_err("{} failed: {}", what, std::string(msg, size_t(len)));
  }
}
}  // namespace

MpiBroadcastWire::MpiBroadcastWire(MPI_Comm comm, int root) : comm_(comm), root_(root) {
  check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
}

void MpiBroadcastWire::broadcast(void* data, size_t n) {
  auto* p = static_cast<char*>(data);
  constexpr size_t kChunk = size_t(1) << 30;
  while (n > 0) {
    size_t k = std::min(n, kChunk);
    check(MPI_Bcast(p, int(k), MPI_BYTE, root_, comm_), "MPI_Bcast");
    p += k;
    n -= k;
  }
}

bool MpiBroadcastWire::background_ok() const {
  int level = MPI_THREAD_SINGLE;
  MPI_Query_thread(&level);
  return level >= MPI_THREAD_SERIALIZED;
}

bool MpiBroadcastWire::barrier(bool ok) {
  int mine = ok ? 1 : 0, all = 0;
  check(MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, comm_), "MPI_Allreduce");
  return all == 1;
}

}  // namespace qarl::refit
#endif
