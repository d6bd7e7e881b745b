// SPDX-License-Identifier: BSL-1.0
// leash/cursor.hpp: a row-by-row result that must be closed (a database cursor).
// Prevents: the Go Mongo cursor opened with Next() and never closed (and the
// `rows.Err()` nobody checks): server-side cursors and connections pile up.
//
//   leash::cursor<user> users = db.query("SELECT ...");   // opens a statement
//   for (const user& u : users) {
//     if (u.banned) break;          // early exit: the statement is still closed
//   }                               // (by ~cursor, which reports the forgotten close)
//   std::vector<user> all = db.query("...").collect();    // reads all, then closes
//
// A cursor is a must_close handle (leash/must_close.hpp) over a cursor_source:
// a statement, a server-side cursor. Exhausting it closes it; an error from
// the source is thrown by next() after the rows that came before it, and
// closes it too. There is no separate err() to forget.
//
//   state      next()                        close()              destructor
//   open       a row; nullopt = exhausted    closes the source    closes it, reports
//              (closes it); error: closes,
//              throws
//   exhausted  nullopt                       nothing              nothing
//   closed     nullopt                       nothing              nothing
//
// Guarantees. Blocks: as long as the source's next() does. Throws: the
// source's errors from next(); the source's close error from the call that
// closed it (close(), or the next() that reached the end). Thread-safe: no; a
// cursor is used by one thread at a time.
#pragma once

#include "detail/config.hpp"

#include <cstddef>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "errors.hpp"
#include "must_close.hpp"

namespace leash::inline v0 {

// Where a cursor's rows come from. leash calls close() exactly once.
template <class Row>
class cursor_source {
 public:
  virtual ~cursor_source() = default;
  // The next row, or nullopt after the last one. Throws the source's errors.
  virtual std::optional<Row> next() = 0;
  // Releases the source (finalizes the statement). May throw: the close error.
  virtual void close() = 0;
};

namespace detail {

// A cursor_source from two callables: next() -> std::optional<Row>, close().
template <class Row, class Next, class Close>
class function_cursor_source final : public cursor_source<Row> {
 public:
  function_cursor_source(Next next, Close close)
      : next_(std::move(next)), close_(std::move(close)) {}
  std::optional<Row> next() override { return next_(); }
  void close() override { close_(); }

 private:
  Next next_;
  Close close_;
};

// The resource inside a cursor's must_close handle.
template <class Row>
class cursor_stream {
 public:
  static constexpr const char* must_close_name = "leash::cursor";

  explicit cursor_stream(std::unique_ptr<cursor_source<Row>> source) : source_(std::move(source)) {}

  void close() {
    if (done_) return;
    done_ = true;
    source_->close();
  }
  // Exhausted or failed: the source closed itself by reaching its end.
  bool closed() const noexcept { return done_; }

  cursor_source<Row>& source() { return *source_; }

 private:
  std::unique_ptr<cursor_source<Row>> source_;
  bool done_ = false;  // the source is closed (or being closed)
};

}  // namespace detail

// A must-close sequence of rows. See the table above.
template <class Row>
class [[nodiscard]] cursor {
 public:
  using value_type = Row;

  // An empty cursor: yields nothing.
  cursor() = default;

  // Owns `source`; `site` is reported if the cursor is dropped open.
  [[nodiscard]] explicit cursor(std::unique_ptr<cursor_source<Row>> source,
                                source_location site = source_location::current())
      : handle_(detail::cursor_stream<Row>(std::move(source)), site) {}

  // A cursor over two callables: next() -> std::optional<Row>, and close().
  template <class Next, class Close>
  requires std::is_invocable_r_v<std::optional<Row>, Next&>&&
      std::is_invocable_v<Close&> [[nodiscard]] cursor(
          Next next, Close close, source_location site = source_location::current())
      : cursor(std::make_unique<detail::function_cursor_source<Row, Next, Close>>(std::move(next),
                                                                                  std::move(close)),
               site) {}

  // The next row, or nullopt once exhausted (which closes the cursor and
  // throws the source's close error, if any) or closed. A source error closes
  // the cursor (its close error is dropped) and is thrown.
  std::optional<Row> next() {
    if (!handle_.is_open()) return std::nullopt;
    std::optional<Row> row;
    try {
      row = handle_->source().next();
    } catch (...) {
      (void)handle_.try_close();  // the source's error is the one to report
      throw;
    }
    if (!row) handle_.close();  // exhausted: reaching the end is closing
    return row;
  }

  // Reads every remaining row, then closes the cursor (exhausting it).
  std::vector<Row> collect() {
    std::vector<Row> rows;
    while (std::optional<Row> row = next())
      rows.push_back(std::move(*row));
    return rows;
  }

  // Closes the cursor early; later calls do nothing. Throws the close error
  // (closed anyway).
  void close() { handle_.close(); }
  // close() that returns the error instead of throwing it.
  std::exception_ptr try_close() noexcept { return handle_.try_close(); }

  // True once exhausted, closed or empty.
  bool closed() const noexcept { return !handle_.is_open(); }
  // The line that opened the cursor.
  const source_location& site() const noexcept { return handle_.site(); }

  // Range-for support: an input range that calls next(). Breaking out of the
  // loop leaves the cursor open (close it, or its destructor will).
  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = Row;
    using difference_type = std::ptrdiff_t;

    iterator() = default;
    Row& operator*() const { return *c_->current_; }
    Row* operator->() const { return &*c_->current_; }
    iterator& operator++() {
      c_->current_ = c_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    friend class cursor;
    explicit iterator(cursor* c) : c_(c) {}
    bool at_end() const { return !c_->current_.has_value(); }
    cursor* c_ = nullptr;
  };

  // Fetches the first row.
  iterator begin() {
    current_ = next();
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  must_close<detail::cursor_stream<Row>> handle_;
  std::optional<Row> current_;  // the row a range-for iterator points at
};

}  // namespace leash::inline v0
