// The typed parent <-> init protocol over a SOCK_SEQPACKET socketpair (one
// datagram per message, so no framing). The init's end is O_CLOEXEC: the
// parent reads EOF exactly when the user process has been exec'd, or when
// the init died — which a preceding `error` message tells apart.
#pragma once

#include <cstdint>
#include <string>

#include "common/error.h"
#include "common/fd.h"

namespace berth::runtime {

enum class SyncType : uint32_t {
  // parent -> init: uid/gid maps written, cgroups joined; payload: the
  // container state JSON for hooks.
  go = 1,
  // init -> parent: mounts are about to be made; run prestart and
  // createRuntime hooks now (they run in the runtime's namespaces).
  run_runtime_hooks = 2,
  // parent -> init: hooks done.
  hooks_done = 3,
  // init -> parent: everything but the exec is done; waiting for start.
  ready = 4,
  // init -> parent: a step failed; payload: the error text, err: errno.
  error = 5,
};

struct SyncMessage {
  SyncType type;
  int32_t err = 0;
  std::string payload;
};

Result<void> sync_send(int fd, const SyncMessage& msg);
// EOF is reported as an error with err == 0 and message "closed".
Result<SyncMessage> sync_recv(int fd);
// Receives and requires `type`; an `error` message becomes the Error it
// carries, so the init's failure reaches the user with its step and errno.
Result<SyncMessage> sync_expect(int fd, SyncType type);
// Init side: reports `e` to the parent (best effort: the parent may be gone).
void sync_report_error(int fd, const Error& e);
// The Error an `error` message carries (payload "step\0message").
Error sync_error(int32_t err, const std::string& payload);

// SCM_RIGHTS helpers (console socket, seccomp listener).
Result<void> send_fd(int sock, int fd, const std::string& name);
Result<UniqueFd> recv_fd(int sock);

}  // namespace berth::runtime
