// Tests for leash::cursor over a real database: the SQLite example's query()
// (docs/examples/sqlite_cursor.cpp). Built only when SQLite3 is found.
#include <doctest/doctest.h>

#define LEASH_SQLITE_EXAMPLE_NO_MAIN
#include <mutex>
#include <vector>

#include "sqlite_cursor.cpp"

using namespace sqlite_example;

namespace {

struct db_fixture {
  sqlite3* db = open_people();
  ~db_fixture() { sqlite3_close(db); }
};

struct quiet_unclosed {
  int reports = 0;
  leash::unclosed_handler previous =
      leash::set_unclosed_handler([this](const leash::unclosed_handle&) { ++reports; });
  ~quiet_unclosed() { leash::set_unclosed_handler(previous); }
};

// A SQL function that fails on its argument 3: an error in the middle of a result set.
void fail_on_three(sqlite3_context* ctx, int, sqlite3_value** argv) {
  if (sqlite3_value_int(argv[0]) == 3) {
    sqlite3_result_error(ctx, "row 3 is corrupt", -1);
  } else {
    sqlite3_result_int(ctx, sqlite3_value_int(argv[0]));
  }
}

int int_of(sqlite3_stmt* s) {
  return sqlite3_column_int(s, 0);
}

}  // namespace

TEST_CASE("breaking out of the loop early still finalizes the statement") {
  db_fixture f;
  quiet_unclosed quiet;
  {
    auto people = query<person>(f.db, "SELECT name, age FROM people ORDER BY age", person_of);
    for (const person& p : people) {
      if (p.age > 30) break;
    }
    CHECK_FALSE(no_open_statements(f.db));  // still open inside the scope
  }
  CHECK(no_open_statements(f.db));
  CHECK(quiet.reports == 1);  // the forgotten close is reported
}

TEST_CASE("an error in the middle of the rows is thrown by next() after the good rows") {
  db_fixture f;
  REQUIRE(sqlite3_create_function(f.db, "fail_on_three", 1, SQLITE_UTF8, nullptr, fail_on_three,
                                  nullptr, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_exec(f.db, "CREATE TABLE n(x INT); INSERT INTO n VALUES (1), (2), (3), (4);",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  auto rows =
      query<int>(f.db, "SELECT fail_on_three(x) FROM n" /* rowid order, row by row */, int_of);
  CHECK(rows.next() == 1);
  CHECK(rows.next() == 2);
  CHECK_THROWS_WITH_AS(rows.next(), "sqlite: row 3 is corrupt", sqlite_error);
  CHECK(rows.closed());
  CHECK(no_open_statements(f.db));
}

TEST_CASE("collect() reads every row and finalizes") {
  db_fixture f;
  const auto people = query<person>(f.db, "SELECT name, age FROM people", person_of).collect();
  CHECK(people.size() == 4);
  CHECK(no_open_statements(f.db));
}

TEST_CASE("an early close() finalizes at once") {
  db_fixture f;
  auto people = query<person>(f.db, "SELECT name, age FROM people", person_of);
  CHECK(people.next().has_value());
  people.close();
  CHECK(no_open_statements(f.db));
}

TEST_CASE("10 000 open/iterate/close cycles leave no statement and no memory growth") {
  db_fixture f;
  quiet_unclosed quiet;
  auto cycle = [&](int i) {
    auto people = query<person>(f.db, "SELECT name, age FROM people ORDER BY age", person_of);
    switch (i % 3) {
      case 0:
        (void)people.collect();
        break;
      case 1:
        (void)people.next();
        people.close();
        break;
      default:
        for (const person& p : people) {
          if (p.age > 40) break;  // dropped open: closed by the destructor
        }
    }
  };
  for (int i = 0; i < 3; ++i)
    cycle(i);  // warm-up: SQLite's caches settle
  const sqlite3_int64 before = sqlite3_memory_used();
  for (int i = 0; i < 10'000; ++i)
    cycle(i);
  CHECK(no_open_statements(f.db));
  CHECK(sqlite3_memory_used() == before);
  CHECK(quiet.reports == 10'003 / 3);
}
