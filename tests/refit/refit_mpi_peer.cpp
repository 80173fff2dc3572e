// Packed refit over MPI broadcast, run by ctest as
//   mpirun --allow-run-as-root --oversubscribe -np N refit_mpi_peer
// Rank 0 is the trainer; every other rank receives (a) the "mixed" case and checks it
// bitwise, (b) a tiny model refit into a fake engine through the strict loader and checks it
// against an in-process reference load. Exit status 0 only when every rank succeeded.
#include <cstdio>

#include <mpi.h>

#include "qarl/core/error.h"
#include "qarl/refit/mpi_wire.h"
#include "qarl/refit/refit.h"
#include "refit/refit_fakes.h"
#include "refit/transport_cases.h"

using namespace qarl;
using namespace qarl::refit;

namespace {

test::TinyConfig model_config(uint64_t seed) {
  test::TinyConfig c;
  c.seed = seed;
  c.input_quant = true;
  c.layers = 3;
  c.hidden = 24;
  c.inter = 40;
  return c;
}

int run(int rank) {
  MpiBroadcastWire wire(MPI_COMM_WORLD, 0);
  uint64_t seed = 0;
  if (rank == 0) seed = uint64_t(getpid()) * 2654435761u;
  MPI_Bcast(&seed, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  int failures = 0;

  // (a) mixed dtypes, scalars, misaligned slices, several batches and a partial one.
  auto want = test::make_case("mixed", seed);
  RefitMetadata meta = test::metadata_of(want);
  if (rank == 0) {
    PackedSender tx(wire, meta, 1500);
    for (const auto& t : want) tx.push(t.name, t.tensor);
    TransferStats s = tx.finish();
    std::printf("rank 0 mixed: %s\n", describe(s).c_str());
  } else {
    PackedReceiver rx(wire, meta, 1500);
    std::vector<NamedTensor> got;
    NamedTensor nt;
    while (rx.next(nt)) got.push_back(nt);
    rx.acknowledge();
    std::string diff = test::compare_streams(want, got);
    if (!diff.empty()) {
      std::fprintf(stderr, "rank %d mixed mismatch (seed %llu): %s\n", rank,
                   (unsigned long long)seed, diff.c_str());
      ++failures;
    }
  }

  // (b) a model refit through the strict loader.
  test::TinyConfig c = model_config(seed);
  auto plan = plan_export(test::FakeTrainer(c));
  RefitMetadata mmeta = export_metadata(plan);
  if (rank == 0) {
    PackedSender tx(wire, mmeta, 4096);
    std::printf("rank 0 model: %s\n", describe(send_refit(plan, tx)).c_str());
  } else {
    test::FakeEngine engine(c), reference(c);
    StrictLoader loader(engine, NameMapper::dense());
    loader.check_metadata(mmeta);
    PackedReceiver rx(wire, mmeta, 4096);
    receive_refit(rx, loader);
    StrictLoader ref(reference, NameMapper::dense());
    ref.begin();
    for_each_export(plan, [&](const std::string& n, const Tensor& t) { ref.load(n, t); });
    ref.finish();
    if (!engine.same_as(reference.snapshot())) {
      std::fprintf(stderr, "rank %d: engine differs from the reference\n", rank);
      ++failures;
    }
  }
  return failures;
}

}  // namespace

int main(int argc, char** argv) {
  // SERIALIZED lets the packed sender broadcast from its background thread.
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int failures = 0;
  try {
    failures = run(rank);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: error: %s\n", rank, e.what());
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  int total = 0;
  MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) std::printf("refit over MPI: %s\n", total == 0 ? "ok" : "FAILED");
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}
