#include "qarl/core/progress.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <fmt/format.h>

#include "qarl/core/env.h"

namespace qarl {

bool ProgressBar::enabled() {
  const auto v = env_choice("QARL_PROGRESS");
  return !(v && *v == "0");
}

ProgressBar::ProgressBar(std::string label, int64_t total, double interval_seconds)
    : label_(std::move(label)), total_(total), interval_(interval_seconds),
      tty_(isatty(STDERR_FILENO) != 0), start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

ProgressBar::~ProgressBar() {
  if (!finished_ && done_ > 0) finish();
}

void ProgressBar::update(int64_t done, const std::string& status) {
  done_ = done;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_print_).count();
  if (tty_ ? since >= 0.1 : since >= interval_) {
    last_print_ = now;
    draw(status, false);
  }
}

void ProgressBar::finish(const std::string& status) {
  if (finished_) return;
  finished_ = true;
  draw(status, true);
}

void ProgressBar::draw(const std::string& status, bool final) {
  if (!enabled()) return;
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double frac = total_ > 0 ? double(done_) / double(total_) : 0.0;
  if (frac > 1) frac = 1;
  double rate = elapsed > 0 ? double(done_) / elapsed : 0.0;
  double eta = (rate > 0 && total_ > done_) ? double(total_ - done_) / rate : 0.0;
  std::string line;
  if (tty_) {
    constexpr int kWidth = 28;
    int filled = int(frac * kWidth);
    std::string bar(size_t(filled), '#');
    bar.resize(kWidth, '.');
    line = fmt::format("\r{} [{}] {}/{} {:.1f}/s eta {:.0f}s {}\x1b[K", label_, bar, done_,
                       total_, rate, eta, status);
    if (final) line += "\n";
  } else {
    line = fmt::format("{}: {}/{} ({:.0f}%) {:.1f}/s elapsed {:.0f}s{} {}\n", label_, done_,
                       total_, frac * 100, rate, elapsed, final ? "" : fmt::format(" eta {:.0f}s", eta),
                       status);
  }
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace qarl
