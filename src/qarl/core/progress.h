// A progress reporter for long work. On a terminal it redraws one bar line on stderr; when
// stderr is not a terminal (CI, logs) it prints a plain line every `interval` seconds and at
// the end, so logs stay readable.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace qarl {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, double interval_seconds = 5.0);
  ~ProgressBar();
  void update(int64_t done, const std::string& status = "");
  void add(int64_t n = 1, const std::string& status = "") { update(done_ + n, status); }
  void finish(const std::string& status = "");
  // Force the mode (tests); by default it follows isatty(stderr).
  void set_tty(bool tty) { tty_ = tty; }
  // QARL_PROGRESS=0 silences every bar (for scripts); =1 forces periodic lines.
  static bool enabled();

 private:
  void draw(const std::string& status, bool final);
  std::string label_;
  int64_t total_, done_ = 0;
  double interval_;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_print_;
};

}  // namespace qarl
