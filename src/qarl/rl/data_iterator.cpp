#include "qarl/rl/data_iterator.h"

#include <numeric>

#include "qarl/core/rng.h"

namespace qarl::rl {

// Keeps the shuffle apart from other users of the run seed.
constexpr uint64_t kShuffleStreamBase = 0x5348554600000000ull;  // "SHUF"

DataIterator::DataIterator(uint64_t size, uint64_t seed, bool shuffle)
    : size_(size), seed_(seed), shuffle_(shuffle) {}

const std::vector<uint64_t>& DataIterator::order_for(uint64_t epoch) const {
  if (cached_epoch_ != epoch) {
    order_.resize(size_);
    std::iota(order_.begin(), order_.end(), uint64_t(0));
    if (shuffle_) {
      SequentialRng rng(seed_, kShuffleStreamBase + epoch);
      for (uint64_t i = size_; i > 1; --i) std::swap(order_[i - 1], order_[rng.below(i)]);
    }
    cached_epoch_ = epoch;
  }
  return order_;
}

uint64_t DataIterator::index_at(uint64_t position) const {
  if (size_ == 0) return position;
  return order_for(position / size_)[position % size_];
}

uint64_t DataIterator::next() { return index_at(position_++); }

std::vector<uint64_t> DataIterator::next_batch(uint64_t n) {
  std::vector<uint64_t> out(n);
  for (auto& v : out) v = next();
  return out;
}

}  // namespace qarl::rl
