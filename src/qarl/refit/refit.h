// One refit end to end: the trainer sends its export plan through a transport; the rollout
// side receives and loads strictly, committing only after the transport's end-of-stream
// checks and the loader's checks all passed.
//
//   trainer:  auto plan = plan_export(trainer);  RefitMetadata meta = export_metadata(plan);
//             (meta reaches the rollout once, at setup, like prepare_refit_info)
//             PackedSender tx(wire, meta, target);  TransferStats s = send_refit(plan, tx);
//   rollout:  StrictLoader loader(engine, NameMapper::dense());  loader.check_metadata(meta);
//             PackedReceiver rx(wire, meta, target);  RefitResult r = receive_refit(rx, loader);
#pragma once
#include <string>
#include <vector>

#include "qarl/refit/export.h"
#include "qarl/refit/loader.h"
#include "qarl/refit/transport.h"

namespace qarl::refit {

TransferStats send_refit(const std::vector<ExportItem>& plan, RefitSender& sender);

struct RefitResult {
  TransferStats transfer;
  LoadReport load;
};
// begin, load everything the receiver yields, finish (commit). On any error the loader
// aborts (serving state unchanged) and the Error propagates.
RefitResult receive_refit(RefitReceiver& receiver, StrictLoader& loader);

// "refit: 312.4 MB in 0.153 s (2.04 GB/s), 5 batches, 291 tensors"
std::string describe(const TransferStats& s);

}  // namespace qarl::refit
