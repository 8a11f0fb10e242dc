// A temporary directory for a unit test, removed (recursively) at scope exit.
#pragma once

#include <filesystem>
#include <string>

#include <stdlib.h>
#include <unistd.h>

namespace berth::test {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/berth-unit-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

}  // namespace berth::test
