// qarl's error type. Every failure that a user can cause (bad file, bad key, bad tensor)
// is an Error carrying the context needed to fix it: the file, the tensor name, the key.
#pragma once
#include <stdexcept>
#include <string>
#include <fmt/format.h>

namespace qarl {

// What kind of failure: it decides the process exit code (see cli/exit_codes.h).
enum class ErrorKind {
  Usage,     // bad command line or incompatible options          -> exit 2
  Input,     // malformed or inconsistent input file / recipe      -> exit 3
  Runtime,   // an operation failed at run time (I/O, refit, ...)  -> exit 1
  Internal,  // a bug: an invariant of qarl itself was violated    -> exit 70
};

class Error : public std::runtime_error {
 public:
  explicit Error(std::string message, ErrorKind kind = ErrorKind::Input)
      : std::runtime_error(message), message_(std::move(message)), kind_(kind) {
    rebuild();
  }

  // Context setters return *this so that they chain: throw Error("...").file(p).tensor(n);
  Error& file(std::string f) { file_ = std::move(f); rebuild(); return *this; }
  Error& tensor(std::string t) { tensor_ = std::move(t); rebuild(); return *this; }
  Error& key(std::string k) { key_ = std::move(k); rebuild(); return *this; }
  Error& kind(ErrorKind k) { kind_ = k; return *this; }

  const std::string& message() const { return message_; }
  const std::string& file() const { return file_; }
  const std::string& tensor() const { return tensor_; }
  const std::string& key() const { return key_; }
  ErrorKind kind() const { return kind_; }
  const char* what() const noexcept override { return full_.c_str(); }

 private:
  void rebuild() {
    full_.clear();
    if (!file_.empty()) full_ += file_ + ": ";
    if (!tensor_.empty()) full_ += "tensor '" + tensor_ + "': ";
    if (!key_.empty()) full_ += "key '" + key_ + "': ";
    full_ += message_;
  }
  std::string message_, file_, tensor_, key_, full_;
  ErrorKind kind_;
};

// Formatted construction: throw err("shape {} does not match {}", a, b).file(path);
template <typename... Args>
Error err(fmt::format_string<Args...> f, Args&&... args) {
  return Error(fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
Error usage_err(fmt::format_string<Args...> f, Args&&... args) {
  return Error(fmt::format(f, std::forward<Args>(args)...), ErrorKind::Usage);
}
template <typename... Args>
Error runtime_err(fmt::format_string<Args...> f, Args&&... args) {
  return Error(fmt::format(f, std::forward<Args>(args)...), ErrorKind::Runtime);
}

}  // namespace qarl

// Internal invariant: a failure here is a bug in qarl, not bad input.
#define QARL_ASSERT(cond, ...)                                                        \
  do {                                                                                \
    if (!(cond))                                                                      \
      throw ::qarl::Error(fmt::format("internal error at {}:{}: {} ({})", __FILE__,   \
                                      __LINE__, #cond, fmt::format(__VA_ARGS__)),     \
                          ::qarl::ErrorKind::Internal);                               \
  } while (0)
