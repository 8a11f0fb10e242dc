// The berth CLI's commands, one function each, over a Client. Each returns
// the process exit code, or the error main prints as "berth: <error>".
#pragma once

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "cmd/berth/client.h"
#include "common/error.h"

namespace berth::cli {

struct Context {
  Client client;
  bool json_output = false;  // -o json: the raw JSON answers
  bool csv_output = false;   // -o csv (only `berth usage`)
  // Where the command writes (the tests capture them).
  std::FILE* out = stdout;
  std::FILE* err = stderr;
};

// A JSON answer, pretty-printed (bad UTF-8 from users replaced, never an
// abort), and plain text, to ctx.out.
void print_json(Context& ctx, const nlohmann::json& j);
void print_text(Context& ctx, std::string_view text);

// Every page of a List* operation (ListClusters, ListServices): the ARNs
// under `arns_key`, following nextToken.
Result<std::vector<std::string>> list_all(Context& ctx, std::string_view operation,
                                          nlohmann::json input, std::string_view arns_key);

struct RunOptions {
  std::string target;  // FILE | FAMILY[:REV] | task definition ARN
  std::string cluster;
  int count = 1;
  bool wait = false;
  std::vector<std::string> env;  // K=V
};

struct PsOptions {
  bool all = false;
  std::string cluster;
};

struct LogsOptions {
  std::string task;
  std::string container;
  bool follow = false;
  bool timestamps = false;
};

struct StopOptions {
  std::string task;
  std::string reason;
};

struct UsageOptions {
  std::string from;  // RFC 3339, YYYY-MM-DD or epoch seconds (berthd parses)
  std::string to;
  std::string group_by;  // task | family | service | day ("" = berthd's default, task)
};

Result<int> cmd_register(Context& ctx, const std::string& file);
Result<int> cmd_run(Context& ctx, const RunOptions& o);
Result<int> cmd_ps(Context& ctx, const PsOptions& o);
Result<int> cmd_describe(Context& ctx, const std::string& task);
Result<int> cmd_logs(Context& ctx, const LogsOptions& o);
Result<int> cmd_stop(Context& ctx, const StopOptions& o);
Result<int> cmd_clusters(Context& ctx);
// GET /v1/usage: table, -o csv or -o json (the answer as is).
Result<int> cmd_usage(Context& ctx, const UsageOptions& o);
// GET /v1/usage/verify: exit 0 when the chain holds, else 1.
Result<int> cmd_usage_verify(Context& ctx);

}  // namespace berth::cli
