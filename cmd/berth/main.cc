// berth: the command-line client of berthd (cmd/berth/app.h has the
// command line, docs/berth-cli.md the reference).
//
// The host also comes from BERTH_HOST. On TCP, requests are SigV4-signed
// when BERTH_ACCESS_KEY_ID/BERTH_SECRET_ACCESS_KEY (or the AWS_* names) are
// set.
#include <curl/curl.h>

#include <cstdio>

#include "cmd/berth/app.h"
#include "cmd/berth/args.h"

int main(int argc, char** argv) {
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    std::fprintf(stderr, "berth: curl_global_init failed\n");
    return berth::cli::kExitError;
  }
  int rc = berth::cli::run_cli(argc, argv, stdout, stderr);
  curl_global_cleanup();
  return rc;
}
