#include "qarl/refit/socket.h"

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

#include "qarl/core/error.h"

namespace qarl::refit {
namespace {

Error sys_err(const std::string& what) {
  return runtime_err("{}: {}", what, std::strerror(errno));
}

void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

sockaddr_un unix_addr(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof(a.sun_path)) throw runtime_err("socket path too long: {}", path);
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

sockaddr_in tcp_addr(const std::string& host, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1)
    throw runtime_err("not an IPv4 address: '{}'", host);
  return a;
}

template <typename Addr>
Socket connect_retry(int family, const Addr& addr, const std::string& what, double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (true) {
    int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw sys_err("socket");
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
      if (family == AF_INET) set_nodelay(fd);
      return Socket(fd);
    }
    int e = errno;
    ::close(fd);
    if (std::chrono::steady_clock::now() > deadline) {
      errno = e;
      throw sys_err("connect to " + what);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

Socket::~Socket() { close(); }

Socket& Socket::operator=(Socket&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

void Socket::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void Socket::send_all(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t k = ::send(fd_, p, n, MSG_NOSIGNAL);
    if (k < 0) {
      if (errno == EINTR) continue;
      throw sys_err("refit send (peer gone?)");
    }
    p += k;
    n -= size_t(k);
  }
}

void Socket::recv_all(void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t k = ::recv(fd_, p, n, 0);
    if (k < 0) {
      if (errno == EINTR) continue;
      throw sys_err("refit recv");
    }
    if (k == 0) throw runtime_err("refit peer closed the connection ({} bytes still expected)", n);
    p += k;
    n -= size_t(k);
  }
}

void Socket::send_frame(std::string_view bytes) {
  uint64_t n = bytes.size();
  send_all(&n, sizeof n);
  send_all(bytes.data(), bytes.size());
}

std::string Socket::recv_frame(size_t max_bytes) {
  uint64_t n = 0;
  recv_all(&n, sizeof n);
  if (n > max_bytes) throw runtime_err("refit control message of {} bytes (limit {})", n, max_bytes);
  std::string s(n, '\0');
  recv_all(s.data(), n);
  return s;
}

Listener Listener::unix_path(const std::string& path) {
  Listener l;
  ::unlink(path.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw sys_err("socket");
  l.sock_ = Socket(fd);
  auto a = unix_addr(path);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw sys_err("bind " + path);
  if (::listen(fd, 16) != 0) throw sys_err("listen " + path);
  l.path_ = path;
  return l;
}

Listener Listener::tcp(const std::string& host, uint16_t port) {
  Listener l;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw sys_err("socket");
  l.sock_ = Socket(fd);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  auto a = tcp_addr(host, port);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw sys_err("bind tcp");
  if (::listen(fd, 64) != 0) throw sys_err("listen tcp");
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  l.port_ = ntohs(a.sin_port);
  return l;
}

Socket Listener::accept(double timeout_s) {
  pollfd p{sock_.fd(), POLLIN, 0};
  int r = ::poll(&p, 1, int(timeout_s * 1000));
  if (r == 0) throw runtime_err("no refit peer connected within {} s", timeout_s);
  if (r < 0) throw sys_err("poll");
  int fd = ::accept4(sock_.fd(), nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) throw sys_err("accept");
  if (path_.empty()) set_nodelay(fd);
  return Socket(fd);
}

Socket connect_unix(const std::string& path, double timeout_s) {
  return connect_retry(AF_UNIX, unix_addr(path), path, timeout_s);
}

Socket connect_tcp(const std::string& host, uint16_t port, double timeout_s) {
  return connect_retry(AF_INET, tcp_addr(host, port), host + ":" + std::to_string(port),
                       timeout_s);
}

std::pair<Socket, Socket> socket_pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw sys_err("socketpair");
  return {Socket(fds[0]), Socket(fds[1])};
}

}  // namespace qarl::refit
