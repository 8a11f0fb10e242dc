#include "controlplane/api/auth.h"

#include "controlplane/model/errors.h"

namespace berth::cp {

AccountDirectory::AccountDirectory(std::vector<Account> accounts, sigv4::Config sigv4)
    : accounts_(std::move(accounts)), sigv4_(std::move(sigv4)) {
  for (size_t i = 0; i < accounts_.size(); ++i) {
    for (uint32_t uid : accounts_[i].unix_uids) by_uid_.emplace(uid, i);
    if (!accounts_[i].access_key_id.empty()) by_key_.emplace(accounts_[i].access_key_id, i);
  }
}

Result<std::string> AccountDirectory::authenticate(const HttpRequest& req) const {
  return authenticate(req, std::chrono::system_clock::now());
}

Result<std::string> AccountDirectory::authenticate(
    const HttpRequest& req, std::chrono::system_clock::time_point now) const {
  if (req.peer.unix_socket) {
    if (!req.peer.uid) {
      return ecs_error(kAccessDenied, "the peer's credentials (SO_PEERCRED) are unknown");
    }
    auto it = by_uid_.find(*req.peer.uid);
    if (it == by_uid_.end()) {
      return ecs_error(kAccessDenied,
                       "uid {} is not mapped to an account (unix_uids in the config)",
                       *req.peer.uid);
    }
    return accounts_[it->second].id;
  }

  const std::string* header = req.header("authorization");
  if (header == nullptr) {
    return ecs_error(sigv4::kMissingToken,
                     "Missing Authentication Token: requests on TCP must be signed (SigV4)");
  }
  BERTH_ASSIGN(sigv4::Authorization auth, sigv4::parse_authorization(*header));
  auto it = by_key_.find(auth.access_key_id);
  if (it == by_key_.end()) {
    return ecs_error(kUnrecognizedClient,
                     "The security token included in the request is invalid: access key id '{}' "
                     "is not in the config",
                     auth.access_key_id);
  }
  const Account& account = accounts_[it->second];
  sigv4::Request sreq{req.method, req.target, &req.headers, req.body};
  BERTH_TRY(sigv4::verify(sreq, auth, account.secret_access_key, sigv4_, now));
  return account.id;
}

Authenticator make_authenticator(const AccountDirectory& dir) {
  return [&dir](const HttpRequest& req) { return dir.authenticate(req); };
}

}  // namespace berth::cp
