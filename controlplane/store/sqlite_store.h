// The Store on SQLite: one database file under berthd's state dir
// (<state_dir>/berthd.db), created 0600 (it holds every tenant's state).
//
// Journal mode WAL: readers never block the writer nor the writer readers,
// and a commit is one append to the -wal file instead of a rewrite of the
// pages plus a rollback journal.
//
// Durability. synchronous=NORMAL (the default) does not fsync the WAL at
// each commit, only at checkpoints. A committed transaction has been
// written to the WAL (the kernel's page cache) before the call returns, so:
//   - a crash of berthd, kill -9 included, loses nothing that was
//     committed: the kernel still writes the pages out, and the next open
//     replays the WAL;
//   - a power loss or kernel crash may roll back the last transactions
//     committed since the WAL was last synced (the last checkpoint), but
//     the database is never corrupt: it opens at an older, consistent
//     state.
// SqliteStoreOptions::full_sync (synchronous=FULL) fsyncs the WAL at every
// commit: nothing committed is lost even on power loss, at about 0.2 ms
// instead of 0.03 ms per commit.
//
// Concurrency: one connection behind a mutex (SQLite itself in serialised
// mode underneath). Every call holds the mutex for its whole duration, so
// a call's reads and writes see no other call of this process in between;
// another process (or another SqliteStore on the same file) is kept out by
// SQLite's locks, waited for up to busy_timeout_ms (then ErrorKind::busy).
// Statements are prepared once and cached.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "controlplane/store/sqlite.h"
#include "controlplane/store/store.h"

namespace berth::cp {

struct SqliteStoreOptions {
  // synchronous=FULL instead of NORMAL (see above).
  bool full_sync = false;
  // How long a call waits for another connection's lock.
  int busy_timeout_ms = 5000;
  // The event table keeps the newest max_events rows of all accounts
  // together; append_event prunes older ones in the same transaction.
  int64_t max_events = 100000;
};

class SqliteStore : public Store {
 public:
  // Opens or creates the database at `path` and migrates it to
  // kSchemaVersion (store/schema.h). A database of a newer schema version is
  // refused (ErrorKind::unsupported) before it is opened for writing.
  static Result<std::unique_ptr<SqliteStore>> open(const std::string& path,
                                                   const SqliteStoreOptions& options = {});

  Result<void> put_cluster(const ClusterRecord& c) override;
  Result<std::optional<ClusterRecord>> get_cluster(const std::string& account,
                                                   const std::string& name) override;
  Result<std::vector<ClusterRecord>> list_clusters(const std::string& account) override;

  Result<TaskDefinitionRecord> add_task_definition(
      const std::string& account, const std::string& family,
      const std::function<Result<std::string>(int revision)>& make_doc) override;
  Result<std::optional<TaskDefinitionRecord>> get_task_definition(const std::string& account,
                                                                  const std::string& family,
                                                                  int revision) override;
  Result<void> update_task_definition(const TaskDefinitionRecord& d) override;
  Result<std::vector<TaskDefinitionRecord>> list_task_definitions(const DefinitionQuery& q,
                                                                  bool* more) override;
  Result<std::vector<std::string>> list_families(const DefinitionQuery& q, bool* more) override;

  Result<void> put_task(const TaskRecord& t, int64_t expected_version) override;
  Result<std::optional<TaskRecord>> get_task(const std::string& account,
                                             const std::string& id) override;
  Result<std::vector<TaskRecord>> list_tasks(const TaskQuery& q, bool* more) override;
  Result<std::vector<TaskRecord>> live_tasks() override;
  Result<int> expire_tasks(double cutoff) override;

  Result<void> put_service(const ServiceRecord& s, int64_t expected_version) override;
  Result<std::optional<ServiceRecord>> get_service(const std::string& account,
                                                   const std::string& cluster,
                                                   const std::string& name) override;
  Result<std::vector<ServiceRecord>> list_services(const ServiceQuery& q, bool* more) override;
  Result<int> expire_services(double cutoff) override;
  Result<std::vector<ServiceRecord>> live_services() override;

  Result<void> tag(const std::string& account, const std::string& arn,
                   const std::vector<std::pair<std::string, std::string>>& tags) override;
  Result<void> untag(const std::string& account, const std::string& arn,
                     const std::vector<std::string>& keys) override;
  Result<std::vector<std::pair<std::string, std::string>>> tags(const std::string& account,
                                                                const std::string& arn) override;

  Result<int64_t> append_event(const std::string& account, const std::string& doc) override;
  Result<std::vector<EventRecord>> events_after(const std::string& account, int64_t seq,
                                                int limit) override;

  // Ledger and checkpoints. append_ledger checks the row make() returns
  // before storing it: its doc must parse and name the call's account,
  // task, period and final (ErrorKind::invalid otherwise), its prev_hash
  // must be the one given to make ("" is taken as that one) and its hash
  // ledger_hash(prev_hash, doc) ("" is computed here); the table refuses
  // UPDATE and DELETE (schema version 3's triggers).
  Result<LedgerAppend> append_ledger(
      const std::string& account, const std::string& task_id, int64_t period, bool final,
      int64_t from_ms,
      const std::function<Result<StoredLedgerRow>(const std::string& prev_hash)>& make) override;
  Result<std::vector<StoredLedgerRow>> ledger(const LedgerQuery& q) override;
  Result<std::vector<std::string>> ledger_accounts() override;
  Result<void> put_checkpoint(const MeterCheckpoint& c) override;
  Result<std::optional<MeterCheckpoint>> get_checkpoint(const std::string& account,
                                                        const std::string& task_id) override;
  Result<std::vector<MeterCheckpoint>> checkpoints() override;
  Result<void> erase_checkpoint(const std::string& account, const std::string& task_id) override;

  // PRAGMA integrity_check: an error naming the first problem unless the
  // database is sound (berthd may run it at start; the crash test does).
  Result<void> check_integrity();

 private:
  SqliteStore(std::unique_ptr<sql::Connection> conn, std::string path,
              const SqliteStoreOptions& options)
      : conn_(std::move(conn)), path_(std::move(path)), options_(options) {}

  std::mutex mu_;  // guards conn_ and every statement in its cache
  std::unique_ptr<sql::Connection> conn_;
  std::string path_;
  SqliteStoreOptions options_;
};

}  // namespace berth::cp
