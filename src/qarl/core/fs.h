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

// What a user-given path names, false when it cannot be told: std::filesystem's throwing
// forms raise filesystem_error for a name too long or a parent without permission (found by
// fuzz/run_recipe_fuzz: a recipe path of 300 characters escaped as that exception).
bool path_exists(const std::string& path) noexcept;
bool is_file(const std::string& path) noexcept;       // a regular file (after symlinks)
bool is_directory(const std::string& path) noexcept;  // a directory (after symlinks)

}  // namespace qarl
