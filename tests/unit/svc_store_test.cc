// The services table of SqliteStore (schema version 4) on real SQLite
// files: insert and compare-and-swap with put_task's contract, the name of
// an INACTIVE service reused, listing by cluster with pages, INACTIVE
// hidden unless asked for, expiry, account isolation, and the migration of
// a version 3 database made by hand.
#include <sqlite3.h>

#include <string>
#include <type_traits>
#include <vector>

#include <catch2/catch.hpp>

#include "controlplane/store/schema.h"
#include "controlplane/store/sqlite_store.h"
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

std::unique_ptr<SqliteStore> open_store(const std::string& path) {
  auto s = SqliteStore::open(path);
  INFO((s ? "" : s.error().str()));
  REQUIRE(s.has_value());
  return std::move(*s);
}

ServiceRecord svc(const std::string& account, const std::string& cluster, const std::string& name,
                  int64_t version = 1, const std::string& status = "ACTIVE") {
  return ServiceRecord{account,
                       cluster,
                       name,
                       status,
                       version,
                       0,
                       "{\"serviceName\":\"" + name + "\",\"v\":" + std::to_string(version) + "}"};
}

std::vector<std::string> names(const std::vector<ServiceRecord>& rs) {
  std::vector<std::string> out;
  for (const auto& r : rs) out.push_back(r.cluster + "/" + r.name);
  return out;
}

struct Fixture {
  TempDir tmp;
  std::string path = tmp / "berthd.db";
  std::unique_ptr<SqliteStore> store = open_store(path);
};

// Raw SQL for the version 3 fixture and for looking at the file.
void exec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  INFO((err ? err : ""));
  sqlite3_free(err);
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

std::string query(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
  std::string out;
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != nullptr) {
    out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

}  // namespace

TEST_CASE("svc store: put_service inserts at 0 and compares-and-swaps after", "[svc-store]") {
  Fixture f;
  auto& s = *f.store;
  CHECK_FALSE(ok(s.get_service(kA, "default", "web")).has_value());
  ok(s.put_service(svc(kA, "default", "web", 1), 0));
  auto got = ok(s.get_service(kA, "default", "web"));
  REQUIRE(got);
  CHECK(got->status == "ACTIVE");
  CHECK(got->version == 1);
  CHECK(got->doc == "{\"serviceName\":\"web\",\"v\":1}");

  // A second insert of a live service: exists.
  CHECK(fails(s.put_service(svc(kA, "default", "web", 1), 0)).kind == ErrorKind::exists);
  // CAS from the right version succeeds, from a stale one is busy.
  ok(s.put_service(svc(kA, "default", "web", 2), 1));
  auto e = fails(s.put_service(svc(kA, "default", "web", 3), 1));
  CHECK(e.kind == ErrorKind::busy);
  CHECK(e.message ==
        "put_service: update: service web is at version 2, not 1: changed by another writer");
  CHECK(ok(s.get_service(kA, "default", "web"))->version == 2);
  // Missing: not_found. Version not bumped, empty names: invalid.
  CHECK(fails(s.put_service(svc(kA, "default", "api", 2), 1)).kind == ErrorKind::not_found);
  CHECK(fails(s.put_service(svc(kA, "default", "web", 2), 2)).kind == ErrorKind::invalid);
  CHECK(fails(s.put_service(svc(kA, "", "web", 2), 0)).kind == ErrorKind::invalid);
  CHECK(fails(s.put_service(svc("", "default", "web", 2), 0)).kind == ErrorKind::invalid);
}

TEST_CASE("svc store: an INACTIVE service stays describable and its name can be used again",
          "[svc-store]") {
  Fixture f;
  auto& s = *f.store;
  ok(s.put_service(svc(kA, "default", "web", 1), 0));
  ok(s.put_service(svc(kA, "default", "web", 2, "DRAINING"), 1));
  // DRAINING is still the service's: a create of the name is refused.
  CHECK(fails(s.put_service(svc(kA, "default", "web", 1), 0)).kind == ErrorKind::exists);
  auto inactive = svc(kA, "default", "web", 3, "INACTIVE");
  inactive.deleted_at = 1000;
  ok(s.put_service(inactive, 2));
  CHECK(ok(s.get_service(kA, "default", "web"))->status == "INACTIVE");
  CHECK(ok(s.get_service(kA, "default", "web"))->deleted_at == 1000);

  // Expiry removes INACTIVE ones deleted before the cutoff only.
  ok(s.put_service(svc(kA, "default", "api", 1), 0));
  CHECK(ok(s.expire_services(1000)) == 0);
  CHECK(ok(s.expire_services(1000.5)) == 1);
  CHECK_FALSE(ok(s.get_service(kA, "default", "web")).has_value());
  CHECK(ok(s.get_service(kA, "default", "api")).has_value());

  // A new create over an INACTIVE record replaces it.
  auto again = svc(kA, "default", "api", 2, "INACTIVE");
  again.deleted_at = 5;
  ok(s.put_service(again, 1));
  ok(s.put_service(svc(kA, "default", "api", 1), 0));
  auto got = ok(s.get_service(kA, "default", "api"));
  CHECK(got->status == "ACTIVE");
  CHECK(got->version == 1);
  CHECK(got->deleted_at == 0);
}

TEST_CASE("svc store: list_services by cluster, in name order, by page, INACTIVE on request",
          "[svc-store]") {
  Fixture f;
  auto& s = *f.store;
  for (auto n : {"e", "a", "c", "b", "d"}) ok(s.put_service(svc(kA, "one", n), 0));
  ok(s.put_service(svc(kA, "two", "a"), 0));
  ok(s.put_service(svc(kA, "one", "z", 1, "INACTIVE"), 0));
  ok(s.put_service(svc(kB, "one", "b-of-b"), 0));

  ServiceQuery q;
  q.account = kA;
  q.cluster = "one";
  bool more = true;
  CHECK(names(ok(s.list_services(q, &more))) ==
        std::vector<std::string>{"one/a", "one/b", "one/c", "one/d", "one/e"});
  CHECK_FALSE(more);
  q.include_inactive = true;
  CHECK(names(ok(s.list_services(q, nullptr))).back() == "one/z");
  q.include_inactive = false;

  q.limit = 2;
  auto page = ok(s.list_services(q, &more));
  CHECK(names(page) == std::vector<std::string>{"one/a", "one/b"});
  CHECK(more);
  q.after_cluster = page.back().cluster;
  q.after_name = page.back().name;
  page = ok(s.list_services(q, &more));
  CHECK(names(page) == std::vector<std::string>{"one/c", "one/d"});
  CHECK(more);
  q.after_name = "d";
  page = ok(s.list_services(q, &more));
  CHECK(names(page) == std::vector<std::string>{"one/e"});
  CHECK_FALSE(more);

  // Every cluster of the account, (cluster, name) order; never another
  // account's.
  ServiceQuery all;
  all.account = kA;
  CHECK(names(ok(s.list_services(all, nullptr))) ==
        std::vector<std::string>{"one/a", "one/b", "one/c", "one/d", "one/e", "two/a"});
  all.account = kB;
  CHECK(names(ok(s.list_services(all, nullptr))) == std::vector<std::string>{"one/b-of-b"});
  CHECK_FALSE(ok(s.get_service(kB, "one", "a")).has_value());
  CHECK(fails(s.put_service(svc(kB, "one", "a", 2), 1)).kind == ErrorKind::not_found);

  ServiceQuery bad;
  bad.account = kA;
  bad.limit = 0;
  CHECK(fails(s.list_services(bad, nullptr)).kind == ErrorKind::invalid);
  bad.account = "";
  bad.limit = 1;
  CHECK(fails(s.list_services(bad, nullptr)).kind == ErrorKind::invalid);
}

TEST_CASE("svc store: services survive reopening", "[svc-store]") {
  TempDir tmp;
  std::string path = tmp / "berthd.db";
  {
    auto s = open_store(path);
    ok(s->put_service(svc(kA, "default", "web", 4), 0));
  }
  auto s = open_store(path);
  CHECK(ok(s->get_service(kA, "default", "web"))->version == 4);
  ok(s->put_service(svc(kA, "default", "web", 5), 4));
}

TEST_CASE("svc store: a version 3 database is migrated to version 4 with its rows",
          "[svc-store][cp-store]") {
  TempDir tmp;
  std::string path = tmp / "berthd.db";
  {
    // Make a real version 3 database with the store itself, then take the
    // services table away as version 3 had none: what the migration sees is
    // exactly version 3's schema (every step before it as shipped).
    auto s = open_store(path);
    ok(s->put_cluster({kA, "default", "ACTIVE", "c"}));
  }
  exec(path, "DROP INDEX services_inactive; DROP TABLE services; PRAGMA user_version = 3;");
  REQUIRE(query(path, "PRAGMA user_version") == "3");
  REQUIRE(query(path, "SELECT count(*) FROM sqlite_master WHERE name = 'services'") == "0");
  auto s = open_store(path);
  CHECK(query(path, "PRAGMA user_version") == "4");
  CHECK(kSchemaVersion == 4);
  CHECK(query(path,
              "SELECT count(*) FROM sqlite_master WHERE name IN ('services', "
              "'services_inactive')") == "2");
  CHECK(ok(s->get_cluster(kA, "default"))->doc == "c");
  ok(s->put_service(svc(kA, "default", "web"), 0));
  CHECK(ok(s->get_service(kA, "default", "web")).has_value());
  ok(s->check_integrity());
}
