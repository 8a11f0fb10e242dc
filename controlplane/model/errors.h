// Errors the API answers with. Control-plane code returns Result<T> like the
// rest of berth; an error meant for the client carries the ECS exception
// name in Error::step ("InvalidParameterException", "ClientException",
// "ClusterNotFoundException", ...) and the message the client sees. The API
// layer maps it to the ECS error shape: {"__type": step, "message": message},
// HTTP 400 (500 for ServerException and for every error whose step is not
// an ECS exception name: an internal failure, logged, never shown raw).
#pragma once

#include <string_view>

#include "common/error.h"

namespace berth::cp {

inline constexpr std::string_view kClientException = "ClientException";
inline constexpr std::string_view kServerException = "ServerException";
inline constexpr std::string_view kInvalidParameter = "InvalidParameterException";
inline constexpr std::string_view kClusterNotFound = "ClusterNotFoundException";
inline constexpr std::string_view kAccessDenied = "AccessDeniedException";
inline constexpr std::string_view kResourceNotFound = "ResourceNotFoundException";
inline constexpr std::string_view kLimitExceeded = "LimitExceededException";
inline constexpr std::string_view kUnsupportedFeature = "UnsupportedFeatureException";

template <class... Args>
std::unexpected<Error> ecs_error(std::string_view exception, fmt::format_string<Args...> f,
                                 Args&&... args) {
  ErrorKind kind = exception == kServerException ? ErrorKind::internal : ErrorKind::invalid;
  return std::unexpected(
      Error{std::string(exception), 0, fmt::format(f, std::forward<Args>(args)...), kind});
}

// True when e.step names an ECS exception (ends in "Exception").
bool is_ecs_error(const Error& e);

}  // namespace berth::cp
