#include "rootfs-tools/paths.h"

namespace berth::rootfs {

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string_view::npos) next = path.size();
    std::string_view comp = path.substr(pos, next - pos);
    if (!comp.empty() && comp != ".") out.emplace_back(comp);
    pos = next + 1;
  }
  return out;
}

std::string join_path(const std::vector<std::string>& comps, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (i) out += '/';
    out += comps[i];
  }
  return out;
}

}  // namespace berth::rootfs
