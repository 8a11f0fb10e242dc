#include "controlplane/store/schema.h"

#include <array>
#include <charconv>

namespace berth::cp {

namespace {

// Version 1, the first schema. Every table is keyed by account first: every
// query names the account, and the primary key serves it.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE clusters (
  account TEXT NOT NULL,
  name TEXT NOT NULL,
  status TEXT NOT NULL,
  doc TEXT NOT NULL,
  PRIMARY KEY (account, name)
) WITHOUT ROWID;

-- The last revision ever given out per family. Definitions are never
-- deleted today, but the counter does not depend on that: a revision is
-- never reused, whatever happens to the rows below.
CREATE TABLE families (
  account TEXT NOT NULL,
  family TEXT NOT NULL,
  last_revision INTEGER NOT NULL,
  PRIMARY KEY (account, family)
) WITHOUT ROWID;

CREATE TABLE task_definitions (
  account TEXT NOT NULL,
  family TEXT NOT NULL,
  revision INTEGER NOT NULL,
  status TEXT NOT NULL,
  doc TEXT NOT NULL,
  PRIMARY KEY (account, family, revision),
  FOREIGN KEY (account, family) REFERENCES families (account, family)
) WITHOUT ROWID;

CREATE TABLE tasks (
  account TEXT NOT NULL,
  id TEXT NOT NULL,
  cluster TEXT NOT NULL,
  family TEXT NOT NULL,
  started_by TEXT NOT NULL,
  task_group TEXT NOT NULL,
  desired_status TEXT NOT NULL,
  last_status TEXT NOT NULL,
  version INTEGER NOT NULL,
  stopped_at REAL NOT NULL,
  doc TEXT NOT NULL,
  PRIMARY KEY (account, id)
) WITHOUT ROWID;

-- rowid order is the order tags were first set.
CREATE TABLE tags (
  account TEXT NOT NULL,
  arn TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  UNIQUE (account, arn, key)
);

-- AUTOINCREMENT: a sequence number is never handed out twice, even if the
-- rows holding the highest ones were deleted (a reader that remembers seq N
-- must never be shown another event as N).
CREATE TABLE events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  account TEXT NOT NULL,
  doc TEXT NOT NULL
);
)sql";

// Version 2: indexes for the node-wide queries (restart adoption reads the
// tasks not STOPPED, expiry the STOPPED ones by time) and for one account's
// event replay. The partial indexes' WHERE terms must match the queries'
// literally for the planner to use them (sqlite_store.cc).
constexpr const char* kSchemaV2 = R"sql(
CREATE INDEX tasks_live ON tasks (account, id) WHERE last_status != 'STOPPED';
CREATE INDEX tasks_stopped_at ON tasks (stopped_at) WHERE last_status = 'STOPPED';
CREATE INDEX events_by_account ON events (account, seq);
)sql";

// Version 3: billing (billing/ledger.h, billing/meter.h).
//
// ledger: append-only. AUTOINCREMENT: a seq is never handed out twice. One
// row per (account, task, period); the UNIQUE constraint's index also
// serves the (account, task_id) lookups. ledger_by_account finds an
// account's last row (its chain's head), ledger_by_from the rows of a time
// range. The triggers refuse UPDATE and DELETE, so no code path (nor a
// careless hand) changes a record without dropping them first; the hash
// chain is what detects a change made anyway.
//
// meter_checkpoints: a running task's metering state, overwritten at each
// checkpoint, removed with the task's final record.
constexpr const char* kSchemaV3 = R"sql(
CREATE TABLE ledger (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  account TEXT NOT NULL,
  task_id TEXT NOT NULL,
  period INTEGER NOT NULL,
  final INTEGER NOT NULL,
  from_ms INTEGER NOT NULL,
  doc TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL,
  UNIQUE (account, task_id, period)
);
CREATE INDEX ledger_by_account ON ledger (account, seq);
CREATE INDEX ledger_by_from ON ledger (account, from_ms);
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
  BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
  BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;

CREATE TABLE meter_checkpoints (
  account TEXT NOT NULL,
  task_id TEXT NOT NULL,
  doc TEXT NOT NULL,
  PRIMARY KEY (account, task_id)
) WITHOUT ROWID;
)sql";

// Version 4: services (model/service.h). One row per (account, cluster,
// name): a deleted service stays as an INACTIVE row (describable) until
// expire_services removes it; CreateService of the same name replaces an
// INACTIVE row. version is the compare-and-swap counter (put_service);
// deleted_at (epoch seconds, 0 while not INACTIVE) serves expiry through
// the partial index, whose WHERE term matches expire_services' literally.
constexpr const char* kSchemaV4 = R"sql(
CREATE TABLE services (
  account TEXT NOT NULL,
  cluster TEXT NOT NULL,
  name TEXT NOT NULL,
  status TEXT NOT NULL,
  version INTEGER NOT NULL,
  deleted_at REAL NOT NULL,
  doc TEXT NOT NULL,
  PRIMARY KEY (account, cluster, name)
) WITHOUT ROWID;
CREATE INDEX services_inactive ON services (deleted_at) WHERE status = 'INACTIVE';
)sql";

// Step i brings version i to i + 1.
constexpr std::array<const char*, kSchemaVersion> kMigrations = {kSchemaV1, kSchemaV2, kSchemaV3,
                                                                 kSchemaV4};

}  // namespace

Result<int> schema_version(sql::Connection& conn) {
  BERTH_ASSIGN(std::string text, conn.pragma("user_version", "read schema version"));
  int v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 0) {
    return error("store", "read schema version: bad user_version '{}'", text);
  }
  return v;
}

Result<void> check_schema_version(int version, const std::string& path) {
  if (version <= kSchemaVersion) return {};
  return kind_error(ErrorKind::unsupported, "store",
                    "{}: schema version {} is newer than this berthd supports ({}); refusing to "
                    "open it (run the newer berthd, or restore a backup made by this version)",
                    path, version, kSchemaVersion);
}

Result<void> migrate(sql::Connection& conn, const std::string& path) {
  for (;;) {
    // The version is read inside the write transaction: two processes
    // opening one file at once cannot both apply a step.
    BERTH_ASSIGN(auto tx, sql::Transaction::begin(conn, "migrate"));
    BERTH_ASSIGN(int version, schema_version(conn));
    BERTH_TRY(check_schema_version(version, path));
    if (version == kSchemaVersion) return tx.commit();
    std::string op = fmt::format("migrate {} to schema version {}", path, version + 1);
    BERTH_TRY(conn.exec(kMigrations[static_cast<size_t>(version)], op));
    // user_version is part of the database header: transactional like the
    // step itself.
    BERTH_TRY(conn.exec(fmt::format("PRAGMA user_version = {}", version + 1), op));
    BERTH_TRY(tx.commit());
  }
}

}  // namespace berth::cp
