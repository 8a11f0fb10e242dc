// SqliteStore on real SQLite files in a unique temp dir: every method,
// pagination edges, compare-and-swap, revisions never reused, account
// isolation, migration from a hand-made version 1 database, refusal of a
// newer one, concurrent writers, and kill -9 in the middle of writes; the
// ledger (append-only, idempotent, chained per account, tamper found by
// verify_chain, kill -9 while appending) and meter checkpoints.
//
// The raw SQLite calls here only build fixtures (the frozen version 1
// schema) and look at what the store left on disk.
#include "controlplane/store/sqlite_store.h"

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <catch2/catch.hpp>

#include "controlplane/store/schema.h"
#include "tests/unit/result_check.h"
#include "tests/unit/temp_dir.h"

using berth::ErrorKind;
using berth::Result;
using berth::test::fails;
using berth::test::ok;
using berth::test::TempDir;
using namespace berth::cp;

namespace {

constexpr const char* kA = "111111111111";
constexpr const char* kB = "222222222222";

// A raw connection for fixtures and for looking at the file.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    REQUIRE(sqlite3_open(path.c_str(), &db_) == SQLITE_OK);
  }
  ~RawDb() { sqlite3_close(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;
  void exec(const std::string& sql) {
    INFO(sql);
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    INFO((err ? err : ""));
    sqlite3_free(err);
    REQUIRE(rc == SQLITE_OK);
  }
  // The first column of the first row ("" if none).
  std::string query(const std::string& sql) {
    INFO(sql);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
    std::string out;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != nullptr) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

std::unique_ptr<SqliteStore> open_store(const std::string& path, SqliteStoreOptions o = {}) {
  auto s = SqliteStore::open(path, o);
  INFO((s ? "" : s.error().str()));
  REQUIRE(s.has_value());
  return std::move(*s);
}

TaskRecord task(const std::string& account, const std::string& id,
                const std::string& cluster = "default") {
  TaskRecord t;
  t.account = account;
  t.cluster = cluster;
  t.id = id;
  t.family = "web";
  t.group = "family:web";
  t.desired_status = "RUNNING";
  t.last_status = "PENDING";
  t.version = 1;
  t.doc = "{\"id\":\"" + id + "\"}";
  return t;
}

std::vector<std::string> ids(const std::vector<TaskRecord>& ts) {
  std::vector<std::string> out;
  for (const auto& t : ts) out.push_back(t.id);
  return out;
}

std::vector<std::string> revs(const std::vector<TaskDefinitionRecord>& ds) {
  std::vector<std::string> out;
  for (const auto& d : ds) out.push_back(d.family + ":" + std::to_string(d.revision));
  return out;
}

TaskDefinitionRecord add_def(Store& s, const std::string& account, const std::string& family) {
  return ok(s.add_task_definition(account, family, [&](int rev) -> Result<std::string> {
    return family + ":" + std::to_string(rev);
  }));
}

struct Fixture {
  TempDir tmp;
  std::string path = tmp / "berthd.db";
  std::unique_ptr<SqliteStore> store = open_store(path);
};

// Version 1 of the schema exactly as it first shipped (store/schema.cc):
// frozen here, so that the migration test keeps testing the upgrade of a
// real old database even when later versions change the tables.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE clusters (account TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL,
  doc TEXT NOT NULL, PRIMARY KEY (account, name)) WITHOUT ROWID;
CREATE TABLE families (account TEXT NOT NULL, family TEXT NOT NULL,
  last_revision INTEGER NOT NULL, PRIMARY KEY (account, family)) WITHOUT ROWID;
CREATE TABLE task_definitions (account TEXT NOT NULL, family TEXT NOT NULL,
  revision INTEGER NOT NULL, status TEXT NOT NULL, doc TEXT NOT NULL,
  PRIMARY KEY (account, family, revision),
  FOREIGN KEY (account, family) REFERENCES families (account, family)) WITHOUT ROWID;
CREATE TABLE tasks (account TEXT NOT NULL, id TEXT NOT NULL, cluster TEXT NOT NULL,
  family TEXT NOT NULL, started_by TEXT NOT NULL, task_group TEXT NOT NULL,
  desired_status TEXT NOT NULL, last_status TEXT NOT NULL, version INTEGER NOT NULL,
  stopped_at REAL NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (account, id)) WITHOUT ROWID;
CREATE TABLE tags (account TEXT NOT NULL, arn TEXT NOT NULL, key TEXT NOT NULL,
  value TEXT NOT NULL, UNIQUE (account, arn, key));
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL,
  doc TEXT NOT NULL);
PRAGMA user_version = 1;
)sql";

}  // namespace

// ---------------------------------------------------------------------------
// Opening

TEST_CASE("cp-store: a new database is created 0600 in WAL mode at the current schema version",
          "[cp-store]") {
  Fixture f;
  struct stat st {};
  REQUIRE(::stat(f.path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  RawDb raw(f.path);
  CHECK(raw.query("PRAGMA journal_mode") == "wal");
  CHECK(raw.query("PRAGMA user_version") == std::to_string(kSchemaVersion));
  ok(f.store->check_integrity());
}

TEST_CASE("cp-store: reopening keeps the data and the schema", "[cp-store]") {
  Fixture f;
  ok(f.store->put_cluster({kA, "default", "ACTIVE", "{}"}));
  f.store.reset();
  auto again = open_store(f.path);
  auto c = ok(again->get_cluster(kA, "default"));
  REQUIRE(c.has_value());
  CHECK(c->doc == "{}");
}

TEST_CASE("cp-store: a database of a newer schema version is refused and left untouched",
          "[cp-store]") {
  TempDir tmp;
  std::string path = tmp / "berthd.db";
  {
    RawDb raw(path);
    raw.exec(kSchemaV1);
    raw.exec("PRAGMA user_version = " + std::to_string(kSchemaVersion + 1));
  }
  auto e = fails(SqliteStore::open(path));
  CHECK(e.kind == ErrorKind::unsupported);
  CHECK(e.str() == "store: " + path + ": schema version " + std::to_string(kSchemaVersion + 1) +
                       " is newer than this berthd supports (" + std::to_string(kSchemaVersion) +
                       "); refusing to open it (run the newer berthd, or restore a backup made "
                       "by this version)");
  // Not even the journal mode was switched: never opened for writing.
  RawDb raw(path);
  CHECK(raw.query("PRAGMA journal_mode") == "delete");
  CHECK(raw.query("PRAGMA user_version") == std::to_string(kSchemaVersion + 1));
}

TEST_CASE("cp-store: a version 1 database made by hand is migrated with its rows", "[cp-store]") {
  TempDir tmp;
  std::string path = tmp / "berthd.db";
  {
    RawDb raw(path);
    raw.exec(kSchemaV1);
    raw.exec(std::string("INSERT INTO clusters VALUES ('") + kA + "', 'default', 'ACTIVE', 'c');" +
             "INSERT INTO families VALUES ('" + kA + "', 'web', 2);" +
             "INSERT INTO task_definitions VALUES ('" + kA + "', 'web', 1, 'INACTIVE', 'd1');" +
             "INSERT INTO task_definitions VALUES ('" + kA + "', 'web', 2, 'ACTIVE', 'd2');" +
             "INSERT INTO tasks VALUES ('" + kA +
             "', 't1', 'default', 'web', '', 'family:web', 'RUNNING', 'RUNNING', 3, 0, 'x');" +
             "INSERT INTO tasks VALUES ('" + kA +
             "', 't2', 'default', 'web', '', 'family:web', 'STOPPED', 'STOPPED', 5, 100, 'y');" +
             "INSERT INTO tags VALUES ('" + kA + "', 'arn:c', 'k', 'v');" +
             "INSERT INTO events (account, doc) VALUES ('" + kA + "', 'e1');");
  }
  auto store = open_store(path);
  {
    RawDb raw(path);
    CHECK(raw.query("PRAGMA user_version") == std::to_string(kSchemaVersion));
    CHECK(raw.query("PRAGMA journal_mode") == "wal");
    CHECK(raw.query("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN "
                    "('tasks_live', 'tasks_stopped_at', 'events_by_account')") == "3");
  }
  CHECK(ok(store->get_cluster(kA, "default"))->doc == "c");
  CHECK(ok(store->get_task_definition(kA, "web", 0))->revision == 2);
  CHECK(add_def(*store, kA, "web").revision == 3);
  CHECK(ids(ok(store->live_tasks())) == std::vector<std::string>{"t1"});
  CHECK(ok(store->get_task(kA, "t2"))->version == 5);
  CHECK(ok(store->tags(kA, "arn:c")).size() == 1);
  CHECK(ok(store->events_after(kA, 0, 10)).at(0).doc == "e1");
  CHECK(ok(store->append_event(kA, "e2")) == 2);
  ok(store->check_integrity());
}

TEST_CASE("cp-store: a file that is not a database fails with the operation and SQLite's message",
          "[cp-store]") {
  TempDir tmp;
  std::string path = tmp / "berthd.db";
  {
    FILE* f = fopen(path.c_str(), "w");
    REQUIRE(f != nullptr);
    fputs("this is not an SQLite database, only text long enough to have a header ....", f);
    fclose(f);
  }
  auto e = fails(SqliteStore::open(path));
  CHECK(e.str() == "store: read schema version: PRAGMA user_version: file is not a database");
}

TEST_CASE("cp-store: full_sync opens and commits, bad options are refused", "[cp-store]") {
  TempDir tmp;
  SqliteStoreOptions o;
  o.full_sync = true;
  auto store = open_store(tmp / "full.db", o);
  ok(store->put_task(task(kA, "t1"), 0));
  CHECK(ok(store->get_task(kA, "t1")).has_value());
  o.max_events = 0;
  CHECK(fails(SqliteStore::open(tmp / "x.db", o)).kind == ErrorKind::invalid);
  o.max_events = 10;
  o.busy_timeout_ms = -1;
  CHECK(fails(SqliteStore::open(tmp / "x.db", o)).kind == ErrorKind::invalid);
}

// ---------------------------------------------------------------------------
// Clusters

TEST_CASE("cp-store: clusters are put, overwritten, read and listed by name", "[cp-store]") {
  Fixture f;
  CHECK_FALSE(ok(f.store->get_cluster(kA, "default")).has_value());
  ok(f.store->put_cluster({kA, "zeta", "ACTIVE", "z"}));
  ok(f.store->put_cluster({kA, "default", "ACTIVE", "d1"}));
  ok(f.store->put_cluster({kA, "default", "INACTIVE", "d2"}));
  auto c = ok(f.store->get_cluster(kA, "default"));
  REQUIRE(c.has_value());
  CHECK(c->account == kA);
  CHECK(c->name == "default");
  CHECK(c->status == "INACTIVE");
  CHECK(c->doc == "d2");
  auto all = ok(f.store->list_clusters(kA));
  REQUIRE(all.size() == 2);
  CHECK(all[0].name == "default");
  CHECK(all[1].name == "zeta");
  CHECK(fails(f.store->put_cluster({"", "x", "ACTIVE", ""})).str() ==
        "store: put_cluster: empty account");
}

// ---------------------------------------------------------------------------
// Task definitions

TEST_CASE("cp-store: revisions count up per family and are never reused", "[cp-store]") {
  Fixture f;
  auto d1 = add_def(*f.store, kA, "web");
  CHECK(d1.revision == 1);
  CHECK(d1.status == "ACTIVE");
  CHECK(d1.doc == "web:1");
  CHECK(add_def(*f.store, kA, "web").revision == 2);
  CHECK(add_def(*f.store, kA, "db").revision == 1);
  CHECK(add_def(*f.store, kB, "web").revision == 1);

  SECTION("a failing make_doc stores nothing and uses no revision") {
    auto e = fails(f.store->add_task_definition(kA, "web", [](int) -> Result<std::string> {
      return berth::kind_error(ErrorKind::invalid, "model", "bad definition");
    }));
    CHECK(e.str() == "model: bad definition");
    CHECK_FALSE(ok(f.store->get_task_definition(kA, "web", 3)).has_value());
    CHECK(add_def(*f.store, kA, "web").revision == 3);
  }
  SECTION("deregistering the latest revision does not free its number, even after reopening") {
    auto d2 = *ok(f.store->get_task_definition(kA, "web", 2));
    d2.status = "INACTIVE";
    d2.doc = "web:2 inactive";
    ok(f.store->update_task_definition(d2));
    CHECK(ok(f.store->get_task_definition(kA, "web", 2))->doc == "web:2 inactive");
    CHECK(ok(f.store->get_task_definition(kA, "web", 0))->revision == 1);
    f.store.reset();
    f.store = open_store(f.path);
    CHECK(add_def(*f.store, kA, "web").revision == 3);
  }
}

TEST_CASE("cp-store: revision 0 reads the latest ACTIVE one", "[cp-store]") {
  Fixture f;
  CHECK_FALSE(ok(f.store->get_task_definition(kA, "web", 0)).has_value());
  add_def(*f.store, kA, "web");
  add_def(*f.store, kA, "web");
  CHECK(ok(f.store->get_task_definition(kA, "web", 0))->revision == 2);
  for (int rev : {1, 2}) {
    auto d = *ok(f.store->get_task_definition(kA, "web", rev));
    d.status = "INACTIVE";
    ok(f.store->update_task_definition(d));
  }
  CHECK_FALSE(ok(f.store->get_task_definition(kA, "web", 0)).has_value());
  CHECK(ok(f.store->get_task_definition(kA, "web", 1)).has_value());
  CHECK(fails(f.store->get_task_definition(kA, "web", -1)).kind == ErrorKind::invalid);
}

TEST_CASE("cp-store: updating a missing task definition is not_found", "[cp-store]") {
  Fixture f;
  auto e = fails(f.store->update_task_definition({kA, "web", 1, "INACTIVE", ""}));
  CHECK(e.kind == ErrorKind::not_found);
  CHECK(e.str() == std::string("store: update_task_definition: no task definition web:1 in "
                               "account ") +
                       kA);
}

TEST_CASE("cp-store: task definitions are listed by prefix and status, in both orders, by page",
          "[cp-store]") {
  Fixture f;
  for (const char* fam : {"api", "web", "web-worker", "api", "web", "db"})
    add_def(*f.store, kA, fam);
  // api:1 api:2 db:1 web:1 web:2 web-worker:1; web:1 deregistered.
  auto w1 = *ok(f.store->get_task_definition(kA, "web", 1));
  w1.status = "INACTIVE";
  ok(f.store->update_task_definition(w1));
  bool more = true;

  DefinitionQuery q;
  q.account = kA;
  CHECK(revs(ok(f.store->list_task_definitions(q, &more))) ==
        std::vector<std::string>{"api:1", "api:2", "db:1", "web:1", "web:2", "web-worker:1"});
  CHECK_FALSE(more);

  q.family_prefix = "web";
  CHECK(revs(ok(f.store->list_task_definitions(q, &more))) ==
        std::vector<std::string>{"web:1", "web:2", "web-worker:1"});
  q.status = "ACTIVE";
  CHECK(revs(ok(f.store->list_task_definitions(q, &more))) ==
        std::vector<std::string>{"web:2", "web-worker:1"});
  q.status = "INACTIVE";
  CHECK(revs(ok(f.store->list_task_definitions(q, &more))) == std::vector<std::string>{"web:1"});

  SECTION("descending, page by page") {
    q = DefinitionQuery{};
    q.account = kA;
    q.descending = true;
    q.limit = 4;
    CHECK(revs(ok(f.store->list_task_definitions(q, &more))) ==
          std::vector<std::string>{"web-worker:1", "web:2", "web:1", "db:1"});
    CHECK(more);
    q.after_family = "db";
    q.after_revision = 1;
    CHECK(revs(ok(f.store->list_task_definitions(q, &more))) ==
          std::vector<std::string>{"api:2", "api:1"});
    CHECK_FALSE(more);
  }
  SECTION("ascending pages: a page exactly full has no more, after the last is empty") {
    q = DefinitionQuery{};
    q.account = kA;
    q.limit = 3;
    CHECK(revs(ok(f.store->list_task_definitions(q, &more))) ==
          std::vector<std::string>{"api:1", "api:2", "db:1"});
    CHECK(more);
    q.after_family = "db";
    q.after_revision = 1;
    CHECK(revs(ok(f.store->list_task_definitions(q, &more))) ==
          std::vector<std::string>{"web:1", "web:2", "web-worker:1"});
    CHECK_FALSE(more);
    q.after_family = "web-worker";
    CHECK(ok(f.store->list_task_definitions(q, &more)).empty());
    CHECK_FALSE(more);
    q.after_family = "web";
    q.after_revision = 1;
    q.limit = 1;
    CHECK(revs(ok(f.store->list_task_definitions(q, &more))) == std::vector<std::string>{"web:2"});
    CHECK(more);
    // A null `more` is allowed.
    CHECK(ok(f.store->list_task_definitions(q, nullptr)).size() == 1);
  }
  SECTION("bad limits and statuses are invalid") {
    q.limit = 0;
    CHECK(fails(f.store->list_task_definitions(q, &more)).str() ==
          "store: list_task_definitions: limit 0 < 1");
    q.limit = 10;
    q.status = "DELETED";
    CHECK(fails(f.store->list_families(q, &more)).str() ==
          "store: list_families: status 'DELETED' is not ACTIVE or INACTIVE");
  }
}

TEST_CASE("cp-store: families are listed by prefix, ACTIVE while one revision is, by page",
          "[cp-store]") {
  Fixture f;
  for (const char* fam : {"api", "web", "web-worker", "db"}) add_def(*f.store, kA, fam);
  add_def(*f.store, kA, "web");
  auto d = *ok(f.store->get_task_definition(kA, "db", 1));
  d.status = "INACTIVE";
  ok(f.store->update_task_definition(d));
  d = *ok(f.store->get_task_definition(kA, "web", 1));
  d.status = "INACTIVE";
  ok(f.store->update_task_definition(d));  // web:2 still ACTIVE
  bool more = true;

  DefinitionQuery q;
  q.account = kA;
  CHECK(ok(f.store->list_families(q, &more)) ==
        std::vector<std::string>{"api", "db", "web", "web-worker"});
  CHECK_FALSE(more);
  q.status = "ACTIVE";
  CHECK(ok(f.store->list_families(q, &more)) ==
        std::vector<std::string>{"api", "web", "web-worker"});
  q.status = "INACTIVE";
  CHECK(ok(f.store->list_families(q, &more)) == std::vector<std::string>{"db"});
  q.status.reset();
  q.family_prefix = "we";
  CHECK(ok(f.store->list_families(q, &more)) == std::vector<std::string>{"web", "web-worker"});

  q.family_prefix.clear();
  q.limit = 2;
  CHECK(ok(f.store->list_families(q, &more)) == std::vector<std::string>{"api", "db"});
  CHECK(more);
  q.after_family = "db";
  CHECK(ok(f.store->list_families(q, &more)) == std::vector<std::string>{"web", "web-worker"});
  CHECK_FALSE(more);
  q.descending = true;
  q.after_family = "web";
  CHECK(ok(f.store->list_families(q, &more)) == std::vector<std::string>{"db", "api"});
  CHECK_FALSE(more);
}

// ---------------------------------------------------------------------------
// Tasks

TEST_CASE("cp-store: put_task inserts at expected version 0 and compares-and-swaps after",
          "[cp-store]") {
  Fixture f;
  auto t = task(kA, "t1");
  ok(f.store->put_task(t, 0));
  auto got = ok(f.store->get_task(kA, "t1"));
  REQUIRE(got.has_value());
  CHECK(got->cluster == "default");
  CHECK(got->family == "web");
  CHECK(got->group == "family:web");
  CHECK(got->desired_status == "RUNNING");
  CHECK(got->last_status == "PENDING");
  CHECK(got->version == 1);
  CHECK(got->doc == t.doc);

  auto again = fails(f.store->put_task(t, 0));
  CHECK(again.kind == ErrorKind::exists);
  CHECK(again.str() ==
        std::string("store: put_task: insert: task t1 already exists in account ") + kA);

  t.version = 2;
  t.last_status = "RUNNING";
  t.started_by = "me";
  ok(f.store->put_task(t, 1));
  CHECK(ok(f.store->get_task(kA, "t1"))->last_status == "RUNNING");

  // A writer that read version 1 lost the race.
  auto stale = t;
  stale.last_status = "STOPPED";
  auto e = fails(f.store->put_task(stale, 1));
  CHECK(e.kind == ErrorKind::busy);
  CHECK(e.str() ==
        "store: put_task: update: task t1 is at version 2, not 1: changed by another writer");
  CHECK(ok(f.store->get_task(kA, "t1"))->last_status == "RUNNING");

  // The version must move forward, or a second writer at the same version
  // would succeed too.
  CHECK(fails(f.store->put_task(t, 2)).kind == ErrorKind::invalid);
  CHECK(fails(f.store->put_task(task(kA, "t9"), -1)).kind == ErrorKind::invalid);

  auto missing = task(kA, "nope");
  missing.version = 2;
  CHECK(fails(f.store->put_task(missing, 1)).kind == ErrorKind::not_found);
  CHECK_FALSE(ok(f.store->get_task(kA, "nope")).has_value());
}

TEST_CASE("cp-store: list_tasks filters and pages in id order", "[cp-store]") {
  Fixture f;
  for (int i = 0; i < 7; ++i) {
    auto t = task(kA, "t" + std::to_string(i), i % 2 ? "odd" : "even");
    if (i == 3) t.family = "db";
    if (i == 4) t.started_by = "ci";
    if (i == 5) t.group = "service:x";
    if (i == 6) t.desired_status = "STOPPED";
    ok(f.store->put_task(t, 0));
  }
  bool more = true;
  TaskQuery q;
  q.account = kA;
  CHECK(ids(ok(f.store->list_tasks(q, &more))) ==
        std::vector<std::string>{"t0", "t1", "t2", "t3", "t4", "t5", "t6"});
  CHECK_FALSE(more);

  q.cluster = "odd";
  CHECK(ids(ok(f.store->list_tasks(q, &more))) == std::vector<std::string>{"t1", "t3", "t5"});
  q.cluster.reset();
  q.family = "db";
  CHECK(ids(ok(f.store->list_tasks(q, &more))) == std::vector<std::string>{"t3"});
  q.family.reset();
  q.started_by = "ci";
  CHECK(ids(ok(f.store->list_tasks(q, &more))) == std::vector<std::string>{"t4"});
  q.started_by.reset();
  q.group = "service:x";
  CHECK(ids(ok(f.store->list_tasks(q, &more))) == std::vector<std::string>{"t5"});
  q.group.reset();
  q.desired_status = "RUNNING";
  q.cluster = "even";
  CHECK(ids(ok(f.store->list_tasks(q, &more))) == std::vector<std::string>{"t0", "t2", "t4"});
  q.cluster.reset();
  q.desired_status.reset();

  q.limit = 3;
  CHECK(ids(ok(f.store->list_tasks(q, &more))) == std::vector<std::string>{"t0", "t1", "t2"});
  CHECK(more);
  q.after_id = "t2";
  CHECK(ids(ok(f.store->list_tasks(q, &more))) == std::vector<std::string>{"t3", "t4", "t5"});
  CHECK(more);
  q.after_id = "t5";
  CHECK(ids(ok(f.store->list_tasks(q, &more))) == std::vector<std::string>{"t6"});
  CHECK_FALSE(more);
  q.after_id = "t3";
  CHECK(ids(ok(f.store->list_tasks(q, &more))) == std::vector<std::string>{"t4", "t5", "t6"});
  CHECK_FALSE(more);
  q.after_id = "t6";
  CHECK(ok(f.store->list_tasks(q, &more)).empty());
  CHECK_FALSE(more);
  q.limit = 0;
  CHECK(fails(f.store->list_tasks(q, &more)).kind == ErrorKind::invalid);
}

TEST_CASE("cp-store: live_tasks are every account's tasks not STOPPED", "[cp-store]") {
  Fixture f;
  auto a1 = task(kA, "a1");
  auto a2 = task(kA, "a2");
  a2.last_status = "STOPPED";
  auto b1 = task(kB, "b1");
  b1.last_status = "RUNNING";
  for (const auto& t : {a1, a2, b1}) ok(f.store->put_task(t, 0));
  auto live = ok(f.store->live_tasks());
  REQUIRE(live.size() == 2);
  CHECK(live[0].account == kA);
  CHECK(live[0].id == "a1");
  CHECK(live[1].account == kB);
  CHECK(live[1].id == "b1");
}

TEST_CASE("cp-store: expire_tasks removes tasks stopped before the cutoff and their tags",
          "[cp-store]") {
  Fixture f;
  auto old_a = task(kA, "old");
  old_a.last_status = "STOPPED";
  old_a.stopped_at = 100;
  auto new_a = task(kA, "new");
  new_a.last_status = "STOPPED";
  new_a.stopped_at = 300;
  auto old_b = task(kB, "oldb", "prod");
  old_b.last_status = "STOPPED";
  old_b.stopped_at = 150;
  auto running = task(kA, "run");
  for (const auto& t : {old_a, new_a, old_b, running}) ok(f.store->put_task(t, 0));
  std::string arn_old = std::string("arn:aws:ecs:local:") + kA + ":task/default/old";
  std::string arn_new = std::string("arn:aws:ecs:local:") + kA + ":task/default/new";
  std::string arn_b = std::string("arn:aws:ecs:local:") + kB + ":task/prod/oldb";
  std::string arn_cluster = std::string("arn:aws:ecs:local:") + kA + ":cluster/old";
  ok(f.store->tag(kA, arn_old, {{"k", "v"}}));
  ok(f.store->tag(kA, arn_new, {{"k", "v"}}));
  ok(f.store->tag(kB, arn_b, {{"k", "v"}}));
  ok(f.store->tag(kA, arn_cluster, {{"k", "v"}}));

  CHECK(ok(f.store->expire_tasks(200)) == 2);
  CHECK_FALSE(ok(f.store->get_task(kA, "old")).has_value());
  CHECK_FALSE(ok(f.store->get_task(kB, "oldb")).has_value());
  CHECK(ok(f.store->get_task(kA, "new")).has_value());
  CHECK(ok(f.store->get_task(kA, "run")).has_value());
  CHECK(ok(f.store->tags(kA, arn_old)).empty());
  CHECK(ok(f.store->tags(kB, arn_b)).empty());
  CHECK(ok(f.store->tags(kA, arn_new)).size() == 1);
  CHECK(ok(f.store->tags(kA, arn_cluster)).size() == 1);
  CHECK(ok(f.store->expire_tasks(200)) == 0);
}

// ---------------------------------------------------------------------------
// Tags and events

TEST_CASE("cp-store: tags are set, overwritten in place, removed, per ARN", "[cp-store]") {
  Fixture f;
  using Tags = std::vector<std::pair<std::string, std::string>>;
  CHECK(ok(f.store->tags(kA, "arn:x")).empty());
  ok(f.store->tag(kA, "arn:x", {{"b", "1"}, {"a", "2"}}));
  ok(f.store->tag(kA, "arn:y", {{"c", "3"}}));
  ok(f.store->tag(kA, "arn:x", {{"b", "9"}, {"z", "0"}}));
  CHECK(ok(f.store->tags(kA, "arn:x")) == Tags{{"b", "9"}, {"a", "2"}, {"z", "0"}});
  ok(f.store->untag(kA, "arn:x", {"a", "missing"}));
  CHECK(ok(f.store->tags(kA, "arn:x")) == Tags{{"b", "9"}, {"z", "0"}});
  CHECK(ok(f.store->tags(kA, "arn:y")) == Tags{{"c", "3"}});
}

TEST_CASE("cp-store: events get increasing numbers and are read back per account", "[cp-store]") {
  Fixture f;
  CHECK(ok(f.store->append_event(kA, "a1")) == 1);
  CHECK(ok(f.store->append_event(kB, "b1")) == 2);
  CHECK(ok(f.store->append_event(kA, "a2")) == 3);
  CHECK(ok(f.store->append_event(kA, "a3")) == 4);
  auto evs = ok(f.store->events_after(kA, 0, 10));
  REQUIRE(evs.size() == 3);
  CHECK(evs[0].seq == 1);
  CHECK(evs[0].account == kA);
  CHECK(evs[0].doc == "a1");
  CHECK(evs[2].seq == 4);
  evs = ok(f.store->events_after(kA, 1, 1));
  REQUIRE(evs.size() == 1);
  CHECK(evs[0].doc == "a2");
  CHECK(ok(f.store->events_after(kA, 4, 10)).empty());
  CHECK(fails(f.store->events_after(kA, 0, 0)).kind == ErrorKind::invalid);
}

TEST_CASE("cp-store: the event table keeps only the newest max_events rows", "[cp-store]") {
  TempDir tmp;
  SqliteStoreOptions o;
  o.max_events = 3;
  auto store = open_store(tmp / "berthd.db", o);
  for (int i = 1; i <= 5; ++i) ok(store->append_event(kA, "e" + std::to_string(i)));
  auto evs = ok(store->events_after(kA, 0, 10));
  REQUIRE(evs.size() == 3);
  CHECK(evs[0].seq == 3);
  CHECK(evs[2].seq == 5);
  // Numbers are not reused after pruning, nor after reopening.
  store.reset();
  store = open_store(tmp / "berthd.db", o);
  CHECK(ok(store->append_event(kA, "e6")) == 6);
}

// ---------------------------------------------------------------------------
// Accounts

TEST_CASE("cp-store: account B never sees nor changes account A's rows", "[cp-store]") {
  Fixture f;
  ok(f.store->put_cluster({kA, "default", "ACTIVE", "a"}));
  add_def(*f.store, kA, "web");
  ok(f.store->put_task(task(kA, "t1"), 0));
  ok(f.store->tag(kA, "arn:shared", {{"k", "a"}}));
  ok(f.store->append_event(kA, "a"));
  bool more = true;

  CHECK_FALSE(ok(f.store->get_cluster(kB, "default")).has_value());
  CHECK(ok(f.store->list_clusters(kB)).empty());
  CHECK_FALSE(ok(f.store->get_task_definition(kB, "web", 0)).has_value());
  CHECK_FALSE(ok(f.store->get_task_definition(kB, "web", 1)).has_value());
  DefinitionQuery dq;
  dq.account = kB;
  CHECK(ok(f.store->list_task_definitions(dq, &more)).empty());
  CHECK(ok(f.store->list_families(dq, &more)).empty());
  CHECK(fails(f.store->update_task_definition({kB, "web", 1, "INACTIVE", "b"})).kind ==
        ErrorKind::not_found);
  CHECK_FALSE(ok(f.store->get_task(kB, "t1")).has_value());
  TaskQuery tq;
  tq.account = kB;
  CHECK(ok(f.store->list_tasks(tq, &more)).empty());
  auto b_task = task(kB, "t1");
  b_task.version = 2;
  CHECK(fails(f.store->put_task(b_task, 1)).kind == ErrorKind::not_found);
  CHECK(ok(f.store->tags(kB, "arn:shared")).empty());
  ok(f.store->untag(kB, "arn:shared", {"k"}));
  CHECK(ok(f.store->events_after(kB, 0, 10)).empty());

  // The same names in B are B's own, and A's are unchanged.
  ok(f.store->put_cluster({kB, "default", "ACTIVE", "b"}));
  ok(f.store->put_task(task(kB, "t1"), 0));
  CHECK(ok(f.store->get_cluster(kA, "default"))->doc == "a");
  CHECK(ok(f.store->tags(kA, "arn:shared")).size() == 1);
  CHECK(ok(f.store->get_task_definition(kA, "web", 1))->status == "ACTIVE");
  CHECK(ok(f.store->get_task(kA, "t1"))->account == kA);
}

// ---------------------------------------------------------------------------
// Concurrency and crashes

TEST_CASE("cp-store: 4 threads on 2 connections increment one task with CAS and lose no update",
          "[cp-store]") {
  Fixture f;
  auto second = open_store(f.path);
  auto t = task(kA, "counter");
  t.doc = "0";
  ok(f.store->put_task(t, 0));

  constexpr int kThreads = 4;
  constexpr int kIncrements = 50;
  std::mutex mu;
  std::vector<std::string> failures;
  std::atomic<int> conflicts{0};
  auto worker = [&](Store* s) {
    for (int i = 0; i < kIncrements; ++i) {
      for (;;) {
        auto cur = s->get_task(kA, "counter");
        if (!cur || !*cur) {
          std::lock_guard l(mu);
          failures.push_back(cur ? "counter missing" : cur.error().str());
          return;
        }
        TaskRecord next = **cur;
        next.version = next.version + 1;
        next.doc = std::to_string(std::stoi(next.doc) + 1);
        auto put = s->put_task(next, (*cur)->version);
        if (put) break;
        if (put.error().kind != ErrorKind::busy) {
          std::lock_guard l(mu);
          failures.push_back(put.error().str());
          return;
        }
        ++conflicts;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back(worker, i % 2 ? static_cast<Store*>(second.get()) : f.store.get());
  }
  for (auto& th : threads) th.join();
  INFO("CAS conflicts retried: " << conflicts.load());
  CHECK(failures.empty());
  for (const auto& e : failures) WARN(e);
  auto final_task = ok(f.store->get_task(kA, "counter"));
  REQUIRE(final_task.has_value());
  CHECK(final_task->doc == std::to_string(kThreads * kIncrements));
  CHECK(final_task->version == 1 + kThreads * kIncrements);
  ok(f.store->check_integrity());
}

namespace {

// The child of the kill -9 test: commits tasks k0, k1, ... forever, writing
// each number to `ack_fd` only once put_task has returned (committed). Never
// returns; it ends by SIGKILL or _exit on a failure.
[[noreturn]] void commit_forever(const std::string& path, int ack_fd) {
  auto store = SqliteStore::open(path);
  if (!store) _exit(2);
  for (int64_t i = 0;; ++i) {
    auto t = task(kA, "k" + std::to_string(i));
    t.doc = std::string(512, 'x');  // a few pages per checkpoint
    if (!(*store)->put_task(t, 0)) _exit(3);
    if (::write(ack_fd, &i, sizeof i) != sizeof i) _exit(4);
  }
}

// Forks a child that runs `child(ack_fd)` (it never returns: it writes an
// int64_t to ack_fd after each commit), reads acknowledgements until
// `count`, kills the child with SIGKILL wherever it is in its loop (most
// likely inside a write: that is where it spends its time), and returns
// every acknowledgement read, those after the kill included. The database
// is created before the fork; the parent holds no connection while the
// child runs (an SQLite connection must not cross a fork).
std::vector<int64_t> kill_after_acks(const std::function<void(int ack_fd)>& child, size_t count) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    child(fds[1]);
    _exit(5);
  }
  ::close(fds[1]);
  std::vector<int64_t> acked;
  auto read_ack = [&]() {
    int64_t i = 0;
    ssize_t n;
    do n = ::read(fds[0], &i, sizeof i);
    while (n < 0 && errno == EINTR);
    if (n == sizeof i) acked.push_back(i);
    return n == sizeof i;
  };
  while (acked.size() < count && read_ack()) {
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  while (read_ack()) {
  }
  ::close(fds[0]);
  INFO("child status " << status);
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  REQUIRE(acked.size() >= count);
  return acked;
}

}  // namespace

TEST_CASE("cp-store: after kill -9 in the middle of writes every acknowledged commit is there",
          "[cp-store]") {
  TempDir tmp;
  std::string path = tmp / "berthd.db";
  open_store(path).reset();
  auto acked = kill_after_acks([&](int ack_fd) { commit_forever(path, ack_fd); }, 300);

  auto store = open_store(path);
  ok(store->check_integrity());
  for (int64_t i : acked) {
    INFO("task k" << i);
    CHECK(ok(store->get_task(kA, "k" + std::to_string(i))).has_value());
  }
  // At most the one commit whose acknowledgement the kill cut off is extra.
  TaskQuery q;
  q.account = kA;
  q.limit = 100000;
  auto all = ok(store->list_tasks(q, nullptr));
  CHECK(all.size() >= acked.size());
  CHECK(all.size() <= acked.size() + 1);
}

// ---------------------------------------------------------------------------
// Ledger and meter checkpoints

namespace {

constexpr int64_t kPeriodMs = 3600 * 1000;

LedgerRecord ledger_record(const std::string& account, const std::string& task, int64_t period,
                           bool final, int64_t amount) {
  LedgerRecord r;
  r.account = account;
  r.cluster = "default";
  r.family = "web";
  r.revision = 1;
  r.task_id = task;
  r.period = period;
  r.final = final;
  r.from_ms = period * kPeriodMs;
  r.to_ms = r.from_ms + kPeriodMs;
  r.cpu_units = 512;
  r.memory_mib = 1024;
  r.billed_seconds = 3600;
  r.amount_micro_usd = amount;
  return r;
}

// What the meter's make() does: the record's doc, chained to prev_hash.
StoredLedgerRow made_row(const LedgerRecord& r, const std::string& prev_hash) {
  StoredLedgerRow row;
  row.account = r.account;
  row.task_id = r.task_id;
  row.period = r.period;
  row.final = r.final;
  row.doc = ledger_doc(r);
  row.prev_hash = prev_hash;
  row.hash = ledger_hash(prev_hash, row.doc);
  return row;
}

// Appends the record of (account, task, period, final) with `amount`,
// counting make's calls in *calls (if given).
Result<Store::LedgerAppend> append(Store& s, const std::string& account, const std::string& task,
                                   int64_t period, bool final, int64_t amount,
                                   int* calls = nullptr) {
  LedgerRecord r = ledger_record(account, task, period, final, amount);
  return s.append_ledger(account, task, period, final, r.from_ms,
                         [&](const std::string& prev) -> Result<StoredLedgerRow> {
                           if (calls != nullptr) ++*calls;
                           return made_row(r, prev);
                         });
}

std::vector<StoredLedgerRow> rows_of(Store& s, const std::string& account) {
  LedgerQuery q;
  q.account = account;
  return ok(s.ledger(q));
}

std::string problems(const ChainReport& r) {
  std::string out;
  for (const auto& p : r.problems) out += fmt::format("{} {}: {}\n", p.seq, p.task_id, p.what);
  return out;
}

}  // namespace

TEST_CASE("cp-store: append_ledger chains an account's rows and is idempotent per period",
          "[cp-store]") {
  Fixture f;
  int calls = 0;
  auto first = ok(append(*f.store, kA, "t1", 10, false, 411, &calls));
  CHECK(first.appended);
  CHECK(calls == 1);
  CHECK(first.row.seq > 0);
  CHECK(first.row.prev_hash == kGenesisHash);
  CHECK(first.row.hash == ledger_hash(kGenesisHash, first.row.doc));
  CHECK(first.row.account == kA);
  CHECK(first.row.task_id == "t1");
  CHECK(first.row.period == 10);
  CHECK_FALSE(first.row.final);

  // The same key again, even with another amount: the stored row, make not
  // called, nothing written.
  auto again = ok(append(*f.store, kA, "t1", 10, false, 999, &calls));
  CHECK_FALSE(again.appended);
  CHECK(calls == 1);
  CHECK(again.row.seq == first.row.seq);
  CHECK(again.row.doc == first.row.doc);
  CHECK(again.row.hash == first.row.hash);
  // Asking for the period's final record is the same key: the stored row.
  auto as_final = ok(append(*f.store, kA, "t1", 10, true, 999, &calls));
  CHECK_FALSE(as_final.appended);
  CHECK(as_final.row.seq == first.row.seq);
  CHECK(calls == 1);
  CHECK(rows_of(*f.store, kA).size() == 1);

  auto second = ok(append(*f.store, kA, "t1", 11, false, 412, &calls));
  CHECK(second.appended);
  CHECK(second.row.prev_hash == first.row.hash);
  CHECK(second.row.seq > first.row.seq);
  auto rows = rows_of(*f.store, kA);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].doc == first.row.doc);
  CHECK(rows[1].hash == second.row.hash);
  auto report = verify_chain(kA, rows);
  INFO(problems(report));
  CHECK(report.ok());
  CHECK(report.total_micro_usd == 411 + 412);

  // Reopened: the same rows, and an append is still a no-op.
  f.store.reset();
  auto store = open_store(f.path);
  CHECK(ok(append(*store, kA, "t1", 10, false, 1, &calls)).appended == false);
  CHECK(calls == 2);
  CHECK(rows_of(*store, kA).size() == 2);
}

TEST_CASE("cp-store: once a task has its final row nothing more is appended for it", "[cp-store]") {
  Fixture f;
  int calls = 0;
  ok(append(*f.store, kA, "t1", 5, false, 100, &calls));
  auto final_row = ok(append(*f.store, kA, "t1", 6, true, 50, &calls));
  CHECK(final_row.appended);
  CHECK(final_row.row.final);
  CHECK(calls == 2);
  for (int64_t period : {int64_t{6}, int64_t{7}, int64_t{100}}) {
    for (bool final : {false, true}) {
      auto later = ok(append(*f.store, kA, "t1", period, final, 1, &calls));
      CHECK_FALSE(later.appended);
      CHECK(later.row.seq == final_row.row.seq);
      CHECK(later.row.final);
    }
  }
  // An earlier period that has its own row gives that row back.
  auto earlier = ok(append(*f.store, kA, "t1", 5, false, 1, &calls));
  CHECK_FALSE(earlier.appended);
  CHECK(earlier.row.period == 5);
  // An earlier period with no row: the final row (the task is closed).
  auto missing = ok(append(*f.store, kA, "t1", 4, false, 1, &calls));
  CHECK_FALSE(missing.appended);
  CHECK(missing.row.seq == final_row.row.seq);
  CHECK(calls == 2);
  // Other tasks are not affected.
  CHECK(ok(append(*f.store, kA, "t2", 7, false, 1, &calls)).appended);
  CHECK(verify_chain(kA, rows_of(*f.store, kA)).ok());
}

TEST_CASE("cp-store: append_ledger stores nothing when make fails or makes a wrong row",
          "[cp-store]") {
  Fixture f;
  ok(append(*f.store, kA, "t1", 1, false, 1));
  LedgerRecord r = ledger_record(kA, "t2", 2, false, 7);
  auto failing = f.store->append_ledger(kA, "t2", 2, false, r.from_ms,
                                        [](const std::string&) -> Result<StoredLedgerRow> {
                                          return berth::error("meter", "no usage sample");
                                        });
  CHECK(fails(failing).str() == "meter: no usage sample");

  auto with = [&](auto change) {
    return f.store->append_ledger(kA, "t2", 2, false, r.from_ms,
                                  [&](const std::string& prev) -> Result<StoredLedgerRow> {
                                    StoredLedgerRow row = made_row(r, prev);
                                    change(row);
                                    return row;
                                  });
  };
  CHECK(fails(with([](StoredLedgerRow& row) { row.hash = std::string(64, 'a'); })).kind ==
        ErrorKind::invalid);
  CHECK(fails(with([](StoredLedgerRow& row) {
          row.prev_hash = std::string(kGenesisHash);
          row.hash = ledger_hash(row.prev_hash, row.doc);
        })).kind == ErrorKind::invalid);
  CHECK(fails(with([](StoredLedgerRow& row) { row.doc = "{}"; })).kind == ErrorKind::invalid);
  CHECK(fails(with([&](StoredLedgerRow& row) {
          row.doc = ledger_doc(ledger_record(kA, "t3", 2, false, 7));  // another task's doc
          row.hash = "";
        })).kind == ErrorKind::invalid);
  CHECK(fails(append(*f.store, "", "t2", 2, false, 1)).kind == ErrorKind::invalid);
  CHECK(fails(append(*f.store, kA, "", 2, false, 1)).kind == ErrorKind::invalid);
  CHECK(rows_of(*f.store, kA).size() == 1);

  // Empty prev_hash and hash are filled in by the store.
  auto filled = ok(with([](StoredLedgerRow& row) {
    row.prev_hash.clear();
    row.hash.clear();
  }));
  CHECK(filled.appended);
  CHECK(filled.row.hash == ledger_hash(filled.row.prev_hash, filled.row.doc));
  CHECK(verify_chain(kA, rows_of(*f.store, kA)).ok());
}

TEST_CASE("cp-store: each account has its own chain", "[cp-store]") {
  Fixture f;
  std::vector<int64_t> seqs;
  for (int i = 0; i < 20; ++i) {
    auto a = ok(append(*f.store, kA, "a" + std::to_string(i % 3), i, false, i));
    auto b = ok(append(*f.store, kB, "b" + std::to_string(i % 4), i, false, 1000 + i));
    if (i == 0) {
      CHECK(a.row.prev_hash == kGenesisHash);
      CHECK(b.row.prev_hash == kGenesisHash);
    }
    seqs.push_back(a.row.seq);
    seqs.push_back(b.row.seq);
  }
  CHECK(std::is_sorted(seqs.begin(), seqs.end()));
  CHECK(std::adjacent_find(seqs.begin(), seqs.end()) == seqs.end());
  for (const char* account : {kA, kB}) {
    auto rows = rows_of(*f.store, account);
    CHECK(rows.size() == 20);
    for (const auto& row : rows) CHECK(row.account == account);
    auto report = verify_chain(account, rows);
    INFO(account << "\n" << problems(report));
    CHECK(report.ok());
  }
  // The same task id in two accounts is two tasks.
  CHECK(ok(append(*f.store, kB, "a0", 0, false, 1)).appended);
  CHECK(ok(f.store->ledger_accounts()) == std::vector<std::string>{kA, kB});
}

TEST_CASE("cp-store: ledger queries filter by account, task, time and seq, in seq order",
          "[cp-store]") {
  Fixture f;
  CHECK(ok(f.store->ledger_accounts()).empty());
  CHECK(rows_of(*f.store, kA).empty());
  for (int i = 0; i < 10; ++i) {
    ok(append(*f.store, kA, i % 2 ? "odd" : "even", i, false, i));
    ok(append(*f.store, kB, "other", i, false, i));
  }
  auto seqs = [](const std::vector<StoredLedgerRow>& rows) {
    std::vector<int64_t> out;
    for (const auto& r : rows) out.push_back(r.period);
    return out;
  };
  LedgerQuery q;
  q.account = kA;
  CHECK(seqs(ok(f.store->ledger(q))) == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  q.task_id = "odd";
  CHECK(seqs(ok(f.store->ledger(q))) == std::vector<int64_t>{1, 3, 5, 7, 9});
  q.task_id = "";
  q.from_ms = 3 * kPeriodMs;
  q.to_ms = 7 * kPeriodMs;  // [from, to): periods 3..6
  CHECK(seqs(ok(f.store->ledger(q))) == std::vector<int64_t>{3, 4, 5, 6});
  q.from_ms = 3 * kPeriodMs + 1;
  CHECK(seqs(ok(f.store->ledger(q))) == std::vector<int64_t>{4, 5, 6});
  q.from_ms = 0;
  q.to_ms = INT64_MAX;
  auto all = ok(f.store->ledger(q));
  q.after_seq = all[4].seq;
  CHECK(seqs(ok(f.store->ledger(q))) == std::vector<int64_t>{5, 6, 7, 8, 9});
  q.limit = 2;
  CHECK(seqs(ok(f.store->ledger(q))) == std::vector<int64_t>{5, 6});
  q.task_id = "even";
  CHECK(seqs(ok(f.store->ledger(q))) == std::vector<int64_t>{6, 8});
  q.limit = 0;
  CHECK(fails(f.store->ledger(q)).kind == ErrorKind::invalid);

  // account "" reads every account's rows, in seq order.
  LedgerQuery every;
  auto rows = ok(f.store->ledger(every));
  CHECK(rows.size() == 20);
  for (size_t i = 1; i < rows.size(); ++i) CHECK(rows[i - 1].seq < rows[i].seq);
  every.task_id = "other";
  CHECK(ok(f.store->ledger(every)).size() == 10);
  q = {};
  q.account = "333333333333";
  CHECK(ok(f.store->ledger(q)).empty());
}

TEST_CASE("cp-store: ledger rows cannot be updated or deleted, and expiry leaves them",
          "[cp-store]") {
  Fixture f;
  ok(append(*f.store, kA, "t1", 1, true, 5));
  auto t = task(kA, "t1");
  t.last_status = "STOPPED";
  t.desired_status = "STOPPED";
  t.stopped_at = 100;
  ok(f.store->put_task(t, 0));
  CHECK(ok(f.store->expire_tasks(1e12)) == 1);
  CHECK(rows_of(*f.store, kA).size() == 1);

  RawDb raw(f.path);
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(f.path.c_str(), &db) == SQLITE_OK);
  for (const char* sql : {"UPDATE ledger SET doc = 'x'", "DELETE FROM ledger"}) {
    INFO(sql);
    char* err = nullptr;
    CHECK(sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK);
    CHECK(std::string(err ? err : "") == "the ledger is append-only");
    sqlite3_free(err);
  }
  sqlite3_close(db);
  CHECK(raw.query("SELECT count(*) FROM ledger") == "1");
}

TEST_CASE("cp-store: a ledger row edited by hand in the database is named by verify_chain",
          "[cp-store]") {
  Fixture f;
  for (int i = 0; i < 30; ++i) ok(append(*f.store, kA, "t" + std::to_string(i % 4), i, false, 411));
  auto before = rows_of(*f.store, kA);
  REQUIRE(verify_chain(kA, before).ok());
  const StoredLedgerRow& victim = before[17];

  {
    // By hand, with the sqlite3 C API on the file, as an operator with a
    // shell would: drop the guard, change the amount of one record.
    RawDb raw(f.path);
    raw.exec("DROP TRIGGER ledger_no_update");
    raw.exec(
        "UPDATE ledger SET doc = replace(doc, '\"amount_micro_usd\":411', "
        "'\"amount_micro_usd\":4') WHERE seq = " +
        std::to_string(victim.seq));
    CHECK(raw.query("SELECT count(*) FROM ledger WHERE doc LIKE '%\"amount_micro_usd\":4,%'") ==
          "1");
  }
  auto after = rows_of(*f.store, kA);
  auto report = verify_chain(kA, after);
  INFO(problems(report));
  REQUIRE(report.problems.size() == 1);
  CHECK(report.problems[0].seq == victim.seq);
  CHECK(report.problems[0].task_id == victim.task_id);
  CHECK(report.problems[0].what == "hash does not match its contents");
  CHECK(report.total_micro_usd == 29 * 411 + 4);
}

TEST_CASE("cp-store: 4 threads on 2 connections append concurrently: valid chains, unique seqs",
          "[cp-store]") {
  Fixture f;
  auto second = open_store(f.path);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 40;
  std::mutex mu;
  std::vector<std::string> failures;
  std::vector<int64_t> seqs;
  auto worker = [&](Store* s, int id) {
    for (int i = 0; i < kPerThread; ++i) {
      // Two accounts, every thread writing to both; each thread's own tasks.
      const char* account = i % 2 ? kA : kB;
      auto r = append(*s, account, fmt::format("w{}-{}", id, i % 5), i, false, id * 1000 + i);
      std::lock_guard l(mu);
      if (!r) {
        failures.push_back(r.error().str());
      } else if (!r->appended) {
        failures.push_back("not appended: " + r->row.task_id);
      } else {
        seqs.push_back(r->row.seq);
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back(worker, i % 2 ? static_cast<Store*>(second.get()) : f.store.get(), i);
  }
  for (auto& th : threads) th.join();
  CHECK(failures.empty());
  for (const auto& e : failures) WARN(e);
  std::sort(seqs.begin(), seqs.end());
  CHECK(seqs.size() == kThreads * kPerThread);
  CHECK(std::adjacent_find(seqs.begin(), seqs.end()) == seqs.end());
  size_t total = 0;
  for (const char* account : {kA, kB}) {
    auto rows = rows_of(*f.store, account);
    total += rows.size();
    auto report = verify_chain(account, rows);
    INFO(account << "\n" << problems(report));
    CHECK(report.ok());
  }
  CHECK(total == kThreads * kPerThread);
  ok(f.store->check_integrity());
}

namespace {

// The child of the ledger kill -9 test: appends records forever (task
// k<i/3>, period i), writing each seq to `ack_fd` once append_ledger has
// returned (committed). Ends by SIGKILL or _exit on a failure.
[[noreturn]] void append_forever(const std::string& path, int ack_fd) {
  auto store = SqliteStore::open(path);
  if (!store) _exit(2);
  for (int64_t i = 0;; ++i) {
    auto r = append(**store, kA, "k" + std::to_string(i / 3), i, i % 3 == 2, 411 + i);
    if (!r || !r->appended) _exit(3);
    if (::write(ack_fd, &r->row.seq, sizeof r->row.seq) != sizeof r->row.seq) _exit(4);
  }
}

}  // namespace

TEST_CASE("cp-store: after kill -9 in the middle of ledger appends the chain verifies",
          "[cp-store]") {
  TempDir tmp;
  std::string path = tmp / "berthd.db";
  open_store(path).reset();
  auto acked = kill_after_acks([&](int ack_fd) { append_forever(path, ack_fd); }, 300);

  auto store = open_store(path);
  ok(store->check_integrity());
  auto rows = rows_of(*store, kA);
  auto report = verify_chain(kA, rows);
  INFO(problems(report));
  CHECK(report.ok());
  // Every acknowledged row is there; at most the one whose acknowledgement
  // the kill cut off is extra.
  std::set<int64_t> stored;
  for (const auto& r : rows) stored.insert(r.seq);
  for (int64_t seq : acked) {
    INFO("seq " << seq);
    CHECK(stored.count(seq) == 1);
  }
  CHECK(rows.size() >= acked.size());
  CHECK(rows.size() <= acked.size() + 1);
  // And appending resumes on the chain's head.
  auto next = ok(append(*store, kA, "after", 1, false, 1));
  CHECK(next.row.prev_hash == rows.back().hash);
}

TEST_CASE("cp-store: a version 2 database is migrated to the ledger schema with its rows",
          "[cp-store]") {
  TempDir tmp;
  std::string path = tmp / "berthd.db";
  {
    // Version 2 as it shipped: version 1 plus its three indexes.
    RawDb raw(path);
    raw.exec(kSchemaV1);
    raw.exec(
        "CREATE INDEX tasks_live ON tasks (account, id) WHERE last_status != 'STOPPED';"
        "CREATE INDEX tasks_stopped_at ON tasks (stopped_at) WHERE last_status = 'STOPPED';"
        "CREATE INDEX events_by_account ON events (account, seq);"
        "PRAGMA user_version = 2;");
    raw.exec(std::string("INSERT INTO clusters VALUES ('") + kA + "', 'default', 'ACTIVE', 'c');" +
             "INSERT INTO tasks VALUES ('" + kA +
             "', 't1', 'default', 'web', '', 'family:web', 'RUNNING', 'RUNNING', 3, 0, 'x');" +
             "INSERT INTO events (account, doc) VALUES ('" + kA + "', 'e1');");
  }
  auto store = open_store(path);
  {
    RawDb raw(path);
    CHECK(raw.query("PRAGMA user_version") == std::to_string(kSchemaVersion));
    CHECK(raw.query("SELECT count(*) FROM sqlite_master WHERE name IN ('ledger', "
                    "'meter_checkpoints', 'ledger_by_account', 'ledger_by_from', "
                    "'ledger_no_update', 'ledger_no_delete')") == "6");
  }
  CHECK(ok(store->get_cluster(kA, "default"))->doc == "c");
  CHECK(ids(ok(store->live_tasks())) == std::vector<std::string>{"t1"});
  CHECK(ok(store->events_after(kA, 0, 10)).at(0).doc == "e1");
  CHECK(ok(append(*store, kA, "t1", 1, false, 411)).appended);
  ok(store->put_checkpoint({kA, "t1", "{}"}));
  CHECK(verify_chain(kA, rows_of(*store, kA)).ok());
  ok(store->check_integrity());
}

TEST_CASE("cp-store: meter checkpoints are put, overwritten, read, listed and erased",
          "[cp-store]") {
  Fixture f;
  CHECK_FALSE(ok(f.store->get_checkpoint(kA, "t1")).has_value());
  CHECK(ok(f.store->checkpoints()).empty());
  ok(f.store->put_checkpoint({kA, "t2", "{\"n\":1}"}));
  ok(f.store->put_checkpoint({kA, "t1", "{\"n\":2}"}));
  ok(f.store->put_checkpoint({kB, "t1", "{\"b\":1}"}));
  ok(f.store->put_checkpoint({kA, "t2", "{\"n\":3}"}));  // overwrites
  CHECK(ok(f.store->get_checkpoint(kA, "t2"))->doc == "{\"n\":3}");
  CHECK(ok(f.store->get_checkpoint(kB, "t1"))->doc == "{\"b\":1}");
  auto all = ok(f.store->checkpoints());
  std::vector<std::string> keys;
  for (const auto& c : all) keys.push_back(c.account + "/" + c.task_id + "=" + c.doc);
  CHECK(keys == std::vector<std::string>{std::string(kA) + "/t1={\"n\":2}",
                                         std::string(kA) + "/t2={\"n\":3}",
                                         std::string(kB) + "/t1={\"b\":1}"});
  ok(f.store->erase_checkpoint(kA, "t1"));
  ok(f.store->erase_checkpoint(kA, "t1"));  // missing: not an error
  ok(f.store->erase_checkpoint(kA, "never"));
  CHECK_FALSE(ok(f.store->get_checkpoint(kA, "t1")).has_value());
  CHECK(ok(f.store->get_checkpoint(kB, "t1")).has_value());
  CHECK(ok(f.store->checkpoints()).size() == 2);
  CHECK(fails(f.store->put_checkpoint({"", "t1", "{}"})).kind == ErrorKind::invalid);
  CHECK(fails(f.store->put_checkpoint({kA, "", "{}"})).kind == ErrorKind::invalid);
  CHECK(fails(f.store->get_checkpoint("", "t1")).kind == ErrorKind::invalid);
  // Durable.
  f.store.reset();
  auto again = open_store(f.path);
  CHECK(ok(again->checkpoints()).size() == 2);
}
