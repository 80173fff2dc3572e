// Blocking stream sockets for the refit control channel and the TCP packed stream: Unix
// domain sockets (colocated), TCP on localhost or a given host, and socketpair for fork().
// Every failure is a runtime Error; SIGPIPE is never raised (MSG_NOSIGNAL).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace qarl::refit {

class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket();
  Socket(Socket&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Socket& operator=(Socket&& o) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  int fd() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void close();

  void send_all(const void* data, size_t n);
  void recv_all(void* data, size_t n);  // Error on EOF before n bytes
  // Length-prefixed messages (u64 length, then bytes).
  void send_frame(std::string_view bytes);
  std::string recv_frame(size_t max_bytes = size_t(64) << 20);

 private:
  int fd_ = -1;
};

class Listener {
 public:
  Listener() = default;
  Listener(Listener&&) noexcept = default;
  Listener& operator=(Listener&&) noexcept = default;
  static Listener unix_path(const std::string& path);  // unlinks a stale path first
  static Listener tcp(const std::string& host = "127.0.0.1", uint16_t port = 0);
  Socket accept(double timeout_s = 60.0);
  uint16_t port() const { return port_; }  // TCP: the bound port (0 asks the kernel)

 private:
  Socket sock_;
  uint16_t port_ = 0;
  std::string path_;
};

// Retries until the peer listens or timeout_s passes.
Socket connect_unix(const std::string& path, double timeout_s = 60.0);
Socket connect_tcp(const std::string& host, uint16_t port, double timeout_s = 60.0);
std::pair<Socket, Socket> socket_pair();

}  // namespace qarl::refit
