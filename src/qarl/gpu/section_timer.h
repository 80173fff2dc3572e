// Where the GPU model's time goes: per-section GPU time of a forward / backward, measured with
// CUDA events on the default stream. `qarl bench` (case model) prints the table for one
// training step; it is how the next optimization is chosen ("measure, don't guess").
//
// Sections are marks: gpu::section("bwd.attention") starts a section that runs until the next
// mark (or the timer's end). With no SectionTimer alive on this thread, a mark is one
// thread-local pointer test, so the marks stay in the model code at no cost.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace qarl::gpu {

class SectionTimer {
 public:
  SectionTimer();  // becomes the active timer of this thread (at most one)
  ~SectionTimer();
  SectionTimer(const SectionTimer&) = delete;
  SectionTimer& operator=(const SectionTimer&) = delete;

  void mark(const char* name);  // what section() calls; name must be a string literal
  // Ends the last section, synchronizes, and returns the seconds per section name, summed
  // over every time it ran, in the order the names first appeared.
  std::vector<std::pair<std::string, double>> totals();

 private:
  struct Mark {
    const char* name;
    void* event;
  };
  std::vector<Mark> marks_;
  std::vector<void*> pool_;  // events, reused across marks
  size_t used_ = 0;
};

// Starts section `name` on the active timer of this thread, if any.
void section(const char* name);

// The table totals() returns, as text: one line per section with ms and share of the total.
std::string format_sections(const std::vector<std::pair<std::string, double>>& totals);

}  // namespace qarl::gpu
