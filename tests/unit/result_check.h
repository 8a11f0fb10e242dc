// Catch2 helpers for Result<T> (common/error.h) in unit tests: ok() requires
// success and yields the value, fails() requires an error and yields it;
// either shows the error's text when the expectation does not hold.
#pragma once

#include <type_traits>
#include <utility>

#include <catch2/catch.hpp>

#include "common/error.h"

namespace berth::test {

template <class T>
T ok(Result<T> r) {
  INFO((r ? "" : r.error().str()));
  REQUIRE(r.has_value());
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

template <class T>
Error fails(Result<T> r) {
  REQUIRE_FALSE(r.has_value());
  return r.error();
}

}  // namespace berth::test
