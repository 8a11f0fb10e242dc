#include "controlplane/store/sqlite.h"

#include <sqlite3.h>

namespace berth::cp::sql {

namespace {

constexpr std::string_view kStep = "store";

struct StmtDeleter {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using OwnedStmt = std::unique_ptr<sqlite3_stmt, StmtDeleter>;

}  // namespace

std::unexpected<Error> db_error(sqlite3* db, std::string_view op) {
  int rc = sqlite3_extended_errcode(db);
  int primary = rc & 0xff;
  ErrorKind kind =
      primary == SQLITE_BUSY || primary == SQLITE_LOCKED ? ErrorKind::busy : ErrorKind::internal;
  // I/O and open failures come from a system call: keep its errno, so the
  // message says "No space left on device" and not only "disk I/O error".
  int err = primary == SQLITE_IOERR || primary == SQLITE_CANTOPEN || primary == SQLITE_FULL
                ? sqlite3_system_errno(db)
                : 0;
  return std::unexpected(
      Error{std::string(kStep), err, fmt::format("{}: {}", op, sqlite3_errmsg(db)), kind});
}

// ---------------------------------------------------------------------------
// Statement

Statement::~Statement() {
  if (stmt_ == nullptr) return;
  // reset repeats the last step's error code: already reported by step().
  (void)sqlite3_reset(stmt_);
  (void)sqlite3_clear_bindings(stmt_);
}

Statement& Statement::bind(int i, std::string_view v) {
  int rc = sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK && bind_rc_ == 0) bind_rc_ = rc;
  return *this;
}

Statement& Statement::bind(int i, int64_t v) {
  int rc = sqlite3_bind_int64(stmt_, i, v);
  if (rc != SQLITE_OK && bind_rc_ == 0) bind_rc_ = rc;
  return *this;
}

Statement& Statement::bind(int i, double v) {
  int rc = sqlite3_bind_double(stmt_, i, v);
  if (rc != SQLITE_OK && bind_rc_ == 0) bind_rc_ = rc;
  return *this;
}

Statement& Statement::bind(int i, const std::optional<std::string>& v) {
  if (v) return bind(i, std::string_view(*v));
  int rc = sqlite3_bind_null(stmt_, i);
  if (rc != SQLITE_OK && bind_rc_ == 0) bind_rc_ = rc;
  return *this;
}

Result<bool> Statement::step() {
  if (bind_rc_ != 0) return error(kStep, "{}: bind: {}", op_, sqlite3_errstr(bind_rc_));
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return db_error(db_, op_);
}

Result<void> Statement::run() {
  BERTH_ASSIGN(bool row, step());
  if (row) return error(kStep, "{}: a statement without results returned a row", op_);
  return {};
}

std::string Statement::text(int col) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
  if (p == nullptr) return {};
  return std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
}

int64_t Statement::int64(int col) const {
  return sqlite3_column_int64(stmt_, col);
}

double Statement::real(int col) const {
  return sqlite3_column_double(stmt_, col);
}

// ---------------------------------------------------------------------------
// Connection

Result<std::unique_ptr<Connection>> Connection::open(const std::string& path, Mode mode) {
  int flags =
      SQLITE_OPEN_FULLMUTEX |
      (mode == Mode::read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    if (db == nullptr) return error(kStep, "open {}: {}", path, sqlite3_errstr(rc));
    auto e = db_error(db, fmt::format("open {}", path));
    sqlite3_close_v2(db);
    return e;
  }
  sqlite3_extended_result_codes(db, 1);
  return std::unique_ptr<Connection>(new Connection(db));
}

Connection::~Connection() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

Result<Statement> Connection::prepare(std::string_view sql, std::string_view op) {
  std::string key(sql);
  if (auto it = cache_.find(key); it != cache_.end()) return Statement(db_, it->second, op);
  sqlite3_stmt* stmt = nullptr;
  const char* tail = nullptr;
  // PERSISTENT: the statement lives as long as the connection (a hint to
  // SQLite's allocator; cached statements are never finalised early).
  int rc = sqlite3_prepare_v3(db_, key.data(), static_cast<int>(key.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
  if (rc != SQLITE_OK) return db_error(db_, fmt::format("{}: prepare", op));
  OwnedStmt owned(stmt);
  if (tail != nullptr && std::string_view(tail).find_first_not_of(" \n\t;") != std::string::npos) {
    return error(kStep, "{}: prepare: more than one statement in '{}'", op, key);
  }
  cache_.emplace(std::move(key), owned.get());
  return Statement(db_, owned.release(), op);
}

Result<void> Connection::exec(const std::string& sql, std::string_view op) {
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    return db_error(db_, op);
  }
  return {};
}

Result<std::string> Connection::pragma(const std::string& name, std::string_view op) {
  std::string sql = "PRAGMA " + name;
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
    return db_error(db_, fmt::format("{}: {}", op, sql));
  }
  OwnedStmt stmt(raw);
  int rc = sqlite3_step(stmt.get());
  if (rc == SQLITE_DONE) return std::string();
  if (rc != SQLITE_ROW) return db_error(db_, fmt::format("{}: {}", op, sql));
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt.get(), 0));
  return std::string(p == nullptr ? "" : p);
}

int64_t Connection::changes() const {
  return sqlite3_changes64(db_);
}

// ---------------------------------------------------------------------------
// Transaction

Result<Transaction> Transaction::begin(Connection& conn, std::string_view op) {
  BERTH_TRY(conn.exec("BEGIN IMMEDIATE", fmt::format("{}: begin", op)));
  return Transaction(conn, op);
}

Transaction::~Transaction() {
  // Only while a transaction is open: a failed COMMIT may already have
  // rolled it back (SQLite then is in autocommit mode again).
  if (conn_ != nullptr && sqlite3_get_autocommit(conn_->handle()) == 0) {
    (void)conn_->exec("ROLLBACK", op_);
  }
}

Result<void> Transaction::commit() {
  BERTH_TRY(conn_->exec("COMMIT", fmt::format("{}: commit", op_)));
  conn_ = nullptr;
  return {};
}

}  // namespace berth::cp::sql
