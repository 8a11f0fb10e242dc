// The one error type of berth.
//
// Every fallible function returns Result<T>; an Error carries the step that
// failed, the errno (0 when the failure is not a system call's) and a message
// that names the path or value involved, e.g.
//   cgroup: write "max" to /sys/fs/cgroup/x/memory.max: Permission denied
// (crun's crun_make_error, youki's typed errors). No exceptions: the runtime's
// child runs between clone and execve and must never unwind.
#pragma once

#include <cerrno>
#include <expected>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace berth {

struct Error {
  std::string step;     // "cgroup", "mount", "spec", ...
  int err = 0;          // errno, or 0
  std::string message;  // what was attempted, with the path or value

  // "step: message: strerror(err)"
  std::string str() const;
};

template <class T = void>
using Result = std::expected<T, Error>;

// An error from a failed system call; reads errno at the call.
template <class... Args>
std::unexpected<Error> sys_error(std::string_view step, fmt::format_string<Args...> f,
                                 Args&&... args) {
  int saved = errno;
  return std::unexpected(
      Error{std::string(step), saved, fmt::format(f, std::forward<Args>(args)...)});
}

// An error with an explicit errno (for calls that return it, like pthread_*
// or libseccomp's negative codes).
template <class... Args>
std::unexpected<Error> errno_error(std::string_view step, int err, fmt::format_string<Args...> f,
                                   Args&&... args) {
  return std::unexpected(
      Error{std::string(step), err, fmt::format(f, std::forward<Args>(args)...)});
}

// An error that is not a system call's (bad input, invariant).
template <class... Args>
std::unexpected<Error> error(std::string_view step, fmt::format_string<Args...> f, Args&&... args) {
  return std::unexpected(Error{std::string(step), 0, fmt::format(f, std::forward<Args>(args)...)});
}

// Prefixes the context of a caller: "creating container x: <inner>".
inline std::unexpected<Error> wrap(Error e, std::string_view context) {
  e.message = fmt::format("{}: {}", context, e.message);
  return std::unexpected(std::move(e));
}

}  // namespace berth

// Propagates the error of a Result expression, like Rust's `?`.
#define BERTH_TRY(expr)                                    \
  do {                                                     \
    if (auto _berth_r = (expr); !_berth_r) {               \
      return std::unexpected(std::move(_berth_r).error()); \
    }                                                      \
  } while (0)

// Assigns the value of a Result expression to `lhs` or propagates its error.
#define BERTH_ASSIGN(lhs, expr)                                                   \
  auto BERTH_CONCAT(_berth_a_, __LINE__) = (expr);                                \
  if (!BERTH_CONCAT(_berth_a_, __LINE__)) {                                       \
    return std::unexpected(std::move(BERTH_CONCAT(_berth_a_, __LINE__)).error()); \
  }                                                                               \
  lhs = std::move(*BERTH_CONCAT(_berth_a_, __LINE__))

#define BERTH_CONCAT_INNER(a, b) a##b
#define BERTH_CONCAT(a, b) BERTH_CONCAT_INNER(a, b)
