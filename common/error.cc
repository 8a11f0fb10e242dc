#include "common/error.h"

#include <cstring>

namespace berth {

std::string Error::str() const {
  std::string out = step.empty() ? message : step + ": " + message;
  if (err != 0) {
    out += ": ";
    out += std::strerror(err);
  }
  return out;
}

}  // namespace berth
