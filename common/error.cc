#include "common/error.h"

#include <cstring>

namespace berth {

const char* error_kind_name(ErrorKind k) {
  switch (k) {
    case ErrorKind::internal:
      return "internal";
    case ErrorKind::invalid:
      return "invalid";
    case ErrorKind::not_found:
      return "not_found";
    case ErrorKind::exists:
      return "exists";
    case ErrorKind::busy:
      return "busy";
    case ErrorKind::unsupported:
      return "unsupported";
  }
  return "internal";
}

std::string Error::str() const {
  std::string out = step.empty() ? message : step + ": " + message;
  if (err != 0) {
    out += ": ";
    out += std::strerror(err);
  }
  return out;
}

}  // namespace berth
