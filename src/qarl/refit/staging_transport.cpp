#include "qarl/refit/staging_transport.h"

#include <cstring>

#include <nlohmann/json.hpp>

#include "qarl/core/error.h"
#include "qarl/refit/control.h"
#include "qarl/refit/device_copy.h"

namespace qarl::refit {
namespace {
using json = nlohmann::json;
void send_json(Socket& s, const json& j) { send_control(s, j); }
json recv_json(Socket& s) { return recv_control(s); }
double now_s() { return refit_now_s(); }
}  // namespace

// An ACK of this refit, or the receiver's error turned into ours; frames of an earlier
// refit (abandoned by the receiver) are skipped.
void StagingSender::expect_ack(const char* what) {
  json j;
  do {
    j = recv_json(ctl_);
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

std::shared_ptr<StagingBuffers> StagingBuffers::create(size_t bytes) {
  if (bytes < kStagingAlignment || bytes % kStagingAlignment)
    throw usage_err("staging buffer size {} must be a positive multiple of {}", bytes,
                    kStagingAlignment);
  auto p = std::make_shared<StagingBuffers>();
  p->bytes = bytes;
  for (int b = 0; b < 2; ++b) p->seg[b] = ShmSegment::create(unique_shm_name(fmt::format("buf{}", b)), bytes);
  return p;
}

StagingSender::StagingSender(Socket& control, RefitMetadata meta, size_t buffer_bytes)
    : StagingSender(control, std::move(meta), StagingBuffers::create(buffer_bytes)) {}

StagingSender::StagingSender(Socket& control, RefitMetadata meta,
                             std::shared_ptr<StagingBuffers> buffers)
    : ctl_(control), id_(new_refit_id()), meta_(std::move(meta)), buffer_bytes_(buffers->bytes),
      pool_(buffers) {
  for (int b = 0; b < 2; ++b) buf_[b] = pool_->seg[b];
  send_json(ctl_, {{"type", "hello"},
                   {"id", id_},
                   {"segments", {buf_[0]->name(), buf_[1]->name()}},
                   {"bytes", buffer_bytes_},
                   {"count", meta_.size()},
                   {"fingerprint", metadata_fingerprint(meta_)}});
  expect_ack("hello");
}

StagingSender::~StagingSender() {
  if (finished_) return;
  try {
    send_json(ctl_, {{"type", "abort"}, {"id", id_}});
  } catch (...) {
  }
}

void StagingSender::wait_one_ack() {
  QARL_ASSERT(!pending_.empty(), "no buffer in flight");
  expect_ack("buffer");
  int b = pending_.front();
  pending_.pop_front();
  if (b >= 0) in_flight_[b] = false;
}

void StagingSender::wait_buffer_free(int b) {
  while (in_flight_[b]) wait_one_ack();
}

void StagingSender::flush() {
  if (names_.empty()) return;
  send_json(ctl_, {{"type", "batch"}, {"id", id_}, {"buffer", cur_}, {"names", names_}, {"used", used_}});
  in_flight_[cur_] = true;
  pending_.push_back(cur_);
  ++stats_.batches;
  cur_ ^= 1;
  used_ = 0;
  names_.clear();
}

void StagingSender::push(const std::string& name, const Tensor& tensor) {
  if (t0_ < 0) t0_ = now_s();
  if (next_ >= meta_.size())
    throw runtime_err("pushed beyond the end of the refit metadata ({} tensors)", meta_.size())
        .tensor(name);
  check_matches_meta(meta_[next_], name, tensor);
  const size_t n = tensor.nbytes(), aligned = align_up(n, kStagingAlignment);
  if (aligned > buffer_bytes_) {
    // Oversized: alone in a temporary segment, synchronously.
    flush();
    auto tmp = ShmSegment::create(unique_shm_name("tmp"), aligned);
    copy_to_host(tmp->data(), tensor);
    send_json(ctl_, {{"type", "batch"}, {"id", id_}, {"segment", tmp->name()}, {"bytes", aligned},
                     {"names", {name}}, {"used", aligned}});
    pending_.push_back(-1);
    ++stats_.batches;
    while (!pending_.empty()) wait_one_ack();
  } else {
    if (used_ + aligned > buffer_bytes_) flush();
    if (used_ == 0) wait_buffer_free(cur_);
    copy_to_host(buf_[cur_]->data() + used_, tensor);
    names_.push_back(name);
    used_ += aligned;
  }
  ++next_;
  stats_.bytes += n;
  ++stats_.tensors;
}

TransferStats StagingSender::finish() {
  if (t0_ < 0) t0_ = now_s();
  if (next_ != meta_.size())
    throw runtime_err("refit stream ended after {} of {} tensors; next expected '{}'", next_,
                      meta_.size(), meta_[next_].name);
  flush();
  while (!pending_.empty()) wait_one_ack();
  send_json(ctl_, {{"type", "complete"}, {"id", id_}, {"count", next_}, {"bytes", stats_.bytes}});
  finished_ = true;  // from here on a failure is the receiver's verdict, already known to it
  expect_ack("complete");
  stats_.seconds = now_s() - t0_;
  return stats_;
}

StagingReceiver::StagingReceiver(Socket& control, RefitMetadata meta, StagingMappings* reuse,
                                 Device yield)
    : ctl_(control), meta_(std::move(meta)), yield_(yield) {
  json h;
  do {  // leftovers of an earlier refit that this side abandoned are skipped
    h = recv_json(ctl_);
  } while (h["type"] != "hello");
  id_ = h.value("id", uint64_t(0));
  try {
    if (h.value("fingerprint", uint64_t(0)) != metadata_fingerprint(meta_) ||
        h.value("count", size_t(0)) != meta_.size())
      throw runtime_err("sender and receiver hold different refit metadata ({} vs {} tensors)",
                        h.value("count", size_t(0)), meta_.size());
    size_t bytes = h["bytes"].get<size_t>();
    for (int b = 0; b < 2; ++b) {
      std::string name = h["segments"][b].get<std::string>();
      if (reuse) {
        auto it = reuse->by_name.find(name);
        if (it != reuse->by_name.end() && it->second->size() == bytes) {
          buf_[b] = it->second;
          continue;
        }
      }
      buf_[b] = ShmSegment::open(name, bytes);
      if (reuse) reuse->by_name[name] = buf_[b];
    }
  } catch (Error& e) {
    fail(e);
  } catch (const std::exception& e) {
    fail(runtime_err("bad staging hello: {}", e.what()));
  }
  send_json(ctl_, {{"type", "ack"}, {"id", id_}});
}

StagingReceiver::~StagingReceiver() {
  if (!done_) abandon("receiver destroyed before the end of the refit");
}

void StagingReceiver::abandon(const std::string& why) noexcept {
  if (done_) return;
  done_ = true;
  try {
    send_json(ctl_, {{"type", "error"}, {"id", id_}, {"message", why}});
  } catch (...) {
  }
}

void StagingReceiver::fail(Error e) {
  // Tell the sender why before giving up, so both sides name the same tensor.
  try {
    json j = {{"type", "error"}, {"id", id_}, {"message", e.message()}};
    if (!e.tensor().empty()) j["tensor"] = e.tensor();
    send_json(ctl_, j);
  } catch (...) {
  }
  done_ = true;
  throw e;
}

void StagingReceiver::ack() {
  send_json(ctl_, {{"type", "ack"}, {"id", id_}});
  need_ack_ = false;
}

void StagingReceiver::acknowledge() {
  if (done_) throw runtime_err("refit already acknowledged or abandoned");
  if (!end_) throw runtime_err("acknowledge() before the end of the refit stream");
  ack();
  done_ = true;
  stats_.seconds = now_s() - t0_;
}

bool StagingReceiver::next(NamedTensor& out) {
  if (done_ || end_) return false;
  if (t0_ < 0) t0_ = now_s();
  if (batch_pos_ < batch_.size()) {
    auto [i, off] = batch_[batch_pos_++];
    const TensorMeta& m = meta_[i];
    out.name = m.name;
    out.tensor = on_device(Tensor::borrow(batch_seg_->data() + off, m.shape, m.dtype, batch_seg_),
                           yield_);
    stats_.bytes += m.nbytes();
    ++stats_.tensors;
    return true;
  }
  if (need_ack_) ack();  // the consumer moved past the whole buffer
  json j = recv_json(ctl_);
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
    if (j.contains("segment")) {
      batch_seg_ = ShmSegment::open(j["segment"].get<std::string>(), j["bytes"].get<size_t>());
    } else {
      int b = j["buffer"].get<int>();
      if (b != 0 && b != 1) throw runtime_err("bad staging buffer id {}", b);
      batch_seg_ = buf_[b];
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
    if (names.empty() || off != used || used > batch_seg_->size())
      throw runtime_err("staging buffer offsets disagree: computed {} bytes, sender says {} "
                        "(buffer {} bytes)", off, used, batch_seg_->size());
  } catch (Error& e) {
    fail(e);
  } catch (const std::exception& e) {
    fail(runtime_err("bad staging control message: {}", e.what()));
  }
  need_ack_ = true;
  ++stats_.batches;
  return next(out);
}

}  // namespace qarl::refit
