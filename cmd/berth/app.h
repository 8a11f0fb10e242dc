// The berth command line as a function: the CLI11 parser of every command
// and option, the command's run and the error line, writing to `out` and
// `err`. main() calls it with stdout/stderr; the tests call it with
// in-memory streams, against an in-process berthd.
//
//   berth [--host unix:///run/berth/berthd.sock|http://HOST:PORT] [-o table|json|csv] COMMAND
//
// -o csv is for `berth usage` only (a usage error elsewhere). Global
// options may also follow `usage` / `usage verify` and `services ...`
// (berth usage -o csv, berth services ls -o json).
//
// Exit codes: 0 success, 1 an error (printed as "berth: <what>: <message>",
// ECS errors as "berth: InvalidParameterException: message"), 2 a usage
// error (CLI11 names the flag: "--desired-count: Value -1 not in range
// ..."), and for `run --wait` the essential container's exit code (125 when
// the task failed to start). docs/berth-cli.md has the reference.
#pragma once

#include <cstdio>

namespace berth::cli {

// argv[0] is the program name. curl_global_init is the caller's.
int run_cli(int argc, const char* const* argv, std::FILE* out, std::FILE* err);

}  // namespace berth::cli
