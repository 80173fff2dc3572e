#include <filesystem>

#include "qarl/core/error.h"
#include "qarl/core/fs.h"
#include "qarl/rl/embedded_recipes.h"

namespace qarl::rl {

std::string materialize_embedded_recipe(const std::string& dir, const std::string& name) {
  namespace fs = std::filesystem;
  bool found = false;
  for (const auto& f : embedded_recipes()) {
    fs::path p = fs::path(dir) / f.path;
    fs::create_directories(p.parent_path());
    write_file_atomic(p.string(), f.text);
    found = found || f.path == name;
  }
  if (!found) throw usage_err("no embedded recipe called '{}'", name);
  return (fs::path(dir) / name).string();
}

}  // namespace qarl::rl
