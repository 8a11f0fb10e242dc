// Who a request acts as: the accounts of the config (model.h Account), found
// by the unix peer's uid on the unix socket and by the SigV4 access key on
// TCP (api/sigv4.h). Errors carry the AWS exception name in Error::step
// (AccessDeniedException, UnrecognizedClientException,
// InvalidSignatureException, ...); the transport answers them with 403.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/error.h"
#include "controlplane/api/http.h"
#include "controlplane/api/sigv4.h"
#include "controlplane/model/model.h"

namespace berth::cp {

inline constexpr std::string_view kUnrecognizedClient = "UnrecognizedClientException";

class AccountDirectory {
 public:
  // `sigv4` holds the region (and service) requests must be signed for.
  // Accounts whose access key or uids repeat another's are an error of the
  // config: the first one wins here (the config loader refuses them).
  explicit AccountDirectory(std::vector<Account> accounts, sigv4::Config sigv4 = {});

  // The account id of the request's caller. `now` is for the SigV4 date
  // check (tests pass a fixed time).
  Result<std::string> authenticate(const HttpRequest& req) const;
  Result<std::string> authenticate(const HttpRequest& req,
                                   std::chrono::system_clock::time_point now) const;

  const std::vector<Account>& accounts() const { return accounts_; }

 private:
  std::vector<Account> accounts_;
  sigv4::Config sigv4_;
  std::unordered_map<uint32_t, size_t> by_uid_;
  std::unordered_map<std::string, size_t> by_key_;
};

// The Authenticator (api/http.h) the server calls; `dir` must outlive it.
Authenticator make_authenticator(const AccountDirectory& dir);

}  // namespace berth::cp
