#include "qarl/refit/control.h"

#include <atomic>
#include <chrono>
#include <unistd.h>

#include "qarl/core/error.h"

namespace qarl::refit {

void send_control(Socket& s, const nlohmann::json& j) { s.send_frame(j.dump()); }

nlohmann::json recv_control(Socket& s) {
  std::string f = s.recv_frame();
  auto j = nlohmann::json::parse(f, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("type"))
    throw runtime_err("malformed refit control message");
  return j;
}

uint64_t new_refit_id() {
  static std::atomic<uint64_t> counter{0};
  uint64_t t = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
  return (uint64_t(::getpid()) << 40) ^ (t * 0x9E3779B97F4A7C15ull) ^ ++counter;
}

double refit_now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace qarl::refit
