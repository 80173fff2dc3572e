// Logging to stderr. Level from --log-level or QARL_LOG (error|warn|info|debug).
#pragma once
#include <string_view>
#include <fmt/format.h>

namespace qarl {

enum class LogLevel { Error = 0, Warn = 1, Info = 2, Debug = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
bool parse_log_level(std::string_view s, LogLevel* out);
void log_write(LogLevel level, std::string_view message);

template <typename... Args>
void log_at(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
  if (level <= log_level()) log_write(level, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_info(fmt::format_string<Args...> f, Args&&... a) { log_at(LogLevel::Info, f, std::forward<Args>(a)...); }
template <typename... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... a) { log_at(LogLevel::Warn, f, std::forward<Args>(a)...); }
template <typename... Args>
void log_error(fmt::format_string<Args...> f, Args&&... a) { log_at(LogLevel::Error, f, std::forward<Args>(a)...); }
template <typename... Args>
void log_debug(fmt::format_string<Args...> f, Args&&... a) { log_at(LogLevel::Debug, f, std::forward<Args>(a)...); }

}  // namespace qarl
