// The one error type of berth.
//
// Every fallible function returns Result<T>; an Error carries the step that
// failed, the errno (0 when the failure is not a system call's) and a message
// that names the path or value involved, e.g.
//   cgroup: write "max" to /sys/fs/cgroup/x/memory.max: Permission denied
// (crun's crun_make_error, youki's typed errors). No exceptions: the runtime's
// child runs between clone and execve and must never unwind.
//
// An Error also has a kind, so that callers (the control plane mapping to
// ECS exceptions) can tell bad input from a missing or existing object
// without matching strings. Every helper makes `internal` errors; the sites
// that know better say so: kind_error(ErrorKind::invalid, ...) or
// with_kind(ErrorKind::not_found, sys_error(...)).
#pragma once

#include <cerrno>
#include <expected>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace berth {

enum class ErrorKind {
  internal,     // the default: a failure of the system or of berth itself
  invalid,      // bad input: a spec, a task, a request, an id
  not_found,    // the container, image or object named does not exist
  exists,       // the id or name is taken
  busy,         // the object is in a state that forbids the operation now
  unsupported,  // valid, but this host or berth cannot do it
};
// "internal", "invalid", "not_found", "exists", "busy", "unsupported".
const char* error_kind_name(ErrorKind k);

struct Error {
  std::string step;     // "cgroup", "mount", "spec", ...
  int err = 0;          // errno, or 0
  std::string message;  // what was attempted, with the path or value
  ErrorKind kind = ErrorKind::internal;

  // "step: message: strerror(err)" (the kind is not part of the text)
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

// An error of a given kind that is not a system call's.
template <class... Args>
std::unexpected<Error> kind_error(ErrorKind kind, std::string_view step,
                                  fmt::format_string<Args...> f, Args&&... args) {
  return std::unexpected(
      Error{std::string(step), 0, fmt::format(f, std::forward<Args>(args)...), kind});
}

// Sets the kind of an error made by another helper:
//   return with_kind(ErrorKind::not_found, errno_error("container", ENOENT, ...));
inline std::unexpected<Error> with_kind(ErrorKind kind, std::unexpected<Error> e) {
  e.error().kind = kind;
  return e;
}

// Prefixes the context of a caller: "creating container x: <inner>" (the
// kind is kept).
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
