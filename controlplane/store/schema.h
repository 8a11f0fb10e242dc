// The store's SQLite schema and its migrations.
//
// The version lives in the database header (PRAGMA user_version: 0 for a
// new file). Migrations are an ordered list of SQL steps; step N brings
// version N-1 to N and runs, with the version bump, in one transaction, so a
// crash mid-migration leaves the previous version intact. A database whose
// version is newer than kSchemaVersion was written by a newer berthd and is
// refused: an older binary must not write a schema it does not know.
//
// Never edit a shipped step: append a new one (and keep the migration test's
// hand-made copy of version 1 as it is).
#pragma once

#include <string>

#include "common/error.h"
#include "controlplane/store/sqlite.h"

namespace berth::cp {

// The schema version this berthd writes and reads.
inline constexpr int kSchemaVersion = 4;

// The database's schema version (PRAGMA user_version).
Result<int> schema_version(sql::Connection& conn);

// An error (kind unsupported) when `version` is newer than kSchemaVersion;
// `path` names the database in it.
Result<void> check_schema_version(int version, const std::string& path);

// Applies the missing steps, each in its own transaction; refuses a newer
// database.
Result<void> migrate(sql::Connection& conn, const std::string& path);

}  // namespace berth::cp
