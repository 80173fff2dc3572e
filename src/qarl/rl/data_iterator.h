// A deterministic iterator over the problems of a source, resumable from its position.
// For a finite source each epoch visits every problem once, in an order that is a seeded
// permutation of the epoch (Fisher-Yates with SequentialRng(seed, epoch)) or the file order;
// an unbounded (procedural) source is read at index = position. The whole state is the
// position (number of problems handed out), so a checkpoint stores one integer.
#pragma once
#include <cstdint>
#include <vector>

namespace qarl::rl {

class DataIterator {
 public:
  // size == 0: unbounded source.
  DataIterator(uint64_t size, uint64_t seed, bool shuffle);
  uint64_t next();                      // the next problem index
  std::vector<uint64_t> next_batch(uint64_t n);
  uint64_t position() const { return position_; }
  void set_position(uint64_t p) { position_ = p; }
  uint64_t epoch() const { return size_ ? position_ / size_ : 0; }
  // The index handed out at `position` (pure; does not move the iterator).
  uint64_t index_at(uint64_t position) const;

 private:
  const std::vector<uint64_t>& order_for(uint64_t epoch) const;
  uint64_t size_, seed_;
  bool shuffle_;
  uint64_t position_ = 0;
  mutable uint64_t cached_epoch_ = UINT64_MAX;
  mutable std::vector<uint64_t> order_;
};

}  // namespace qarl::rl
