#include "controlplane/store/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>

#include <climits>

#include "common/fs.h"
#include "controlplane/store/schema.h"

namespace berth::cp {

namespace {

using sql::Connection;
using sql::Statement;
using sql::Transaction;

constexpr std::string_view kStep = "store";

// The column lists every SELECT of a record reads, in the order the
// read_* functions below expect.
#define CLUSTER_COLUMNS "account, name, status, doc"
#define DEFINITION_COLUMNS "account, family, revision, status, doc"
#define LEDGER_COLUMNS "seq, account, task_id, period, final, doc, prev_hash, hash"
#define SERVICE_COLUMNS "account, cluster, name, status, version, deleted_at, doc"
#define TASK_COLUMNS                                                                    \
  "account, id, cluster, family, started_by, task_group, desired_status, last_status, " \
  "version, stopped_at, doc"

ClusterRecord read_cluster(const Statement& st) {
  return ClusterRecord{st.text(0), st.text(1), st.text(2), st.text(3)};
}

TaskDefinitionRecord read_definition(const Statement& st) {
  return TaskDefinitionRecord{st.text(0), st.text(1), static_cast<int>(st.int64(2)), st.text(3),
                              st.text(4)};
}

TaskRecord read_task(const Statement& st) {
  TaskRecord t;
  t.account = st.text(0);
  t.id = st.text(1);
  t.cluster = st.text(2);
  t.family = st.text(3);
  t.started_by = st.text(4);
  t.group = st.text(5);
  t.desired_status = st.text(6);
  t.last_status = st.text(7);
  t.version = st.int64(8);
  t.stopped_at = st.real(9);
  t.doc = st.text(10);
  return t;
}

ServiceRecord read_service(const Statement& st) {
  ServiceRecord r;
  r.account = st.text(0);
  r.cluster = st.text(1);
  r.name = st.text(2);
  r.status = st.text(3);
  r.version = st.int64(4);
  r.deleted_at = st.real(5);
  r.doc = st.text(6);
  return r;
}

StoredLedgerRow read_ledger_row(const Statement& st) {
  StoredLedgerRow r;
  r.seq = st.int64(0);
  r.account = st.text(1);
  r.task_id = st.text(2);
  r.period = st.int64(3);
  r.final = st.int64(4) != 0;
  r.doc = st.text(5);
  r.prev_hash = st.text(6);
  r.hash = st.text(7);
  return r;
}

MeterCheckpoint read_checkpoint(const Statement& st) {
  return MeterCheckpoint{st.text(0), st.text(1), st.text(2)};
}

int64_t first_int64(const Statement& st) {
  return st.int64(0);
}

// Every row of `st`, at most `limit` of them (-1: all); *more (if given)
// says whether there was another. Page queries bind LIMIT limit + 1 for it.
template <class Read>
auto read_rows(Statement& st, Read read, int limit = -1, bool* more = nullptr)
    -> Result<std::vector<decltype(read(st))>> {
  std::vector<decltype(read(st))> out;
  if (more != nullptr) *more = false;
  for (;;) {
    BERTH_ASSIGN(bool row, st.step());
    if (!row) break;
    if (limit >= 0 && out.size() == static_cast<size_t>(limit)) {
      if (more != nullptr) *more = true;
      break;
    }
    out.push_back(read(st));
  }
  return out;
}

// The first row of `st`, if any.
template <class Read>
auto read_one(Statement& st, Read read) -> Result<std::optional<decltype(read(st))>> {
  BERTH_ASSIGN(bool row, st.step());
  if (!row) return std::nullopt;
  return read(st);
}

// An empty account would make a shared namespace of its own: never valid.
Result<void> check_account(const std::string& account, std::string_view op) {
  if (account.empty()) return kind_error(ErrorKind::invalid, kStep, "{}: empty account", op);
  return {};
}

Result<void> check_limit(int limit, std::string_view op) {
  if (limit < 1) return kind_error(ErrorKind::invalid, kStep, "{}: limit {} < 1", op, limit);
  return {};
}

// A compare-and-swap write: a write that keeps the version would let a
// second writer that read the same version succeed too: the lost update
// CAS is there to prevent.
Result<void> check_versions(std::string_view op, std::string_view what, const std::string& key,
                            int64_t version, int64_t expected_version) {
  if (expected_version >= 0 && version > expected_version) return {};
  return kind_error(ErrorKind::invalid, kStep,
                    "{}: {} {}: new version {} must be greater than expected version {} >= 0", op,
                    what, key, version, expected_version);
}

Result<void> check_definition_status(const std::optional<std::string>& status,
                                     std::string_view op) {
  if (!status || *status == "ACTIVE" || *status == "INACTIVE") return {};
  return kind_error(ErrorKind::invalid, kStep, "{}: status '{}' is not ACTIVE or INACTIVE", op,
                    *status);
}

Result<void> check_definition_query(const DefinitionQuery& q, std::string_view op) {
  BERTH_TRY(check_account(q.account, op));
  BERTH_TRY(check_limit(q.limit, op));
  return check_definition_status(q.status, op);
}

// A database opened read-write may be changed at once (journal mode, a
// rolled-back hot journal), so the version of an existing file is read
// through a read-only connection first: an older berthd never opens a newer
// database for writing. migrate() checks again inside its transaction.
Result<void> refuse_newer_schema(const std::string& path) {
  if (!fs::exists(path)) return {};
  BERTH_ASSIGN(auto probe, Connection::open(path, Connection::Mode::read_only));
  BERTH_ASSIGN(int version, schema_version(*probe));
  return check_schema_version(version, path);
}

// SQLite would create the file 0644 (less the umask); it holds every
// tenant's state, so it is created 0600 first. The -wal and -shm files take
// the database file's mode.
Result<void> create_private(const std::string& path) {
  BERTH_ASSIGN(UniqueFd fd, fs::open(path, O_RDWR | O_CREAT, 0600));
  return {};
}

Result<void> configure(Connection& conn, const SqliteStoreOptions& options,
                       const std::string& path) {
  sqlite3_busy_timeout(conn.handle(), options.busy_timeout_ms);
  BERTH_ASSIGN(std::string mode, conn.pragma("journal_mode = WAL", "set journal mode"));
  if (mode != "wal") {
    return error(kStep, "set journal mode: {} stays in journal mode '{}', not WAL", path, mode);
  }
  BERTH_TRY(
      conn.exec(options.full_sync ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                "set synchronous"));
  return conn.exec("PRAGMA foreign_keys = ON", "enable foreign keys");
}

// The next revision of a family: the family's counter, bumped (1 for a new
// family). Inside add_task_definition's transaction.
Result<int> next_revision(Connection& conn, const std::string& account, const std::string& family) {
  constexpr std::string_view op = "add_task_definition: next revision";
  BERTH_ASSIGN(auto st, conn.prepare("INSERT INTO families (account, family, last_revision) "
                                     "VALUES (?1, ?2, 1) ON CONFLICT (account, family) "
                                     "DO UPDATE SET last_revision = last_revision + 1 "
                                     "RETURNING last_revision",
                                     op));
  st.bind(1, account).bind(2, family);
  BERTH_ASSIGN(auto rev, read_one(st, first_int64));
  if (!rev) return error(kStep, "{}: no revision returned", op);
  if (*rev > INT_MAX) return error(kStep, "{}: family {} is out of revisions", op, family);
  return static_cast<int>(*rev);
}

Result<void> insert_definition(Connection& conn, const TaskDefinitionRecord& d) {
  BERTH_ASSIGN(auto st, conn.prepare("INSERT INTO task_definitions "
                                     "(account, family, revision, status, doc) "
                                     "VALUES (?1, ?2, ?3, ?4, ?5)",
                                     "add_task_definition: insert"));
  st.bind(1, d.account).bind(2, d.family).bind(3, d.revision).bind(4, d.status).bind(5, d.doc);
  return st.run();
}

// Binds the task's columns as ?1..?11 (the order of TASK_COLUMNS).
void bind_task(Statement& st, const TaskRecord& t) {
  st.bind(1, t.account).bind(2, t.id).bind(3, t.cluster).bind(4, t.family).bind(5, t.started_by);
  st.bind(6, t.group).bind(7, t.desired_status).bind(8, t.last_status).bind(9, t.version);
  st.bind(10, t.stopped_at).bind(11, t.doc);
}

Result<void> insert_task(Connection& conn, const TaskRecord& t) {
  constexpr std::string_view op = "put_task: insert";
  BERTH_ASSIGN(auto st, conn.prepare("INSERT INTO tasks (" TASK_COLUMNS
                                     ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
                                     "ON CONFLICT (account, id) DO NOTHING",
                                     op));
  bind_task(st, t);
  BERTH_TRY(st.run());
  if (conn.changes() == 0) {
    return kind_error(ErrorKind::exists, kStep, "{}: task {} already exists in account {}", op,
                      t.id, t.account);
  }
  return {};
}

Result<std::optional<int64_t>> stored_task_version(Connection& conn, const TaskRecord& t) {
  BERTH_ASSIGN(auto st, conn.prepare("SELECT version FROM tasks WHERE account = ?1 AND id = ?2",
                                     "put_task: read version"));
  st.bind(1, t.account).bind(2, t.id);
  return read_one(st, first_int64);
}

Result<void> update_task(Connection& conn, const TaskRecord& t, int64_t expected_version) {
  constexpr std::string_view op = "put_task: update";
  {
    BERTH_ASSIGN(auto st, conn.prepare("UPDATE tasks SET cluster = ?3, family = ?4, "
                                       "started_by = ?5, task_group = ?6, desired_status = ?7, "
                                       "last_status = ?8, version = ?9, stopped_at = ?10, "
                                       "doc = ?11 WHERE account = ?1 AND id = ?2 AND version = ?12",
                                       op));
    bind_task(st, t);
    st.bind(12, expected_version);
    BERTH_TRY(st.run());
    if (conn.changes() == 1) return {};
  }
  // Nothing matched: tell a missing task from a lost race. Under the
  // store's mutex no call of this process can change it in between.
  BERTH_ASSIGN(auto stored, stored_task_version(conn, t));
  if (!stored) {
    return kind_error(ErrorKind::not_found, kStep, "{}: no task {} in account {}", op, t.id,
                      t.account);
  }
  return kind_error(ErrorKind::busy, kStep,
                    "{}: task {} is at version {}, not {}: changed by another writer", op, t.id,
                    *stored, expected_version);
}

// Binds the service's columns as ?1..?7 (the order of SERVICE_COLUMNS).
void bind_service(Statement& st, const ServiceRecord& s) {
  st.bind(1, s.account).bind(2, s.cluster).bind(3, s.name).bind(4, s.status);
  st.bind(5, s.version).bind(6, s.deleted_at).bind(7, s.doc);
}

// An insert replaces only an INACTIVE service of the same name.
Result<void> insert_service(Connection& conn, const ServiceRecord& s) {
  constexpr std::string_view op = "put_service: insert";
  BERTH_ASSIGN(auto st, conn.prepare("INSERT INTO services (" SERVICE_COLUMNS
                                     ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                                     "ON CONFLICT (account, cluster, name) DO UPDATE SET "
                                     "status = excluded.status, version = excluded.version, "
                                     "deleted_at = excluded.deleted_at, doc = excluded.doc "
                                     "WHERE services.status = 'INACTIVE'",
                                     op));
  bind_service(st, s);
  BERTH_TRY(st.run());
  if (conn.changes() == 0) {
    return kind_error(ErrorKind::exists, kStep,
                      "{}: service {} already exists in cluster {} of account {}", op, s.name,
                      s.cluster, s.account);
  }
  return {};
}

Result<void> update_service(Connection& conn, const ServiceRecord& s, int64_t expected_version) {
  constexpr std::string_view op = "put_service: update";
  {
    BERTH_ASSIGN(auto st, conn.prepare("UPDATE services SET status = ?4, version = ?5, "
                                       "deleted_at = ?6, doc = ?7 WHERE account = ?1 AND "
                                       "cluster = ?2 AND name = ?3 AND version = ?8",
                                       op));
    bind_service(st, s);
    st.bind(8, expected_version);
    BERTH_TRY(st.run());
    if (conn.changes() == 1) return {};
  }
  BERTH_ASSIGN(auto st, conn.prepare("SELECT version FROM services WHERE account = ?1 AND "
                                     "cluster = ?2 AND name = ?3",
                                     "put_service: read version"));
  st.bind(1, s.account).bind(2, s.cluster).bind(3, s.name);
  BERTH_ASSIGN(auto stored, read_one(st, first_int64));
  if (!stored) {
    return kind_error(ErrorKind::not_found, kStep, "{}: no service {} in cluster {} of account {}",
                      op, s.name, s.cluster, s.account);
  }
  return kind_error(ErrorKind::busy, kStep,
                    "{}: service {} is at version {}, not {}: changed by another writer", op,
                    s.name, *stored, expected_version);
}

Result<void> upsert_tag(Connection& conn, const std::string& account, const std::string& arn,
                        const std::string& key, const std::string& value) {
  BERTH_ASSIGN(auto st, conn.prepare("INSERT INTO tags (account, arn, key, value) "
                                     "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (account, arn, key) "
                                     "DO UPDATE SET value = excluded.value",
                                     "tag"));
  st.bind(1, account).bind(2, arn).bind(3, key).bind(4, value);
  return st.run();
}

Result<void> delete_tag(Connection& conn, const std::string& account, const std::string& arn,
                        const std::string& key) {
  BERTH_ASSIGN(
      auto st,
      conn.prepare("DELETE FROM tags WHERE account = ?1 AND arn = ?2 AND key = ?3", "untag"));
  st.bind(1, account).bind(2, arn).bind(3, key);
  return st.run();
}

// The tags of the tasks expire_tasks removes, by their ARN's ending
// ":task/<cluster>/<id>" (model/arn.h), so that they do not outlive them.
// The WHERE terms on tasks match the tasks_stopped_at index.
Result<void> delete_expired_task_tags(Connection& conn, double cutoff) {
  BERTH_ASSIGN(auto st,
               conn.prepare("DELETE FROM tags WHERE rowid IN (SELECT g.rowid FROM tags g "
                            "JOIN tasks t ON g.account = t.account "
                            "WHERE t.last_status = 'STOPPED' AND t.stopped_at < ?1 "
                            "AND substr(g.arn, -length(':task/' || t.cluster || '/' || t.id)) "
                            "= ':task/' || t.cluster || '/' || t.id)",
                            "expire_tasks: delete tags"));
  st.bind(1, cutoff);
  return st.run();
}

Result<int64_t> insert_event(Connection& conn, const std::string& account, const std::string& doc) {
  constexpr std::string_view op = "append_event: insert";
  BERTH_ASSIGN(auto st,
               conn.prepare("INSERT INTO events (account, doc) VALUES (?1, ?2) RETURNING seq", op));
  st.bind(1, account).bind(2, doc);
  BERTH_ASSIGN(auto seq, read_one(st, first_int64));
  if (!seq) return error(kStep, "{}: no sequence number returned", op);
  return *seq;
}

Result<void> prune_events(Connection& conn, int64_t below_or_at) {
  BERTH_ASSIGN(auto st, conn.prepare("DELETE FROM events WHERE seq <= ?1", "append_event: prune"));
  st.bind(1, below_or_at);
  return st.run();
}

// The row that makes append_ledger a no-op: the task's row for the period
// if there is one, else its final row. Inside append_ledger's transaction.
Result<std::optional<StoredLedgerRow>> existing_ledger_row(Connection& conn,
                                                           const std::string& account,
                                                           const std::string& task_id,
                                                           int64_t period) {
  BERTH_ASSIGN(auto st, conn.prepare("SELECT " LEDGER_COLUMNS " FROM ledger "
                                     "WHERE account = ?1 AND task_id = ?2 "
                                     "AND (period = ?3 OR final = 1) "
                                     "ORDER BY period = ?3 DESC LIMIT 1",
                                     "append_ledger: existing row"));
  st.bind(1, account).bind(2, task_id).bind(3, period);
  return read_one(st, read_ledger_row);
}

// The hash of the account's last row: what its next row chains to.
Result<std::string> ledger_head(Connection& conn, const std::string& account) {
  BERTH_ASSIGN(auto st, conn.prepare("SELECT hash FROM ledger WHERE account = ?1 "
                                     "ORDER BY seq DESC LIMIT 1",
                                     "append_ledger: chain head"));
  st.bind(1, account);
  BERTH_ASSIGN(auto head, read_one(st, [](const Statement& s) { return s.text(0); }));
  return head ? *head : std::string(kGenesisHash);
}

// What make() returned, completed (an empty prev_hash / hash) and checked
// against the call, so that the store never writes a row that breaks its
// chain or disagrees with its own columns.
Result<void> check_made_row(StoredLedgerRow& row, const std::string& account,
                            const std::string& task_id, int64_t period, bool final, int64_t from_ms,
                            const std::string& prev_hash) {
  constexpr std::string_view op = "append_ledger";
  auto bad = [&](std::string what) {
    return kind_error(ErrorKind::invalid, kStep, "{}: task {} period {}: {}", op, task_id, period,
                      what);
  };
  if (row.prev_hash.empty()) row.prev_hash = prev_hash;
  if (row.prev_hash != prev_hash) {
    return bad(
        fmt::format("the row's prev_hash {} is not the chain's head {}", row.prev_hash, prev_hash));
  }
  std::string hash = ledger_hash(row.prev_hash, row.doc);
  if (row.hash.empty()) row.hash = hash;
  if (row.hash != hash) return bad("the row's hash does not match its prev_hash and doc");
  auto rec = ledger_from_doc(row.doc);
  if (!rec) return bad(rec.error().str());
  if (rec->account != account || rec->task_id != task_id || rec->period != period ||
      rec->final != final || rec->from_ms != from_ms) {
    return bad(
        fmt::format("the doc is for account {} task {} period {} final {} from_ms {}, not "
                    "account {} final {} from_ms {}",
                    rec->account, rec->task_id, rec->period, rec->final, rec->from_ms, account,
                    final, from_ms));
  }
  row.account = account;
  row.task_id = task_id;
  row.period = period;
  row.final = final;
  return {};
}

Result<int64_t> insert_ledger_row(Connection& conn, const StoredLedgerRow& row, int64_t from_ms) {
  constexpr std::string_view op = "append_ledger: insert";
  BERTH_ASSIGN(auto st, conn.prepare("INSERT INTO ledger (account, task_id, period, final, "
                                     "from_ms, doc, prev_hash, hash) "
                                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING seq",
                                     op));
  st.bind(1, row.account).bind(2, row.task_id).bind(3, row.period);
  st.bind(4, int64_t{row.final ? 1 : 0}).bind(5, from_ms).bind(6, row.doc);
  st.bind(7, row.prev_hash).bind(8, row.hash);
  BERTH_ASSIGN(auto seq, read_one(st, first_int64));
  if (!seq) return error(kStep, "{}: no sequence number returned", op);
  return *seq;
}

}  // namespace

// ---------------------------------------------------------------------------
// Opening

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& path,
                                                       const SqliteStoreOptions& options) {
  if (options.busy_timeout_ms < 0 || options.max_events < 1) {
    return kind_error(ErrorKind::invalid, kStep,
                      "open {}: busy_timeout_ms {} < 0 or max_events {} < 1", path,
                      options.busy_timeout_ms, options.max_events);
  }
  BERTH_TRY(refuse_newer_schema(path));
  BERTH_TRY(create_private(path));
  BERTH_ASSIGN(auto conn, Connection::open(path, Connection::Mode::read_write_create));
  BERTH_TRY(configure(*conn, options, path));
  BERTH_TRY(migrate(*conn, path));
  return std::unique_ptr<SqliteStore>(new SqliteStore(std::move(conn), path, options));
}

Result<void> SqliteStore::check_integrity() {
  std::lock_guard lock(mu_);
  // The first row is "ok" or the first problem found.
  BERTH_ASSIGN(std::string result, conn_->pragma("integrity_check", "integrity check"));
  if (result != "ok") return error(kStep, "integrity check of {}: {}", path_, result);
  return {};
}

// ---------------------------------------------------------------------------
// Clusters

Result<void> SqliteStore::put_cluster(const ClusterRecord& c) {
  BERTH_TRY(check_account(c.account, "put_cluster"));
  std::lock_guard lock(mu_);
  BERTH_ASSIGN(auto st, conn_->prepare("INSERT INTO clusters (" CLUSTER_COLUMNS
                                       ") VALUES (?1, ?2, ?3, ?4) ON CONFLICT (account, name) "
                                       "DO UPDATE SET status = excluded.status, doc = excluded.doc",
                                       "put_cluster"));
  st.bind(1, c.account).bind(2, c.name).bind(3, c.status).bind(4, c.doc);
  return st.run();
}

Result<std::optional<ClusterRecord>> SqliteStore::get_cluster(const std::string& account,
                                                              const std::string& name) {
  BERTH_TRY(check_account(account, "get_cluster"));
  std::lock_guard lock(mu_);
  BERTH_ASSIGN(auto st, conn_->prepare("SELECT " CLUSTER_COLUMNS
                                       " FROM clusters WHERE account = ?1 AND name = ?2",
                                       "get_cluster"));
  st.bind(1, account).bind(2, name);
  return read_one(st, read_cluster);
}

Result<std::vector<ClusterRecord>> SqliteStore::list_clusters(const std::string& account) {
  BERTH_TRY(check_account(account, "list_clusters"));
  std::lock_guard lock(mu_);
  BERTH_ASSIGN(auto st, conn_->prepare("SELECT " CLUSTER_COLUMNS
                                       " FROM clusters WHERE account = ?1 ORDER BY name",
                                       "list_clusters"));
  st.bind(1, account);
  return read_rows(st, read_cluster);
}

// ---------------------------------------------------------------------------
// Task definitions

Result<TaskDefinitionRecord> SqliteStore::add_task_definition(
    const std::string& account, const std::string& family,
    const std::function<Result<std::string>(int revision)>& make_doc) {
  constexpr std::string_view op = "add_task_definition";
  BERTH_TRY(check_account(account, op));
  if (family.empty()) return kind_error(ErrorKind::invalid, kStep, "{}: empty family", op);
  std::lock_guard lock(mu_);
  // One transaction: the counter's bump and the row commit together, and a
  // failing make_doc rolls the bump back.
  BERTH_ASSIGN(auto tx, Transaction::begin(*conn_, op));
  BERTH_ASSIGN(int revision, next_revision(*conn_, account, family));
  BERTH_ASSIGN(std::string doc, make_doc(revision));
  TaskDefinitionRecord d{account, family, revision, "ACTIVE", std::move(doc)};
  BERTH_TRY(insert_definition(*conn_, d));
  BERTH_TRY(tx.commit());
  return d;
}

Result<std::optional<TaskDefinitionRecord>> SqliteStore::get_task_definition(
    const std::string& account, const std::string& family, int revision) {
  constexpr std::string_view op = "get_task_definition";
  BERTH_TRY(check_account(account, op));
  if (revision < 0) return kind_error(ErrorKind::invalid, kStep, "{}: revision {}", op, revision);
  std::lock_guard lock(mu_);
  if (revision == 0) {
    BERTH_ASSIGN(auto st, conn_->prepare("SELECT " DEFINITION_COLUMNS
                                         " FROM task_definitions WHERE account = ?1 AND "
                                         "family = ?2 AND status = 'ACTIVE' "
                                         "ORDER BY revision DESC LIMIT 1",
                                         op));
    st.bind(1, account).bind(2, family);
    return read_one(st, read_definition);
  }
  BERTH_ASSIGN(auto st, conn_->prepare("SELECT " DEFINITION_COLUMNS
                                       " FROM task_definitions WHERE account = ?1 AND "
                                       "family = ?2 AND revision = ?3",
                                       op));
  st.bind(1, account).bind(2, family).bind(3, revision);
  return read_one(st, read_definition);
}

Result<void> SqliteStore::update_task_definition(const TaskDefinitionRecord& d) {
  constexpr std::string_view op = "update_task_definition";
  BERTH_TRY(check_account(d.account, op));
  std::lock_guard lock(mu_);
  BERTH_ASSIGN(auto st, conn_->prepare("UPDATE task_definitions SET status = ?4, doc = ?5 "
                                       "WHERE account = ?1 AND family = ?2 AND revision = ?3",
                                       op));
  st.bind(1, d.account).bind(2, d.family).bind(3, d.revision).bind(4, d.status).bind(5, d.doc);
  BERTH_TRY(st.run());
  if (conn_->changes() == 0) {
    return kind_error(ErrorKind::not_found, kStep, "{}: no task definition {}:{} in account {}", op,
                      d.family, d.revision, d.account);
  }
  return {};
}

// Both orders page on the (family, revision) pair: rows strictly after the
// given one in the order asked for.
Result<std::vector<TaskDefinitionRecord>> SqliteStore::list_task_definitions(
    const DefinitionQuery& q, bool* more) {
  constexpr std::string_view op = "list_task_definitions";
  BERTH_TRY(check_definition_query(q, op));
  std::lock_guard lock(mu_);
  auto prepared = q.descending
                      ? conn_->prepare("SELECT " DEFINITION_COLUMNS
                                       " FROM task_definitions "
                                       "WHERE account = ?1 AND substr(family, 1, length(?2)) = ?2 "
                                       "AND (?3 IS NULL OR status = ?3) "
                                       "AND (?4 = '' OR (family, revision) < (?4, ?5)) "
                                       "ORDER BY family DESC, revision DESC LIMIT ?6",
                                       op)
                      : conn_->prepare("SELECT " DEFINITION_COLUMNS
                                       " FROM task_definitions "
                                       "WHERE account = ?1 AND substr(family, 1, length(?2)) = ?2 "
                                       "AND (?3 IS NULL OR status = ?3) "
                                       "AND (?4 = '' OR (family, revision) > (?4, ?5)) "
                                       "ORDER BY family, revision LIMIT ?6",
                                       op);
  if (!prepared) return std::unexpected(std::move(prepared).error());
  Statement& st = *prepared;
  st.bind(1, q.account).bind(2, q.family_prefix).bind(3, q.status);
  st.bind(4, q.after_family).bind(5, q.after_revision).bind(6, int64_t{q.limit} + 1);
  return read_rows(st, read_definition, q.limit, more);
}

// A family is ACTIVE while one of its revisions is; INACTIVE once none is
// (ECS ListTaskDefinitionFamilies).
Result<std::vector<std::string>> SqliteStore::list_families(const DefinitionQuery& q, bool* more) {
  constexpr std::string_view op = "list_families";
  BERTH_TRY(check_definition_query(q, op));
  std::lock_guard lock(mu_);
  auto prepared = q.descending ? conn_->prepare(
                                     "SELECT family FROM families f "
                                     "WHERE account = ?1 AND substr(family, 1, length(?2)) = ?2 "
                                     "AND (?3 IS NULL OR (?3 = 'ACTIVE') = EXISTS (SELECT 1 FROM "
                                     "task_definitions d WHERE d.account = f.account AND "
                                     "d.family = f.family AND d.status = 'ACTIVE')) "
                                     "AND (?4 = '' OR family < ?4) ORDER BY family DESC LIMIT ?5",
                                     op)
                               : conn_->prepare(
                                     "SELECT family FROM families f "
                                     "WHERE account = ?1 AND substr(family, 1, length(?2)) = ?2 "
                                     "AND (?3 IS NULL OR (?3 = 'ACTIVE') = EXISTS (SELECT 1 FROM "
                                     "task_definitions d WHERE d.account = f.account AND "
                                     "d.family = f.family AND d.status = 'ACTIVE')) "
                                     "AND (?4 = '' OR family > ?4) ORDER BY family LIMIT ?5",
                                     op);
  if (!prepared) return std::unexpected(std::move(prepared).error());
  Statement& st = *prepared;
  st.bind(1, q.account).bind(2, q.family_prefix).bind(3, q.status).bind(4, q.after_family);
  st.bind(5, int64_t{q.limit} + 1);
  return read_rows(
      st, [](const Statement& s) { return s.text(0); }, q.limit, more);
}

// ---------------------------------------------------------------------------
// Tasks

Result<void> SqliteStore::put_task(const TaskRecord& t, int64_t expected_version) {
  constexpr std::string_view op = "put_task";
  BERTH_TRY(check_account(t.account, op));
  if (t.id.empty()) return kind_error(ErrorKind::invalid, kStep, "{}: empty task id", op);
  BERTH_TRY(check_versions(op, "task", t.id, t.version, expected_version));
  std::lock_guard lock(mu_);
  if (expected_version == 0) return insert_task(*conn_, t);
  return update_task(*conn_, t, expected_version);
}

Result<std::optional<TaskRecord>> SqliteStore::get_task(const std::string& account,
                                                        const std::string& id) {
  BERTH_TRY(check_account(account, "get_task"));
  std::lock_guard lock(mu_);
  BERTH_ASSIGN(auto st,
               conn_->prepare("SELECT " TASK_COLUMNS " FROM tasks WHERE account = ?1 AND id = ?2",
                              "get_task"));
  st.bind(1, account).bind(2, id);
  return read_one(st, read_task);
}

Result<std::vector<TaskRecord>> SqliteStore::list_tasks(const TaskQuery& q, bool* more) {
  constexpr std::string_view op = "list_tasks";
  BERTH_TRY(check_account(q.account, op));
  BERTH_TRY(check_limit(q.limit, op));
  std::lock_guard lock(mu_);
  // One statement for every combination of filters (an absent filter binds
  // NULL), walking the primary key (account, id) in id order.
  BERTH_ASSIGN(auto st, conn_->prepare("SELECT " TASK_COLUMNS " FROM tasks "
                                       "WHERE account = ?1 AND id > ?2 "
                                       "AND (?3 IS NULL OR cluster = ?3) "
                                       "AND (?4 IS NULL OR family = ?4) "
                                       "AND (?5 IS NULL OR started_by = ?5) "
                                       "AND (?6 IS NULL OR task_group = ?6) "
                                       "AND (?7 IS NULL OR desired_status = ?7) "
                                       "ORDER BY id LIMIT ?8",
                                       op));
  st.bind(1, q.account).bind(2, q.after_id).bind(3, q.cluster).bind(4, q.family);
  st.bind(5, q.started_by).bind(6, q.group).bind(7, q.desired_status);
  st.bind(8, int64_t{q.limit} + 1);
  return read_rows(st, read_task, q.limit, more);
}

Result<std::vector<TaskRecord>> SqliteStore::live_tasks() {
  std::lock_guard lock(mu_);
  // Node-wide on purpose (restart adoption); the WHERE term is the
  // tasks_live index's.
  BERTH_ASSIGN(auto st, conn_->prepare("SELECT " TASK_COLUMNS " FROM tasks "
                                       "WHERE last_status != 'STOPPED' ORDER BY account, id",
                                       "live_tasks"));
  return read_rows(st, read_task);
}

Result<int> SqliteStore::expire_tasks(double cutoff) {
  constexpr std::string_view op = "expire_tasks";
  std::lock_guard lock(mu_);
  BERTH_ASSIGN(auto tx, Transaction::begin(*conn_, op));
  BERTH_TRY(delete_expired_task_tags(*conn_, cutoff));
  int64_t removed = 0;
  {
    BERTH_ASSIGN(auto st, conn_->prepare("DELETE FROM tasks WHERE last_status = 'STOPPED' "
                                         "AND stopped_at < ?1",
                                         op));
    st.bind(1, cutoff);
    BERTH_TRY(st.run());
    removed = conn_->changes();
  }
  BERTH_TRY(tx.commit());
  return static_cast<int>(removed);
}

// ---------------------------------------------------------------------------
// Services

Result<void> SqliteStore::put_service(const ServiceRecord& s, int64_t expected_version) {
  constexpr std::string_view op = "put_service";
  BERTH_TRY(check_account(s.account, op));
  if (s.name.empty() || s.cluster.empty()) {
    return kind_error(ErrorKind::invalid, kStep, "{}: empty service or cluster name", op);
  }
  BERTH_TRY(check_versions(op, "service", s.name, s.version, expected_version));
  std::lock_guard lock(mu_);
  if (expected_version == 0) return insert_service(*conn_, s);
  return update_service(*conn_, s, expected_version);
}

Result<std::optional<ServiceRecord>> SqliteStore::get_service(const std::string& account,
                                                              const std::string& cluster,
                                                              const std::string& name) {
  BERTH_TRY(check_account(account, "get_service"));
  std::lock_guard lock(mu_);
  BERTH_ASSIGN(auto st, conn_->prepare("SELECT " SERVICE_COLUMNS " FROM services WHERE "
                                       "account = ?1 AND cluster = ?2 AND name = ?3",
                                       "get_service"));
  st.bind(1, account).bind(2, cluster).bind(3, name);
  return read_one(st, read_service);
}

Result<std::vector<ServiceRecord>> SqliteStore::list_services(const ServiceQuery& q, bool* more) {
  constexpr std::string_view op = "list_services";
  BERTH_TRY(check_account(q.account, op));
  BERTH_TRY(check_limit(q.limit, op));
  std::lock_guard lock(mu_);
  // The primary key (account, cluster, name) in order; row values compare
  // lexicographically, which is the pagination order.
  BERTH_ASSIGN(auto st, conn_->prepare("SELECT " SERVICE_COLUMNS " FROM services "
                                       "WHERE account = ?1 AND (cluster, name) > (?2, ?3) "
                                       "AND (?4 IS NULL OR cluster = ?4) "
                                       "AND (?5 OR status != 'INACTIVE') "
                                       "ORDER BY cluster, name LIMIT ?6",
                                       op));
  st.bind(1, q.account).bind(2, q.after_cluster).bind(3, q.after_name).bind(4, q.cluster);
  st.bind(5, int64_t{q.include_inactive ? 1 : 0}).bind(6, int64_t{q.limit} + 1);
  return read_rows(st, read_service, q.limit, more);
}

Result<std::vector<ServiceRecord>> SqliteStore::live_services() {
  std::lock_guard lock(mu_);
  BERTH_ASSIGN(auto st, conn_->prepare("SELECT " SERVICE_COLUMNS " FROM services "
                                       "WHERE status != 'INACTIVE' ORDER BY account, cluster, name",
                                       "live_services"));
  return read_rows(st, read_service);
}

Result<int> SqliteStore::expire_services(double cutoff) {
  std::lock_guard lock(mu_);
  // The WHERE terms are the services_inactive index's.
  BERTH_ASSIGN(auto st, conn_->prepare("DELETE FROM services WHERE status = 'INACTIVE' "
                                       "AND deleted_at < ?1",
                                       "expire_services"));
  st.bind(1, cutoff);
  BERTH_TRY(st.run());
  return static_cast<int>(conn_->changes());
}

// ---------------------------------------------------------------------------
// Tags

Result<void> SqliteStore::tag(const std::string& account, const std::string& arn,
                              const std::vector<std::pair<std::string, std::string>>& tags) {
  BERTH_TRY(check_account(account, "tag"));
  std::lock_guard lock(mu_);
  BERTH_ASSIGN(auto tx, Transaction::begin(*conn_, "tag"));
  for (const auto& [key, value] : tags) BERTH_TRY(upsert_tag(*conn_, account, arn, key, value));
  return tx.commit();
}

Result<void> SqliteStore::untag(const std::string& account, const std::string& arn,
                                const std::vector<std::string>& keys) {
  BERTH_TRY(check_account(account, "untag"));
  std::lock_guard lock(mu_);
  BERTH_ASSIGN(auto tx, Transaction::begin(*conn_, "untag"));
  for (const auto& key : keys) BERTH_TRY(delete_tag(*conn_, account, arn, key));
  return tx.commit();
}

Result<std::vector<std::pair<std::string, std::string>>> SqliteStore::tags(
    const std::string& account, const std::string& arn) {
  BERTH_TRY(check_account(account, "tags"));
  std::lock_guard lock(mu_);
  BERTH_ASSIGN(auto st, conn_->prepare("SELECT key, value FROM tags "
                                       "WHERE account = ?1 AND arn = ?2 ORDER BY rowid",
                                       "tags"));
  st.bind(1, account).bind(2, arn);
  return read_rows(st, [](const Statement& s) { return std::pair(s.text(0), s.text(1)); });
}

// ---------------------------------------------------------------------------
// Events

Result<int64_t> SqliteStore::append_event(const std::string& account, const std::string& doc) {
  BERTH_TRY(check_account(account, "append_event"));
  std::lock_guard lock(mu_);
  // Insert and prune in one transaction: the table never holds more than
  // max_events rows. A pruning by range on the primary key: every row at or
  // below seq - max_events goes (at most one per append once full).
  BERTH_ASSIGN(auto tx, Transaction::begin(*conn_, "append_event"));
  BERTH_ASSIGN(int64_t seq, insert_event(*conn_, account, doc));
  BERTH_TRY(prune_events(*conn_, seq - options_.max_events));
  BERTH_TRY(tx.commit());
  return seq;
}

Result<std::vector<EventRecord>> SqliteStore::events_after(const std::string& account, int64_t seq,
                                                           int limit) {
  constexpr std::string_view op = "events_after";
  BERTH_TRY(check_account(account, op));
  BERTH_TRY(check_limit(limit, op));
  std::lock_guard lock(mu_);
  BERTH_ASSIGN(auto st, conn_->prepare("SELECT seq, account, doc FROM events "
                                       "WHERE account = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                                       op));
  st.bind(1, account).bind(2, seq).bind(3, limit);
  return read_rows(st, [](const Statement& s) {
    return EventRecord{s.int64(0), s.text(1), s.text(2)};
  });
}

// ---------------------------------------------------------------------------
// Ledger

Result<Store::LedgerAppend> SqliteStore::append_ledger(
    const std::string& account, const std::string& task_id, int64_t period, bool final,
    int64_t from_ms,
    const std::function<Result<StoredLedgerRow>(const std::string& prev_hash)>& make) {
  constexpr std::string_view op = "append_ledger";
  BERTH_TRY(check_account(account, op));
  if (task_id.empty()) return kind_error(ErrorKind::invalid, kStep, "{}: empty task id", op);
  std::lock_guard lock(mu_);
  // One write transaction (BEGIN IMMEDIATE): the existence check, the
  // head's read and the insert see no other writer in between, in this
  // process (the mutex) or another (SQLite's lock).
  BERTH_ASSIGN(auto tx, Transaction::begin(*conn_, op));
  BERTH_ASSIGN(auto existing, existing_ledger_row(*conn_, account, task_id, period));
  if (existing) return LedgerAppend{std::move(*existing), false};
  BERTH_ASSIGN(std::string prev_hash, ledger_head(*conn_, account));
  BERTH_ASSIGN(StoredLedgerRow row, make(prev_hash));
  BERTH_TRY(check_made_row(row, account, task_id, period, final, from_ms, prev_hash));
  BERTH_ASSIGN(row.seq, insert_ledger_row(*conn_, row, from_ms));
  BERTH_TRY(tx.commit());
  return LedgerAppend{std::move(row), true};
}

Result<std::vector<StoredLedgerRow>> SqliteStore::ledger(const LedgerQuery& q) {
  constexpr std::string_view op = "ledger";
  BERTH_TRY(check_limit(q.limit, op));
  std::lock_guard lock(mu_);
  // Two statements, so that one account's query walks its own index.
  auto prepared = q.account.empty()
                      ? conn_->prepare("SELECT " LEDGER_COLUMNS
                                       " FROM ledger "
                                       "WHERE (?2 = '' OR task_id = ?2) "
                                       "AND from_ms >= ?3 AND from_ms < ?4 AND seq > ?5 "
                                       "ORDER BY seq LIMIT ?6",
                                       op)
                      : conn_->prepare("SELECT " LEDGER_COLUMNS
                                       " FROM ledger "
                                       "WHERE account = ?1 AND (?2 = '' OR task_id = ?2) "
                                       "AND from_ms >= ?3 AND from_ms < ?4 AND seq > ?5 "
                                       "ORDER BY seq LIMIT ?6",
                                       op);
  if (!prepared) return std::unexpected(std::move(prepared).error());
  Statement& st = *prepared;
  if (!q.account.empty()) st.bind(1, q.account);
  st.bind(2, q.task_id).bind(3, q.from_ms).bind(4, q.to_ms).bind(5, q.after_seq);
  st.bind(6, q.limit);
  return read_rows(st, read_ledger_row);
}

Result<std::vector<std::string>> SqliteStore::ledger_accounts() {
  std::lock_guard lock(mu_);
  BERTH_ASSIGN(auto st, conn_->prepare("SELECT DISTINCT account FROM ledger ORDER BY account",
                                       "ledger_accounts"));
  return read_rows(st, [](const Statement& s) { return s.text(0); });
}

// ---------------------------------------------------------------------------
// Meter checkpoints

Result<void> SqliteStore::put_checkpoint(const MeterCheckpoint& c) {
  constexpr std::string_view op = "put_checkpoint";
  BERTH_TRY(check_account(c.account, op));
  if (c.task_id.empty()) return kind_error(ErrorKind::invalid, kStep, "{}: empty task id", op);
  std::lock_guard lock(mu_);
  BERTH_ASSIGN(auto st, conn_->prepare("INSERT INTO meter_checkpoints (account, task_id, doc) "
                                       "VALUES (?1, ?2, ?3) ON CONFLICT (account, task_id) "
                                       "DO UPDATE SET doc = excluded.doc",
                                       op));
  st.bind(1, c.account).bind(2, c.task_id).bind(3, c.doc);
  return st.run();
}

Result<std::optional<MeterCheckpoint>> SqliteStore::get_checkpoint(const std::string& account,
                                                                   const std::string& task_id) {
  constexpr std::string_view op = "get_checkpoint";
  BERTH_TRY(check_account(account, op));
  std::lock_guard lock(mu_);
  BERTH_ASSIGN(auto st, conn_->prepare("SELECT account, task_id, doc FROM meter_checkpoints "
                                       "WHERE account = ?1 AND task_id = ?2",
                                       op));
  st.bind(1, account).bind(2, task_id);
  return read_one(st, read_checkpoint);
}

Result<std::vector<MeterCheckpoint>> SqliteStore::checkpoints() {
  std::lock_guard lock(mu_);
  BERTH_ASSIGN(auto st, conn_->prepare("SELECT account, task_id, doc FROM meter_checkpoints "
                                       "ORDER BY account, task_id",
                                       "checkpoints"));
  return read_rows(st, read_checkpoint);
}

Result<void> SqliteStore::erase_checkpoint(const std::string& account, const std::string& task_id) {
  constexpr std::string_view op = "erase_checkpoint";
  BERTH_TRY(check_account(account, op));
  std::lock_guard lock(mu_);
  BERTH_ASSIGN(auto st, conn_->prepare("DELETE FROM meter_checkpoints "
                                       "WHERE account = ?1 AND task_id = ?2",
                                       op));
  st.bind(1, account).bind(2, task_id);
  return st.run();
}

}  // namespace berth::cp
