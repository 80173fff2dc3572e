#include "qarl/refit/staging_protocol.h"

#include "qarl/refit/control.h"
#include "qarl/refit/device_copy.h"

namespace qarl::refit {

using json = nlohmann::json;

// ---- sender ------------------------------------------------------------------------------

StagingSenderBase::StagingSenderBase(Socket& control, RefitMetadata meta,
                                     std::unique_ptr<StagingSenderBuffers> buffers)
    : ctl_(control), id_(new_refit_id()), meta_(std::move(meta)), bufs_(std::move(buffers)),
      buffer_bytes_(bufs_->bytes()) {
  json hello = {{"type", "hello"},
                {"id", id_},
                {"bytes", buffer_bytes_},
                {"count", meta_.size()},
                {"fingerprint", metadata_fingerprint(meta_)}};
  bufs_->describe(hello);
  send_control(ctl_, hello);
  expect_ack("hello");
}

StagingSenderBase::~StagingSenderBase() {
  if (finished_) return;
  try {
    send_control(ctl_, {{"type", "abort"}, {"id", id_}});
  } catch (...) {
  }
}

// An ACK of this refit, or the receiver's error turned into ours; frames of an earlier
// refit (abandoned by the receiver) are skipped.
void StagingSenderBase::expect_ack(const char* what) {
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

void StagingSenderBase::wait_one_ack() {
  QARL_ASSERT(!pending_.empty(), "no buffer in flight");
  expect_ack("buffer");
  int b = pending_.front();
  pending_.pop_front();
  if (b >= 0) in_flight_[b] = false;
}

void StagingSenderBase::wait_buffer_free(int b) {
  while (in_flight_[b]) wait_one_ack();
}

void StagingSenderBase::flush() {
  if (names_.empty()) return;
  bufs_->seal(cur_);  // e.g. the event the receiver waits on before touching the buffer
  send_control(ctl_, {{"type", "batch"}, {"id", id_}, {"buffer", cur_}, {"names", names_}, {"used", used_}});
  in_flight_[cur_] = true;
  pending_.push_back(cur_);
  ++stats_.batches;
  cur_ ^= 1;
  used_ = 0;
  names_.clear();
}

void StagingSenderBase::push(const std::string& name, const Tensor& tensor) {
  if (t0_ < 0) t0_ = refit_now_s();
  if (next_ >= meta_.size())
    throw runtime_err("pushed beyond the end of the refit metadata ({} tensors)", meta_.size())
        .tensor(name);
  check_matches_meta(meta_[next_], name, tensor);
  const size_t n = tensor.nbytes(), aligned = align_up(n, kStagingAlignment);
  if (aligned > buffer_bytes_) {
    // Oversized: alone in a temporary allocation, synchronously.
    flush();
    json msg = {{"type", "batch"}, {"id", id_}, {"bytes", aligned}, {"names", {name}}, {"used", aligned}};
    std::shared_ptr<void> tmp = bufs_->temporary(tensor, aligned, msg);
    send_control(ctl_, msg);
    pending_.push_back(-1);
    ++stats_.batches;
    while (!pending_.empty()) wait_one_ack();  // the receiver is done with the temporary
  } else {
    if (used_ + aligned > buffer_bytes_) flush();
    if (used_ == 0) wait_buffer_free(cur_);
    bufs_->copy_in(cur_, used_, tensor);
    names_.push_back(name);
    used_ += aligned;
  }
  ++next_;
  stats_.bytes += n;
  ++stats_.tensors;
}

TransferStats StagingSenderBase::finish() {
  if (t0_ < 0) t0_ = refit_now_s();
  if (next_ != meta_.size())
    throw runtime_err("refit stream ended after {} of {} tensors; next expected '{}'", next_,
                      meta_.size(), meta_[next_].name);
  flush();
  while (!pending_.empty()) wait_one_ack();
  send_control(ctl_, {{"type", "complete"}, {"id", id_}, {"count", next_}, {"bytes", stats_.bytes}});
  finished_ = true;  // from here on a failure is the receiver's verdict, already known to it
  expect_ack("complete");
  stats_.seconds = refit_now_s() - t0_;
  return stats_;
}

// ---- receiver ----------------------------------------------------------------------------

StagingReceiverBase::StagingReceiverBase(Socket& control, RefitMetadata meta,
                                         std::unique_ptr<StagingReceiverBuffers> buffers,
                                         Device yield)
    : ctl_(control), meta_(std::move(meta)), bufs_(std::move(buffers)), yield_(yield) {
  json h;
  do {  // leftovers of an earlier refit that this side abandoned are skipped
    h = recv_control(ctl_);
  } while (h["type"] != "hello");
  id_ = h.value("id", uint64_t(0));
  try {
    bufs_->check_hello(h);
    if (h.value("fingerprint", uint64_t(0)) != metadata_fingerprint(meta_) ||
        h.value("count", size_t(0)) != meta_.size())
      throw runtime_err("sender and receiver hold different refit metadata ({} vs {} tensors)",
                        h.value("count", size_t(0)), meta_.size());
    bufs_->open(h);
  } catch (Error& e) {
    fail(e);
  } catch (const std::exception& e) {
    fail(runtime_err("bad {} hello: {}", bufs_->kind(), e.what()));
  }
  send_control(ctl_, {{"type", "ack"}, {"id", id_}});
}

StagingReceiverBase::~StagingReceiverBase() {
  if (!done_) abandon("receiver destroyed before the end of the refit");
}

void StagingReceiverBase::abandon(const std::string& why) noexcept {
  if (done_) return;
  done_ = true;
  try {
    send_control(ctl_, {{"type", "error"}, {"id", id_}, {"message", why}});
  } catch (...) {
  }
}

void StagingReceiverBase::fail(Error e) {
  // Tell the sender why before giving up, so both sides name the same tensor.
  try {
    json j = {{"type", "error"}, {"id", id_}, {"message", e.message()}};
    if (!e.tensor().empty()) j["tensor"] = e.tensor();
    send_control(ctl_, j);
  } catch (...) {
  }
  done_ = true;
  throw e;
}

void StagingReceiverBase::ack() {
  bufs_->before_ack();  // e.g. the consumer's device reads of the buffer finish first
  batch_mem_ = {};      // a temporary allocation is closed before the sender frees it
  send_control(ctl_, {{"type", "ack"}, {"id", id_}});
  need_ack_ = false;
}

void StagingReceiverBase::acknowledge() {
  if (done_) throw runtime_err("refit already acknowledged or abandoned");
  if (!end_) throw runtime_err("acknowledge() before the end of the refit stream");
  send_control(ctl_, {{"type", "ack"}, {"id", id_}});  // the final ACK (no buffer is held)
  done_ = true;
  stats_.seconds = refit_now_s() - t0_;
}

bool StagingReceiverBase::next(NamedTensor& out) {
  out.tensor = Tensor();  // drop the caller's previous view
  if (done_ || end_) return false;
  if (t0_ < 0) t0_ = refit_now_s();
  if (batch_pos_ < batch_.size()) {
    auto [i, off] = batch_[batch_pos_++];
    const TensorMeta& m = meta_[i];
    out.name = m.name;
    Tensor view = Tensor::borrow(batch_mem_.data + off, m.shape, m.dtype, batch_mem_.owner,
                                 batch_mem_.device);
    out.tensor = on_device(view, yield_);
    stats_.bytes += m.nbytes();
    ++stats_.tensors;
    return true;
  }
  if (need_ack_) ack();  // the consumer moved past the whole buffer
  json j = recv_control(ctl_);
  try {
    if (j["type"] == "complete") {
      if (next_ != meta_.size() || j["count"].get<size_t>() != meta_.size() ||
          j["bytes"].get<size_t>() != metadata_total_bytes(meta_))
        throw runtime_err("incomplete refit: received {} of {} tensors (sender says {})", next_,
                          meta_.size(), j["count"].get<size_t>());
      end_ = true;  // the final ACK waits for the consumer's verdict (acknowledge/abandon)
      return false;
    }
    if (j["type"] == "abort")
      throw runtime_err("the trainer aborted this refit after {} tensors (see its log)", next_);
    if (j["type"] != "batch") throw runtime_err("unexpected control message {}", j["type"].dump());
    if (!bufs_->temporary(j, batch_mem_)) {
      int b = j["buffer"].get<int>();
      if (b != 0 && b != 1) throw runtime_err("bad staging buffer id {}", b);
      batch_mem_ = bufs_->buffer(b);
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
    if (names.empty() || off != used || used > batch_mem_.bytes)
      throw runtime_err("staging buffer offsets disagree: computed {} bytes, sender says {} "
                        "(buffer {} bytes)", off, used, batch_mem_.bytes);
  } catch (Error& e) {
    fail(e);
  } catch (const std::exception& e) {
    fail(runtime_err("bad {} control message: {}", bufs_->kind(), e.what()));
  }
  need_ack_ = true;
  ++stats_.batches;
  return next(out);
}

}  // namespace qarl::refit
