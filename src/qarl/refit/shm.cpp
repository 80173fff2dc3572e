#include "qarl/refit/shm.h"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "qarl/core/error.h"

namespace qarl::refit {
namespace {

}  // namespace

std::shared_ptr<ShmSegment> ShmSegment::create(const std::string& name, size_t bytes) {
  int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) throw runtime_err("shm_open {}: {}", name, std::strerror(errno));
  size_t map_bytes = bytes == 0 ? 1 : bytes;
  if (::ftruncate(fd, off_t(map_bytes)) != 0) {
    int e = errno;
    ::close(fd);
    ::shm_unlink(name.c_str());
    throw runtime_err("ftruncate {} to {} bytes: {}", name, map_bytes, std::strerror(e));
  }
  void* p = ::mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) {
    ::shm_unlink(name.c_str());
    throw runtime_err("mmap {} ({} bytes): {}", name, map_bytes, std::strerror(e));
  }
  std::shared_ptr<ShmSegment> s(new ShmSegment());
  s->data_ = p;
  s->size_ = bytes;
  s->name_ = name;
  s->owner_ = true;
  return s;
}

std::shared_ptr<ShmSegment> ShmSegment::open(const std::string& name, size_t bytes) {
  int fd = ::shm_open(name.c_str(), O_RDWR, 0600);
  if (fd < 0) throw runtime_err("shm_open {}: {}", name, std::strerror(errno));
  struct stat st{};
  size_t map_bytes = bytes == 0 ? 1 : bytes;
  if (::fstat(fd, &st) != 0 || size_t(st.st_size) < map_bytes) {
    ::close(fd);
    throw runtime_err("shared memory {} is smaller than the announced {} bytes", name, bytes);
  }
  void* p = ::mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) throw runtime_err("mmap {} ({} bytes): {}", name, map_bytes, std::strerror(e));
  std::shared_ptr<ShmSegment> s(new ShmSegment());
  s->data_ = p;
  s->size_ = bytes;
  s->name_ = name;
  return s;
}

ShmSegment::~ShmSegment() {
  if (data_) ::munmap(data_, size_ == 0 ? 1 : size_);
  if (owner_) ::shm_unlink(name_.c_str());
}

std::string unique_shm_name(const std::string& tag) {
  static std::atomic<uint64_t> counter{0};
  return fmt::format("/qarl-refit-{}-{}-{}", ::getpid(), counter++, tag);
}

}  // namespace qarl::refit
