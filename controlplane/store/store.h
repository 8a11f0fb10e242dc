// Durable control-plane state behind a small interface: SQLite in WAL mode
// now (store/sqlite_store.h), an etcd implementation later behind the same
// interface. No SQL outside store/.
//
// Objects are stored as documents (the JSON the model writes, model/
// ecs_json.h) with the few columns the queries need beside them, so the
// store never interprets a document and another backend needs no schema
// beyond keys. Every object belongs to an account; every call names it, and
// no call returns another account's objects.
//
// Tasks carry a version: put_task with expected_version != 0 succeeds only
// if the stored task has that version (compare-and-swap), so two writers
// never overwrite each other's state change unseen.
//
// Errors: ErrorKind::invalid for a call that can never succeed (empty
// account, limit < 1, a status filter that is not ACTIVE/INACTIVE),
// not_found / exists / busy as each method says, internal for the backend's
// failures (their message names the operation and the backend's error).
// List calls return at most `limit` rows; `more` (may be null) is set to
// whether more follow.
//
// Thread safety: every method may be called from any thread; calls block
// (disk I/O): never call them on an I/O thread.
#pragma once

#include <climits>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "controlplane/billing/ledger.h"

namespace berth::cp {

struct ClusterRecord {
  std::string account;
  std::string name;
  std::string status;  // ACTIVE | INACTIVE
  std::string doc;
};

struct TaskDefinitionRecord {
  std::string account;
  std::string family;
  int revision = 0;
  std::string status;  // ACTIVE | INACTIVE
  std::string doc;
};

struct TaskRecord {
  std::string account;
  std::string cluster;
  std::string id;
  std::string family;
  std::string started_by;
  std::string group;
  std::string desired_status;  // RUNNING | STOPPED
  std::string last_status;
  int64_t version = 0;
  double stopped_at = 0;  // epoch seconds; 0 while not stopped
  std::string doc;
};

struct TaskQuery {
  std::string account;  // required
  std::optional<std::string> cluster;
  std::optional<std::string> family;
  std::optional<std::string> started_by;
  std::optional<std::string> group;
  std::optional<std::string> desired_status;  // nullopt: any
  // Pagination: ids after this one (ascending id order), at most `limit`.
  std::string after_id;
  int limit = 100;
};

struct DefinitionQuery {
  std::string account;
  std::string family_prefix;          // "" = all
  std::optional<std::string> status;  // ACTIVE | INACTIVE; nullopt: both
  bool descending = false;            // by family, then revision
  // Pagination: the (family, revision) after which to continue, in the
  // order asked for; after_family "" = from the start.
  std::string after_family;
  int after_revision = 0;
  int limit = 100;
};

struct Page {
  std::vector<std::string> keys;
  bool more = false;
};

// A service (model/service.h): the document plus the columns the queries
// need. status ACTIVE | DRAINING | INACTIVE; deleted_at (epoch seconds) is
// set when it became INACTIVE (0 otherwise).
struct ServiceRecord {
  std::string account;
  std::string cluster;
  std::string name;
  std::string status;
  int64_t version = 0;
  double deleted_at = 0;
  std::string doc;
};

struct ServiceQuery {
  std::string account;                 // required
  std::optional<std::string> cluster;  // nullopt: every cluster
  // INACTIVE services are listed only when asked for (ListServices shows
  // ACTIVE and DRAINING ones).
  bool include_inactive = false;
  // Pagination in (cluster, name) order: rows after this key.
  std::string after_cluster;
  std::string after_name;
  int limit = 100;
};

// A state change, kept for /v1/events replay.
struct EventRecord {
  int64_t seq = 0;  // assigned by the store, increasing
  std::string account;
  std::string doc;
};

// Ledger queries. account "" = every account (operators, verify, metrics).
// Rows in seq order; [from_ms, to_ms) selects rows whose record interval
// starts in it (the `from_ms` column); task_id "" = all.
struct LedgerQuery {
  std::string account;
  std::string task_id;
  int64_t from_ms = 0;
  int64_t to_ms = INT64_MAX;
  int64_t after_seq = 0;
  int limit = 10000;
};

// A running task's metering state between ledger records (mutable; one per
// task; removed when the task's final record is written).
struct MeterCheckpoint {
  std::string account;
  std::string task_id;
  std::string doc;  // the meter's own JSON (billing/meter.cc)
};

class Store {
 public:
  virtual ~Store() = default;

  // Clusters. put overwrites.
  virtual Result<void> put_cluster(const ClusterRecord& c) = 0;
  virtual Result<std::optional<ClusterRecord>> get_cluster(const std::string& account,
                                                           const std::string& name) = 0;
  virtual Result<std::vector<ClusterRecord>> list_clusters(const std::string& account) = 0;

  // Task definitions. add_task_definition assigns the next revision of the
  // family (1 for a new one; revisions are never reused, even after
  // deregistration) and stores make_doc(revision), atomically, as ACTIVE.
  // make_doc runs inside the store's transaction and lock: it must not call
  // the store; its error is returned as is and nothing is stored.
  virtual Result<TaskDefinitionRecord> add_task_definition(
      const std::string& account, const std::string& family,
      const std::function<Result<std::string>(int revision)>& make_doc) = 0;
  // revision 0: the latest ACTIVE revision.
  virtual Result<std::optional<TaskDefinitionRecord>> get_task_definition(
      const std::string& account, const std::string& family, int revision) = 0;
  // Replaces status and doc of an existing revision (not_found otherwise).
  virtual Result<void> update_task_definition(const TaskDefinitionRecord& d) = 0;
  virtual Result<std::vector<TaskDefinitionRecord>> list_task_definitions(const DefinitionQuery& q,
                                                                          bool* more) = 0;
  // Family names by q's prefix and order, paged on after_family
  // (after_revision unused). status ACTIVE: families with an ACTIVE
  // revision; INACTIVE: families with none (ECS ListTaskDefinitionFamilies).
  virtual Result<std::vector<std::string>> list_families(const DefinitionQuery& q, bool* more) = 0;

  // Tasks. put_task:
  //  - expected_version 0: insert; the task must not exist yet (exists);
  //  - otherwise: compare-and-swap; the stored task must be at
  //    expected_version (busy if another writer changed it first: re-read
  //    and retry; not_found if there is no such task).
  // t.version is the version written and must be greater than
  // expected_version (invalid otherwise): the caller bumps it in the record
  // and its doc alike; the store never rewrites a doc.
  virtual Result<void> put_task(const TaskRecord& t, int64_t expected_version) = 0;
  virtual Result<std::optional<TaskRecord>> get_task(const std::string& account,
                                                     const std::string& id) = 0;
  virtual Result<std::vector<TaskRecord>> list_tasks(const TaskQuery& q, bool* more) = 0;
  // Every task of every account whose last_status is not STOPPED (restart
  // adoption).
  virtual Result<std::vector<TaskRecord>> live_tasks() = 0;
  // Removes tasks that stopped before `cutoff` (epoch seconds; every
  // account), with the tags of their ARNs (...:task/<cluster>/<id>);
  // returns how many.
  virtual Result<int> expire_tasks(double cutoff) = 0;

  // Services. put_service has put_task's contract:
  //  - expected_version 0: insert; no service of that (account, cluster,
  //    name) may exist unless it is INACTIVE, which the new one replaces
  //    (a deleted service's name is free again; exists otherwise);
  //  - otherwise compare-and-swap on the stored version (busy when another
  //    writer changed it first, not_found when there is none).
  // s.version must be greater than expected_version (invalid otherwise).
  virtual Result<void> put_service(const ServiceRecord& s, int64_t expected_version) = 0;
  virtual Result<std::optional<ServiceRecord>> get_service(const std::string& account,
                                                           const std::string& cluster,
                                                           const std::string& name) = 0;
  virtual Result<std::vector<ServiceRecord>> list_services(const ServiceQuery& q, bool* more) = 0;
  // Removes INACTIVE services whose deleted_at is before `cutoff` (epoch
  // seconds; every account); returns how many.
  virtual Result<int> expire_services(double cutoff) = 0;
  // Every service of every account that is not INACTIVE, by (account,
  // cluster, name): what the supervisor reconciles (scheduler-wide on
  // purpose, like live_tasks).
  virtual Result<std::vector<ServiceRecord>> live_services() = 0;

  // Tags by resource ARN.
  virtual Result<void> tag(const std::string& account, const std::string& arn,
                           const std::vector<std::pair<std::string, std::string>>& tags) = 0;
  virtual Result<void> untag(const std::string& account, const std::string& arn,
                             const std::vector<std::string>& keys) = 0;
  virtual Result<std::vector<std::pair<std::string, std::string>>> tags(const std::string& account,
                                                                        const std::string& arn) = 0;

  // Events: appended; read back after a sequence number (at most `limit`).
  // Sequence numbers increase and are never reused. The log is bounded: the
  // oldest events beyond a backend's limit (SqliteStore: the newest 100000
  // of all accounts are kept) are dropped, so a reader far behind misses
  // some.
  virtual Result<int64_t> append_event(const std::string& account, const std::string& doc) = 0;
  virtual Result<std::vector<EventRecord>> events_after(const std::string& account, int64_t seq,
                                                        int limit) = 0;

  // Ledger (billing/ledger.h). Append-only: there is no update or delete.
  // append_ledger appends the record of (account, task_id, period, final)
  // unless one exists already, atomically:
  //  - exists: returns the stored row, appended = false (idempotent: a
  //    restart that writes the same record again never bills twice);
  //  - otherwise calls make(prev_hash) with the hash of the account's last
  //    row (kGenesisHash for its first), inside the store's transaction and
  //    lock (make must not call the store), and stores the row it returns
  //    (doc, hash; seq is assigned here and set in the returned row).
  // Once a task has its final row, nothing more is appended for it: any
  // later call for the task returns that final row with appended = false.
  struct LedgerAppend {
    StoredLedgerRow row;
    bool appended = false;
  };
  virtual Result<LedgerAppend> append_ledger(
      const std::string& account, const std::string& task_id, int64_t period, bool final,
      int64_t from_ms,
      const std::function<Result<StoredLedgerRow>(const std::string& prev_hash)>& make) = 0;
  virtual Result<std::vector<StoredLedgerRow>> ledger(const LedgerQuery& q) = 0;
  // Accounts with at least one ledger row.
  virtual Result<std::vector<std::string>> ledger_accounts() = 0;

  // Meter checkpoints. put overwrites; erase of a missing one is not an error.
  virtual Result<void> put_checkpoint(const MeterCheckpoint& c) = 0;
  virtual Result<std::optional<MeterCheckpoint>> get_checkpoint(const std::string& account,
                                                                const std::string& task_id) = 0;
  virtual Result<std::vector<MeterCheckpoint>> checkpoints() = 0;
  virtual Result<void> erase_checkpoint(const std::string& account, const std::string& task_id) = 0;
};

}  // namespace berth::cp
