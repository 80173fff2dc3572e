#include "qarl/refit/loader.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "qarl/core/error.h"

namespace qarl::refit {
namespace {

bool under_prefix(const std::string& name, const std::string& prefix) {
  return name == prefix || (name.size() > prefix.size() && name.rfind(prefix, 0) == 0 &&
                            name[prefix.size()] == '.');
}

bool is_amax(ParamKind k) { return k == ParamKind::InputAmax || k == ParamKind::KvAmax; }

bool fan_in(const RuntimeParam& p) { return p.kind == ParamKind::InputAmax && !p.shards.empty(); }

void check_amax_values(const Tensor& t, const std::string& name, const char* what) {
  for (double v : t.to_f64_vector())
    if (!std::isfinite(v) || !(v > 0))
      throw runtime_err("{} is {}: must be finite and > 0", what, v).tensor(name);
}

std::string shard_label(const RuntimeParam& p, int shard) {
  return shard < 0 ? p.name : p.name + " (shard " + p.shards[size_t(shard)].id + ")";
}

}  // namespace

StrictLoader::StrictLoader(RefitTarget& target, NameMapper mapper)
    : target_(target), mapper_(std::move(mapper)) {
  params_ = target_.runtime_params();
  non_local_ = target_.non_local_prefixes();
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    if (!index_.emplace(p.name, i).second)
      throw Error("runtime tensor declared twice by the target", ErrorKind::Internal)
          .tensor(p.name);
    if (is_amax(p.kind) && !dtype_is_float(p.dtype))
      throw Error("amax must have a float dtype", ErrorKind::Internal).tensor(p.name);
    if (!p.shards.empty() && !fan_in(p) && p.shape.empty())
      throw Error("row shards of a 0-d tensor", ErrorKind::Internal).tensor(p.name);
  }
}

StrictLoader::~StrictLoader() {
  if (state_ == State::Staging) {
    try { target_.abort(); } catch (...) {}
  }
}

StrictLoader::Resolved StrictLoader::resolve(const std::string& hf_name, const Shape& shape,
                                             DType dtype) const {
  std::optional<MappedName> mapped = mapper_.map(hf_name);
  if (!mapped) return {Resolved::Ignored};
  for (const auto& prefix : non_local_)
    if (under_prefix(mapped->runtime_name, prefix)) return {Resolved::SkipNonLocal};
  auto it = index_.find(mapped->runtime_name);
  if (it == index_.end())
    throw runtime_err("maps to runtime name '{}', which this rollout shard does not have",
                      mapped->runtime_name)
        .tensor(hf_name);
  const RuntimeParam& p = params_[it->second];
  Resolved r{Resolved::Load, it->second, -1};
  Shape want = p.shape;
  if (p.shards.empty()) {
    if (!mapped->shard_id.empty())
      throw runtime_err("arrives as shard '{}' of '{}', which is not fused", mapped->shard_id,
                        p.name)
          .tensor(hf_name);
  } else {
    for (size_t s = 0; s < p.shards.size(); ++s)
      if (p.shards[s].id == mapped->shard_id) r.shard = int(s);
    if (r.shard < 0)
      throw runtime_err("'{}' is fused and has no shard '{}'", p.name, mapped->shard_id)
          .tensor(hf_name);
    if (!fan_in(p)) want[0] = p.shards[size_t(r.shard)].rows;
  }
  if (shape != want || dtype != p.dtype)
    throw runtime_err("is {} {} but {} needs {} {}", dtype_name(dtype), shape_str(shape),
                      shard_label(p, r.shard), dtype_name(p.dtype), shape_str(want))
        .tensor(hf_name);
  return r;
}

void StrictLoader::check_metadata(const RefitMetadata& meta) const {
  std::vector<std::vector<bool>> seen(params_.size());
  for (size_t i = 0; i < params_.size(); ++i)
    seen[i].assign(std::max<size_t>(1, params_[i].shards.size()), false);
  for (const auto& m : meta) {
    Resolved r = resolve(m.name, m.shape, m.dtype);
    if (r.what != Resolved::Load) continue;
    auto slot = seen[r.param].begin() + std::max(0, r.shard);
    if (*slot)
      throw runtime_err("duplicate: {} is filled twice", shard_label(params_[r.param], r.shard))
          .tensor(m.name);
    *slot = true;
  }
  for (size_t i = 0; i < params_.size(); ++i)
    for (size_t s = 0; s < seen[i].size(); ++s)
      if (!seen[i][s])
        throw runtime_err("missing from the refit metadata")
            .tensor(shard_label(params_[i], params_[i].shards.empty() ? -1 : int(s)));
}

void StrictLoader::begin() {
  if (state_ == State::Staging) throw Error("refit already begun", ErrorKind::Internal);
  seen_.assign(params_.size(), {});
  for (size_t i = 0; i < params_.size(); ++i)
    seen_[i].assign(std::max<size_t>(1, params_[i].shards.size()), false);
  report_ = {};
  target_.begin_stage();
  state_ = State::Staging;
  try {
    // Fresh state per refit: a K/V amax that this refit does not deliver stays at the
    // sentinel and fails validation instead of silently keeping an old or dummy value.
    for (const auto& p : params_)
      if (p.kind == ParamKind::KvAmax) target_.staged(p.name).fill_f32(kAmaxSentinel);
  } catch (...) {
    abort();
    throw;
  }
}

void StrictLoader::load(const std::string& hf_name, const Tensor& tensor) {
  if (state_ != State::Staging)
    throw runtime_err("load() outside a refit (begin() missing, or the refit already failed)")
        .tensor(hf_name);
  try {
    load_impl(hf_name, tensor);
  } catch (...) {
    abort();
    throw;
  }
}

void StrictLoader::load_impl(const std::string& hf_name, const Tensor& tensor) {
  if (!tensor.defined()) throw runtime_err("undefined tensor").tensor(hf_name);
  Resolved r = resolve(hf_name, tensor.shape(), tensor.dtype());
  if (r.what == Resolved::SkipNonLocal) { ++report_.skipped_non_local; return; }
  if (r.what == Resolved::Ignored) { ++report_.ignored; return; }
  const RuntimeParam& p = params_[r.param];
  auto slot = seen_[r.param].begin() + std::max(0, r.shard);
  if (*slot)
    throw runtime_err("duplicate: {} is filled twice", shard_label(p, r.shard)).tensor(hf_name);
  if (is_amax(p.kind)) check_amax_values(tensor, hf_name, "incoming amax");

  Tensor dst = target_.staged(p.name);
  QARL_ASSERT(dst.shape() == p.shape && dst.dtype() == p.dtype,
              "staged '{}' is {} {}", p.name, dtype_name(dst.dtype()), shape_str(dst.shape()));
  if (r.shard < 0) {
    dst.copy_from(tensor);
  } else if (!fan_in(p)) {
    const ShardSlot& s = p.shards[size_t(r.shard)];
    dst.narrow0(s.row_offset, s.rows).copy_from(tensor);
  } else {
    // Fan-in amax (one fused input quantizer fed by several HF projections): max merge.
    // The first shard to arrive overwrites whatever was staged.
    bool first = std::none_of(seen_[r.param].begin(), seen_[r.param].end(),
                              [](bool b) { return b; });
    Tensor src = tensor.device() == Device::CPU ? tensor : tensor.to_device(Device::CPU);
    Tensor cur = dst.device() == Device::CPU ? dst : dst.to_device(Device::CPU);
    auto a = cur.to_f64_vector(), b = src.to_f64_vector();
    size_t es = dtype_size(p.dtype);
    Tensor merged = cur.clone();
    for (size_t i = 0; i < a.size(); ++i)
      if (first || b[i] > a[i])
        std::memcpy(static_cast<char*>(merged.data()) + i * es,
                    static_cast<const char*>(src.data()) + i * es, es);
    dst.copy_from(merged);
  }
  *slot = true;
  ++report_.loaded;
}

LoadReport StrictLoader::finish() {
  if (state_ != State::Staging) throw runtime_err("finish() outside a refit");
  try {
    return finish_impl();
  } catch (...) {
    abort();
    throw;
  }
}

LoadReport StrictLoader::finish_impl() {
  for (size_t i = 0; i < params_.size(); ++i)
    for (size_t s = 0; s < seen_[i].size(); ++s)
      if (!seen_[i][s])
        throw runtime_err("missing: this refit did not deliver it")
            .tensor(shard_label(params_[i], params_[i].shards.empty() ? -1 : int(s)));
  for (const auto& p : params_) {
    if (p.kind != ParamKind::KvAmax) continue;
    Tensor v = target_.staged(p.name);
    for (double x : v.to_f64_vector())
      if (!std::isfinite(x) || !(x > 0))
        throw runtime_err("K/V amax after refit is {} (uninitialized or non-positive; the "
                          "sentinel is {})", x, kAmaxSentinel)
            .tensor(p.name);
    ++report_.kv_amax_validated;
  }
  target_.commit();
  state_ = State::Done;
  return report_;
}

void StrictLoader::abort() {
  if (state_ != State::Staging) return;
  state_ = State::Done;
  target_.abort();
}

}  // namespace qarl::refit
