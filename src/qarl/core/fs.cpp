#include "qarl/core/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "qarl/core/error.h"

namespace qarl {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw err("cannot open: {}", std::strerror(errno)).file(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw err("read failed").file(path);
  return ss.str();
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  write_file_atomic(path, [&](std::FILE* f) {
    if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size())
      throw runtime_err("write failed: {}", std::strerror(errno)).file(path);
  });
}

void write_file_atomic(const std::string& path, const std::function<void(std::FILE*)>& write) {
  namespace fs = std::filesystem;
  fs::path target(path);
  fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string tmpl = (dir / ("." + target.filename().string() + ".tmp.XXXXXX")).string();
  int fd = mkstemp(tmpl.data());
  if (fd < 0) throw runtime_err("cannot create temporary file: {}", std::strerror(errno)).file(path);
  std::FILE* f = fdopen(fd, "wb");
  if (!f) {
    ::close(fd);
    ::unlink(tmpl.c_str());
    throw runtime_err("fdopen failed").file(path);
  }
  try {
    write(f);
    if (std::fflush(f) != 0 || fsync(fileno(f)) != 0)
      throw runtime_err("flush/fsync failed: {}", std::strerror(errno)).file(path);
  } catch (...) {
    std::fclose(f);
    ::unlink(tmpl.c_str());
    throw;
  }
  std::fclose(f);
  if (std::rename(tmpl.c_str(), path.c_str()) != 0) {
    ::unlink(tmpl.c_str());
    throw runtime_err("rename into place failed: {}", std::strerror(errno)).file(path);
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);  // make the rename itself durable
    ::close(dfd);
  }
}

bool path_exists(const std::string& path) noexcept {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

bool is_file(const std::string& path) noexcept {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

bool is_directory(const std::string& path) noexcept {
  std::error_code ec;
  return std::filesystem::is_directory(path, ec);
}

}  // namespace qarl
