// A POSIX shared-memory segment (shm_open + mmap). The creator owns the name and unlinks it
// when destroyed; openers only map. The mapping lives as long as the object.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

namespace qarl::refit {

class ShmSegment {
 public:
  static std::shared_ptr<ShmSegment> create(const std::string& name, size_t bytes);
  static std::shared_ptr<ShmSegment> open(const std::string& name, size_t bytes);
  ~ShmSegment();
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;

  char* data() const { return static_cast<char*>(data_); }
  size_t size() const { return size_; }
  const std::string& name() const { return name_; }

 private:
  ShmSegment() = default;
  void* data_ = nullptr;
  size_t size_ = 0;
  std::string name_;
  bool owner_ = false;
};

// "/qarl-refit-<pid>-<counter>-<tag>": unique per process and call.
std::string unique_shm_name(const std::string& tag);

}  // namespace qarl::refit
