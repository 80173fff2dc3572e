// File helpers shared by every component: whole-file reads and atomic writes (temp file in
// the same directory, fsync, rename, fsync of the directory), so a crash never leaves a
// half-written file under the final name.
#pragma once
#include <functional>
#include <string>
#include <string_view>

namespace qarl {

std::string read_file(const std::string& path);  // Error(Input) naming the file on failure
void write_file_atomic(const std::string& path, std::string_view bytes);
// Streaming form: `write` receives a FILE* open on the temporary file.
void write_file_atomic(const std::string& path, const std::function<void(std::FILE*)>& write);

}  // namespace qarl
