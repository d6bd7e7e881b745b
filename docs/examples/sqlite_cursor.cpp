// sqlite_cursor: a SQLite statement as a leash cursor, closed (finalized) even
// when the loop that reads it breaks early.
//
// The Go bug this fixes: a Mongo cursor (or database/sql's Rows) read with
// Next() in a loop that returns early, and never closed. The server-side
// cursor and its connection stay open until something times them out. Here
// the statement is a leash::cursor: exhausting it finalizes it, close()
// finalizes it, and if nobody does, the cursor's destructor finalizes it and
// reports the line that opened it.
//
// Built and run by the test suite when SQLite3 is found:
//   g++ -std=c++20 -I include docs/examples/sqlite_cursor.cpp -lsqlite3 -pthread
#include <sqlite3.h>

#include <cstdio>
#include <leash/cursor.hpp>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace sqlite_example {

struct sqlite_error : std::runtime_error {
  explicit sqlite_error(sqlite3* db)
      : std::runtime_error(std::string("sqlite: ") + sqlite3_errmsg(db)) {}
};

struct finalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};

// Runs `sql` and returns its rows as a cursor; row_of(stmt) turns the current
// row into a Row. The statement is finalized when the cursor closes: at the
// end of the rows, on an error, on close(), or in its destructor.
template <class Row, class RowOf>
leash::cursor<Row> query(sqlite3* db, const char* sql, RowOf row_of,
                         leash::source_location site = leash::source_location::current()) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &raw, nullptr) != SQLITE_OK) throw sqlite_error(db);
  std::unique_ptr<sqlite3_stmt, finalizer> stmt(raw);  // until the cursor owns it
  leash::cursor<Row> rows(
      [db, raw, row_of]() -> std::optional<Row> {
        switch (sqlite3_step(raw)) {
          case SQLITE_ROW:
            return row_of(raw);
          case SQLITE_DONE:
            return std::nullopt;
          default:
            throw sqlite_error(db);  // thrown by next(), after the good rows
        }
      },
      [raw] { sqlite3_finalize(raw); }, site);
  stmt.release();
  return rows;
}

struct person {
  std::string name;
  int age = 0;
};

inline person person_of(sqlite3_stmt* s) {
  return {reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), sqlite3_column_int(s, 1)};
}

// An in-memory database with a few people.
inline sqlite3* open_people() {
  sqlite3* db = nullptr;
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) throw std::runtime_error("sqlite: cannot open");
  const char* setup =
      "CREATE TABLE people(name TEXT, age INT);"
      "INSERT INTO people VALUES ('ada', 36), ('grace', 45), ('linus', 21), ('rob', 60);";
  if (sqlite3_exec(db, setup, nullptr, nullptr, nullptr) != SQLITE_OK) throw sqlite_error(db);
  return db;
}

// True when no statement of `db` is left unfinalized.
inline bool no_open_statements(sqlite3* db) {
  return sqlite3_next_stmt(db, nullptr) == nullptr;
}

}  // namespace sqlite_example

#ifndef LEASH_SQLITE_EXAMPLE_NO_MAIN
int main() {
  using namespace sqlite_example;
  sqlite3* db = open_people();
  // Show the report a forgotten close produces, instead of the default stderr line.
  leash::set_unclosed_handler([](const leash::unclosed_handle& h) {
    std::printf("leash closed a %s opened at line %u that nobody closed\n", h.type.c_str(),
                static_cast<unsigned>(h.site.line));
  });

  // The Mongo-cursor bug: leave the loop at the first match, forget close().
  {
    auto people = query<person>(db, "SELECT name, age FROM people ORDER BY age", person_of);
    for (const person& p : people) {
      if (p.age > 30) {
        std::printf("first over 30: %s\n", p.name.c_str());
        break;
      }
    }
  }  // ~cursor finalizes the statement
  std::printf("statements left open: %s\n", no_open_statements(db) ? "none" : "SOME");
  if (!no_open_statements(db)) return 1;

  // The usual ways: read everything (that closes), or close early on purpose.
  for (const person& p : query<person>(db, "SELECT name, age FROM people", person_of).collect())
    std::printf("%s %d\n", p.name.c_str(), p.age);

  sqlite3_close(db);
  return 0;
}
#endif
