// A thin RAII layer over the SQLite C API for the store: one connection, its
// cache of prepared statements, a bound statement that resets itself, and a
// write transaction that rolls back unless committed. Errors name the
// operation and carry sqlite3_errmsg ("store: put_task: database is locked").
//
// Not thread-safe by itself: SqliteStore serialises every use of a
// Connection behind its mutex.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "common/error.h"

struct sqlite3;
struct sqlite3_stmt;

namespace berth::cp::sql {

// The error of the last failed call on `db` for the operation `op`: kind
// busy for SQLITE_BUSY/SQLITE_LOCKED (another writer held the lock longer
// than busy_timeout), internal otherwise; errno for I/O errors.
std::unexpected<Error> db_error(sqlite3* db, std::string_view op);

// A cached prepared statement in use: bind parameters (1-based, as SQLite
// numbers them), step through the rows, read columns (0-based). Resetting
// and clearing the bindings on destruction returns it to the cache clean.
class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt, std::string_view op) : db_(db), stmt_(stmt), op_(op) {}
  Statement(Statement&& o) noexcept
      : db_(o.db_),
        stmt_(std::exchange(o.stmt_, nullptr)),
        op_(std::move(o.op_)),
        bind_rc_(o.bind_rc_) {}
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement& operator=(Statement&&) = delete;
  ~Statement();

  Statement& bind(int i, std::string_view v);
  // (std::string converts to both string_view and optional<string>.)
  Statement& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
  Statement& bind(int i, int64_t v);
  Statement& bind(int i, int v) { return bind(i, static_cast<int64_t>(v)); }
  Statement& bind(int i, double v);
  // nullopt binds NULL.
  Statement& bind(int i, const std::optional<std::string>& v);

  // true: a row is ready; false: done. A bind error (recorded by bind) is
  // reported here, so call sites bind without checking each call.
  Result<bool> step();
  // step() for statements that return no rows.
  Result<void> run();

  std::string text(int col) const;
  int64_t int64(int col) const;
  double real(int col) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
  std::string op_;
  int bind_rc_ = 0;  // the first failed bind's result code, 0 if none
};

class Connection {
 public:
  // Opens (creating if `create`) the database at `path` in serialised mode
  // (SQLITE_OPEN_FULLMUTEX: the library's own lock, below our mutex), or
  // read-only.
  enum class Mode { read_only, read_write_create };
  static Result<std::unique_ptr<Connection>> open(const std::string& path, Mode mode);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // A statement prepared once per connection and kept (the SQL text is the
  // key); `op` names the caller's operation in errors.
  Result<Statement> prepare(std::string_view sql, std::string_view op);
  // Runs one or more statements without results (schema, pragmas, BEGIN).
  Result<void> exec(const std::string& sql, std::string_view op);
  // A pragma's (first) value as text: "wal", "2", "ok".
  Result<std::string> pragma(const std::string& name, std::string_view op);
  // Rows changed by the last INSERT/UPDATE/DELETE.
  int64_t changes() const;
  sqlite3* handle() const { return db_; }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;
};

// BEGIN IMMEDIATE ... COMMIT. IMMEDIATE takes the write lock at BEGIN, so a
// transaction that reads before it writes waits in busy_timeout for another
// connection instead of failing with SQLITE_BUSY at its first write (a
// DEFERRED read transaction cannot be upgraded once another writer
// committed). Rolled back on destruction unless committed.
class Transaction {
 public:
  static Result<Transaction> begin(Connection& conn, std::string_view op);
  Transaction(Transaction&& o) noexcept : conn_(o.conn_), op_(o.op_) { o.conn_ = nullptr; }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();
  Result<void> commit();

 private:
  Transaction(Connection& conn, std::string_view op) : conn_(&conn), op_(op) {}
  Connection* conn_;
  std::string op_;
};

}  // namespace berth::cp::sql
