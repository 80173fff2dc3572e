#include "qarl/refit/refit.h"

#include <fmt/format.h>

namespace qarl::refit {

TransferStats send_refit(const std::vector<ExportItem>& plan, RefitSender& sender) {
  for_each_export(plan, [&](const std::string& n, const Tensor& t) { sender.push(n, t); });
  return sender.finish();
}

RefitResult receive_refit(RefitReceiver& receiver, StrictLoader& loader) {
  RefitResult r;
  loader.begin();
  try {
    NamedTensor nt;
    while (receiver.next(nt)) loader.load(nt.name, nt.tensor);
    r.load = loader.finish();  // validation, then commit
  } catch (const std::exception& e) {
    loader.abort();
    receiver.abandon(e.what());  // keeps the connection in step and tells the sender
    throw;
  }
  receiver.acknowledge();
  r.transfer = receiver.stats();
  return r;
}

std::string describe(const TransferStats& s) {
  return fmt::format("refit: {:.1f} MB in {:.3f} s ({:.2f} GB/s), {} batches, {} tensors",
                     double(s.bytes) / 1e6, s.seconds, s.gb_per_s(), s.batches, s.tensors);
}

}  // namespace qarl::refit
