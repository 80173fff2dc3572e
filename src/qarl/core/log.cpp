#include "qarl/core/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

namespace qarl {
namespace {
LogLevel initial_level() {
  const char* env = std::getenv("QARL_LOG");
  LogLevel l = LogLevel::Info;
  if (env) parse_log_level(env, &l);
  return l;
}
std::atomic<int> g_level{int(initial_level())};
std::mutex g_mutex;
}  // namespace

void set_log_level(LogLevel level) { g_level = int(level); }
LogLevel log_level() { return LogLevel(g_level.load()); }

bool parse_log_level(std::string_view s, LogLevel* out) {
  if (s == "error") *out = LogLevel::Error;
  else if (s == "warn") *out = LogLevel::Warn;
  else if (s == "info") *out = LogLevel::Info;
  else if (s == "debug") *out = LogLevel::Debug;
  else return false;
  return true;
}

void log_write(LogLevel level, std::string_view message) {
  static const char* kTag[] = {"error", "warn", "info", "debug"};
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "[qarl %s] %.*s\n", kTag[int(level)], int(message.size()), message.data());
  std::fflush(stderr);
}

}  // namespace qarl
