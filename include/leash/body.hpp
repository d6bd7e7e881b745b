// SPDX-License-Identifier: BSL-1.0
// leash/body.hpp: a readable byte stream that must be closed (an HTTP response body).
// Prevents: Go's `resp.Body` that is neither read to EOF nor closed, so the
// keep-alive connection is never reused and sockets and goroutines pile up.
//
//   leash::body b = leash::memory_body("hello, world");   // or a transport's response
//   std::string all = b.read_all(1 << 20);   // reads to EOF: that closes it
//
//   std::array<std::byte, 4096> buf;
//   while (std::size_t n = b.read(buf)) consume(buf.data(), n);   // 0 at EOF: closed
//   b.close();   // or: forgotten, then ~body closes it and reports the opening line
//
// A body is a must_close handle (leash/must_close.hpp) over a body_source, the
// interface a transport implements over its connection. Reaching EOF closes the
// source (at_end = true); close() before EOF closes it with at_end = false, and
// the source decides what that means (an HTTP transport drains a short tail so
// the connection is reused, or discards the connection).
//
//   state   read()                    close()                 destructor
//   open    bytes; 0 at EOF = closed  closes the source       closes it, reports
//   closed  throws body_closed        nothing                 nothing
//
// In a coroutine task, `co_await b.async_read(buf)` and `co_await
// b.async_read_all(max)` do the same without blocking: a source that
// overrides body_source::async_read (a transport's response body) waits with
// no thread; any other source's read runs after the worker is handed to
// another thread (the hand-off of blocking calls, docs/coroutines.md).
//
// Guarantees. Blocks: read, read_all and discard, until bytes or EOF arrive.
// Cancelled: by the ambient or an explicit token (throws leash::cancelled), and
// by close() from another thread, which wakes a blocked read with body_closed
// (an awaited read too: close() cancels the scope it waits in).
// A read after close fails at once with body_closed: it never blocks. Throws:
// body_closed, body_too_large (read_all), the source's errors, and the source's
// close error from the call that closed it (close(), or the read that hit EOF).
// Thread-safe: one reader at a time; close() may be called from any thread.
#pragma once

#include "detail/config.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>

#include "cancel.hpp"
#include "detail/registry.hpp"
#include "errors.hpp"
#include "must_close.hpp"

namespace leash::inline v0 {

// Where a body's bytes come from. Implemented by transports (over a socket)
// and by memory_source. leash calls read() from one thread at a time, and
// close() exactly once, never while a read() runs.
class body_source {
 public:
  virtual ~body_source() = default;

  // Reads up to out.size() (at least 1) bytes; returns 0 only at the end of
  // the body. Blocks until a byte or the end arrives, and must return or throw
  // promptly once `stop` is stopped (the caller was cancelled, or the body was
  // closed by another thread): leash then ignores what it returned and reports
  // cancelled or body_closed itself.
  virtual std::size_t read(std::span<std::byte> out, std::stop_token stop) = 0;

  // read() for a coroutine task, with the same contract; the stop is the
  // task's ambient scope (leash cancels a scope around the call when the body
  // is closed by another thread). The default runs read() with the ambient
  // token after handing the worker to another thread, so it is correct
  // anywhere but costs a thread while it blocks: a source that can wait
  // without a thread overrides it.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER virtual coro<std::size_t> async_read(
      std::span<std::byte> out) {
    const detail::blocking_region blocking;
    co_return read(out, detail::ambient_token_ref());
  }

  // Releases the source. `at_end`: every byte was read. May throw: that is the
  // body's close error.
  virtual void close(bool at_end) = 0;
};

// An in-memory body_source, for tests and examples. `chunk` caps the bytes one
// read() returns (0 for no cap), so readers see several reads.
class memory_source final : public body_source {
 public:
  explicit memory_source(std::string data, std::size_t chunk = 0)
      : data_(std::move(data)), chunk_(chunk) {}

  std::size_t read(std::span<std::byte> out, std::stop_token) override {
    std::size_t n = std::min(out.size(), data_.size() - offset_);
    if (chunk_ != 0) n = std::min(n, chunk_);
    std::memcpy(out.data(), data_.data() + offset_, n);
    offset_ += n;
    return n;
  }

  // Never blocks: no hand-off.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<std::size_t> async_read(
      std::span<std::byte> out) override {
    co_return read(out, {});
  }

  void close(bool) override {}

 private:
  std::string data_;
  std::size_t chunk_;
  std::size_t offset_ = 0;
};

namespace detail {

// The resource inside a body's must_close handle. Its state lives on the heap
// so that close() on another thread and a running read() share it safely.
class body_stream {
 public:
  static constexpr const char* must_close_name = "leash::body";

  explicit body_stream(std::unique_ptr<body_source> source)
      : s_(std::make_unique<shared>(std::move(source))) {}

  std::size_t read(std::span<std::byte> out, const std::stop_token& token) {
    if (!begin_read(out)) return 0;
    shared& s = *s_;
    std::size_t n = 0;
    std::exception_ptr error;
    {
      // The source sees one token that stops when the caller is cancelled or
      // the body is closed by another thread.
      std::stop_source stop;
      auto forward = [&stop] { stop.request_stop(); };
      std::stop_callback<decltype(forward)> on_cancel(token, forward);
      std::stop_callback<decltype(forward)> on_close(s.close_source.get_token(), forward);
      try {
        n = s.source->read(out, stop.get_token());
      } catch (...) {
        error = std::current_exception();
      }
    }
    return end_read(n, error, token);
  }

  // read() in a coroutine task: the source's async_read runs in a scope that
  // a close() from another thread cancels; the caller's stop is the ambient
  // scope.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<std::size_t> async_read(std::span<std::byte> out) {
    if (!begin_read(out)) co_return 0;
    shared& s = *s_;
    std::size_t n = 0;
    std::exception_ptr error;
    {
      cancel_scope closing;
      auto forward = [&closing] { closing.cancel("leash::body: closed"); };
      std::stop_callback<decltype(forward)> on_close(s.close_source.get_token(), forward);
      try {
        n = co_await s.source->async_read(out);
      } catch (...) {
        error = std::current_exception();
      }
    }
    co_return end_read(n, error, detail::ambient_token_ref());
  }

  // Closes the source once; wakes a blocked read first and waits for it to
  // leave the source.
  void close() {
    shared& s = *s_;
    {
      std::lock_guard lock(s.mutex);
      if (s.source_closed) return;
      s.closed = true;
    }
    s.close_source.request_stop();  // unlocked: the stop callbacks take locks
    bool at_end = false;
    {
      std::unique_lock lock(s.mutex);
      s.read_done.wait(lock, [&] { return !s.reading; });
      if (s.source_closed) return;
      s.source_closed = true;
      at_end = s.at_end;
    }
    s.source->close(at_end);
  }

  bool closed() const {
    std::lock_guard lock(s_->mutex);
    return s_->source_closed;
  }

 private:
  // Marks a read as running; false for an empty `out` (nothing to read).
  bool begin_read(std::span<std::byte> out) {
    std::lock_guard lock(s_->mutex);
    if (s_->closed) throw body_closed("leash::body: read after close");
    if (s_->reading) throw usage_error("leash::body: two reads at once");
    if (out.empty()) return false;
    s_->reading = true;
    return true;
  }

  // Ends a read that returned `n` or failed with `error`: a close meanwhile
  // wins, then the caller's stop (the result is dropped), then the error; 0
  // is the end, which closes the source.
  std::size_t end_read(std::size_t n, const std::exception_ptr& error,
                       const std::stop_token& token) {
    shared& s = *s_;
    std::unique_lock lock(s.mutex);
    s.reading = false;
    s.read_done.notify_all();
    if (s.closed) throw body_closed("leash::body: closed while a read was waiting");
    if (error || token.stop_requested()) {  // a cancelled read's result is dropped
      lock.unlock();
      if (token.stop_requested()) throw_cancelled(token);
      std::rethrow_exception(error);
    }
    if (n == 0) {  // the end: reaching it is closing
      s.closed = true;
      s.at_end = true;
      s.source_closed = true;
      lock.unlock();
      s.source->close(true);  // its error is thrown by the read that hit the end
    }
    return n;
  }

  struct shared {
    explicit shared(std::unique_ptr<body_source> src) : source(std::move(src)) {}

    std::unique_ptr<body_source> source;
    std::stop_source close_source;  // stopped by close(): wakes a blocked read
    mutable std::mutex mutex;       // guards the flags below
    std::condition_variable read_done;
    bool reading = false;        // a read() is inside the source
    bool closed = false;         // no more reads: close() started or EOF reached
    bool at_end = false;         // EOF was reached
    bool source_closed = false;  // source->close() was called (or is being called)
  };
  std::unique_ptr<shared> s_;
};

}  // namespace detail

// A readable byte stream that must be closed. See the table above.
class [[nodiscard]] body {
 public:
  // An empty body: every read throws body_closed.
  body() = default;

  // Owns `source`; `site` is reported if the body is dropped open.
  [[nodiscard]] explicit body(std::unique_ptr<body_source> source,
                              source_location site = source_location::current())
      : handle_(detail::body_stream(std::move(source)), site) {}

  // Reads up to out.size() bytes; returns 0 at EOF, which closes the body (and
  // throws the source's close error, if any). Blocks; cancellable; throws
  // body_closed, cancelled, the source's errors.
  std::size_t read(std::span<std::byte> out) { return read(out, detail::ambient_token_ref()); }
  std::size_t read(std::span<std::byte> out, const std::stop_token& token) {
    if (!handle_.valid()) throw body_closed("leash::body: read from an empty body");
    return handle_->read(out, token);
  }
  std::size_t read(std::span<char> out) { return read(std::as_writable_bytes(out)); }
  std::size_t read(std::span<char> out, const std::stop_token& token) {
    return read(std::as_writable_bytes(out), token);
  }

  // read() for a coroutine task: co_await it. Waits with no thread when the
  // source can (see body_source::async_read); cancelled by the ambient scope.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<std::size_t> async_read(std::span<std::byte> out) {
    if (!handle_.valid()) throw body_closed("leash::body: read from an empty body");
    co_return co_await handle_->async_read(out);
  }
  coro<std::size_t> async_read(std::span<char> out) {
    return async_read(std::as_writable_bytes(out));
  }

  // Reads to EOF (which closes the body) and returns the bytes. More than
  // max_bytes: closes the body and throws body_too_large. Blocks; cancellable.
  std::string read_all(std::size_t max_bytes) {
    return read_all(max_bytes, detail::ambient_token_ref());
  }
  std::string read_all(std::size_t max_bytes, const std::stop_token& token) {
    std::string out;
    char buf[16 * 1024];
    while (std::size_t n = read(std::span<char>(buf), token)) {
      append_within(out, buf, n, max_bytes);
    }
    return out;
  }

  // read_all() for a coroutine task: co_await it.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<std::string> async_read_all(std::size_t max_bytes) {
    std::string out;
    std::string buf(read_all_chunk, '\0');
    while (std::size_t n = co_await async_read(std::span<char>(buf))) {
      append_within(out, buf.data(), n, max_bytes);
    }
    co_return out;
  }

  // Reads and drops everything up to EOF (which closes the body); returns the
  // count. Blocks; cancellable.
  std::size_t discard() { return discard(detail::ambient_token_ref()); }
  std::size_t discard(const std::stop_token& token) {
    std::size_t total = 0;
    char buf[16 * 1024];
    while (std::size_t n = read(std::span<char>(buf), token))
      total += n;
    return total;
  }

  // Closes the body; later calls do nothing. A read blocked on another thread
  // wakes with body_closed. Throws the source's close error (closed anyway).
  void close() { handle_.close(); }
  // close() that returns the error instead of throwing it.
  std::exception_ptr try_close() noexcept { return handle_.try_close(); }

  // True once closed, read to EOF, or empty (a snapshot).
  bool closed() const { return !handle_.is_open(); }
  // The line that opened the body.
  const source_location& site() const noexcept { return handle_.site(); }

 private:
  // What async_read_all reads at a time (a heap buffer: a coroutine frame
  // holds no large array).
  static constexpr std::size_t read_all_chunk = 16 * 1024;

  // Appends n bytes, or closes the body and throws body_too_large when `out`
  // would exceed max_bytes.
  void append_within(std::string& out, const char* data, std::size_t n, std::size_t max_bytes) {
    if (n > max_bytes - out.size()) {
      (void)handle_.try_close();  // the size error is the one to report
      throw body_too_large("leash::body: more than " + std::to_string(max_bytes) + " bytes");
    }
    out.append(data, n);
  }

  must_close<detail::body_stream> handle_;
};

// A body over a copy of `data` (memory_source), opened at the caller's line.
[[nodiscard]] inline body memory_body(std::string data, std::size_t chunk = 0,
                                      source_location site = source_location::current()) {
  return body(std::make_unique<memory_source>(std::move(data), chunk), site);
}

}  // namespace leash::inline v0
