// Path components of archive member names, shared by the unpacker and the
// importers: split without "" and "." components, join the first n back.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace berth::rootfs {

// "./a//b/" -> {"a", "b"}; ".." is kept (callers refuse or resolve it).
std::vector<std::string> split_path(std::string_view path);
// The first `n` components joined with '/'.
std::string join_path(const std::vector<std::string>& comps, size_t n);

}  // namespace berth::rootfs
