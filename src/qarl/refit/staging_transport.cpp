#include "qarl/refit/staging_transport.h"

#include <nlohmann/json.hpp>

#include "qarl/core/error.h"
#include "qarl/refit/device_copy.h"

namespace qarl::refit {
namespace {

using json = nlohmann::json;

class ShmSenderBuffers : public StagingSenderBuffers {
 public:
  explicit ShmSenderBuffers(std::shared_ptr<StagingBuffers> pool) : pool_(std::move(pool)) {}
  size_t bytes() const override { return pool_->bytes; }
  void describe(json& hello) const override {
    hello["segments"] = json::array({pool_->seg[0]->name(), pool_->seg[1]->name()});
  }
  void copy_in(int b, size_t off, const Tensor& tensor) override {
    copy_to_host(pool_->seg[b]->data() + off, tensor);
  }
  std::shared_ptr<void> temporary(const Tensor& tensor, size_t bytes, json& msg) override {
    auto tmp = ShmSegment::create(unique_shm_name("tmp"), bytes);
    copy_to_host(tmp->data(), tensor);
    msg["segment"] = tmp->name();
    return tmp;
  }

 private:
  std::shared_ptr<StagingBuffers> pool_;
};

class ShmReceiverBuffers : public StagingReceiverBuffers {
 public:
  explicit ShmReceiverBuffers(StagingMappings* reuse) : reuse_(reuse) {}
  const char* kind() const override { return "staging"; }
  void open(const json& h) override {
    size_t bytes = h["bytes"].get<size_t>();
    for (int b = 0; b < 2; ++b) {
      std::string name = h["segments"][b].get<std::string>();
      if (reuse_) {
        auto it = reuse_->by_name.find(name);
        if (it != reuse_->by_name.end() && it->second->size() == bytes) {
          buf_[b] = it->second;
          continue;
        }
      }
      buf_[b] = ShmSegment::open(name, bytes);
      if (reuse_) reuse_->by_name[name] = buf_[b];
    }
  }
  bool temporary(const json& msg, StagingBatchMemory& out) override {
    if (!msg.contains("segment")) return false;
    out = memory(ShmSegment::open(msg["segment"].get<std::string>(), msg["bytes"].get<size_t>()));
    return true;
  }
  StagingBatchMemory buffer(int b) override { return memory(buf_[b]); }

 private:
  static StagingBatchMemory memory(std::shared_ptr<ShmSegment> seg) {
    char* data = seg->data();
    size_t bytes = seg->size();
    return {std::move(seg), data, bytes, Device::CPU};
  }
  StagingMappings* reuse_;
  std::shared_ptr<ShmSegment> buf_[2];
};

}  // namespace

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
    : StagingSenderBase(control, std::move(meta),
                        std::make_unique<ShmSenderBuffers>(std::move(buffers))) {}

StagingReceiver::StagingReceiver(Socket& control, RefitMetadata meta, StagingMappings* reuse,
                                 Device yield)
    : StagingReceiverBase(control, std::move(meta), std::make_unique<ShmReceiverBuffers>(reuse),
                          yield) {}

}  // namespace qarl::refit
