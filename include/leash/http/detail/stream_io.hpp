// SPDX-License-Identifier: BSL-1.0
// leash/http/detail/stream_io.hpp: the plain TCP stream, and the waits
// around a stream's non-blocking steps.
//
// A step that returns a want is retried once the fd is ready in the
// direction it asks for: a thread caller polls (bounded by a deadline,
// cancelled by a stop token through stop_guard, as every socket wait), a
// coroutine task awaits the socket's reactor slot (its ambient scope
// cancels). A stream with no socket (fd -1, no reactor slot) is asked to
// wait by itself instead (stream::wait, stream::async_wait). A read that
// wants the socket readable while the stream still has bytes buffered is
// retried without waiting.
#pragma once

#include "../../detail/config.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <memory>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "../../coro.hpp"
#include "../../io/reactor.hpp"
#include "../errors.hpp"
#include "../stream.hpp"
#include "socket.hpp"

namespace leash::inline v0::http::detail {

// Plain TCP: recv/send on the non-blocking fd, EAGAIN as a want. The fd is
// leash's; shutdown() leaves the fd's own shutdown to leash.
class plain_stream final : public stream {
 public:
  explicit plain_stream(int fd) noexcept : fd_(fd) {}

  step read(std::span<char> into) override {
    for (;;) {
      const ssize_t n = ::recv(fd_, into.data(), into.size(), MSG_DONTWAIT);
      if (n >= 0) return {static_cast<std::size_t>(n), want::nothing};
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return {0, want::read};
      throw_errno("read", errno);
    }
  }

  step write(std::string_view data) override {
    for (;;) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) return {static_cast<std::size_t>(n), want::nothing};
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return {0, want::write};
      throw_errno("write", n < 0 ? errno : EPIPE);
    }
  }

  want shutdown() override { return want::nothing; }

 private:
  int fd_;
};

// A user's stream, kept from being called again once a step threw: the
// connection is broken, and a later error answer, pooling check or
// shutdown() must not touch the adapter's failed state (OpenSSL forbids
// SSL_shutdown after a fatal error). Reads and writes may come from two
// threads, so the mark is atomic.
class checked_stream final : public stream {
 public:
  explicit checked_stream(std::unique_ptr<stream> inner) noexcept : inner_(std::move(inner)) {}

  step read(std::span<char> into) override {
    return guarded([&] { return inner_->read(into); });
  }
  step write(std::string_view data) override {
    return guarded([&] { return inner_->write(data); });
  }
  // Nothing to end once a step threw.
  want shutdown() override {
    if (failed()) return want::nothing;
    return guarded([&] { return inner_->shutdown(); });
  }
  bool has_buffered() const override { return !failed() && inner_->has_buffered(); }
  // A wait is no step: a cancel or a timeout does not break the stream.
  bool wait(want w, clock::time_point deadline, const std::stop_token& token) override {
    return inner_->wait(w, deadline, token);
  }
  coro<void> async_wait(want w) override { return inner_->async_wait(w); }

  // A step threw: the stream is broken.
  bool failed() const noexcept { return failed_.load(std::memory_order_acquire); }

 private:
  template <class F>
  auto guarded(F step_once) -> decltype(step_once()) {
    if (failed()) {
      throw io_error("stream", std::make_error_code(std::errc::connection_aborted));
    }
    try {
      return step_once();
    } catch (...) {
      failed_.store(true, std::memory_order_release);
      throw;
    }
  }

  std::unique_ptr<stream> inner_;
  std::atomic<bool> failed_{false};
};

// A write step that took nothing and waits for nothing: the peer is gone.
[[noreturn]] inline void throw_write_stalled() {
  throw_errno("write", EPIPE);
}

// The poll() events of a want.
inline short poll_events(want w) noexcept {
  return w == want::write ? POLLOUT : POLLIN;
}

// Waits until a step of `s` that asked for `w` may go on, by `deadline`:
// polls `fd`, or asks a stream with no socket (fd < 0) to wait. false on
// timeout; a stream's own wait throws cancelled when `token` stops.
inline bool wait_step(stream& s, int fd, want w, clock::time_point deadline,
                      const std::stop_token& token) {
  if (fd < 0) return s.wait(w, deadline, token);
  return poll_until(fd, poll_events(w), deadline);
}

// Reads up to `size` bytes of `s` (over `fd`, -1 for none) into `out` before `deadline`;
// `got` is the count. Throws the stream's errors, or cancelled when `token`
// stops (the fd is then shut down).
inline read_status read_some(stream& s, int fd, char* out, std::size_t size, std::size_t& got,
                             clock::time_point deadline, const std::stop_token& token) {
  got = 0;
  leash::detail::throw_if_stopped(token);
  read_status status = read_status::eof;
  {
    stop_guard guard(token, fd);
    for (;;) {
      const step st = s.read({out, size});
      if (st.bytes > 0) {
        got = st.bytes;
        status = read_status::data;
        break;
      }
      if (st.wait == want::nothing) break;
      if (st.wait == want::read && s.has_buffered()) continue;
      if (!wait_step(s, fd, st.wait, deadline, token)) {
        status = read_status::timed_out;
        break;
      }
    }
  }
  // Checked after the guard died: a stop that raced a successful read still
  // shut the fd down, so the result is dropped and the connection is dead.
  leash::detail::throw_if_stopped(token);
  return status;
}

// Writes all of `data` to `s` (over `fd`, -1 for none) before `deadline`. Throws the
// stream's errors, timeout, or cancelled when `token` stops (the fd is then
// shut down).
inline void write_all(stream& s, int fd, std::string_view data, clock::time_point deadline,
                      const std::stop_token& token) {
  leash::detail::throw_if_stopped(token);
  bool timed_out = false;
  {
    stop_guard guard(token, fd);
    while (!data.empty()) {
      const step st = s.write(data);
      data.remove_prefix(st.bytes);
      if (data.empty()) break;
      if (st.bytes > 0) continue;
      if (st.wait == want::nothing) throw_write_stalled();
      if (!wait_step(s, fd, st.wait, deadline, token)) {
        timed_out = true;
        break;
      }
    }
  }
  leash::detail::throw_if_stopped(token);  // after the guard died (see read_some)
  if (timed_out) throw timeout("write");
}

// Writes what `s` takes of `data` now, without waiting; returns the count.
// Throws the stream's errors.
inline std::size_t send_now(stream& s, std::string_view data) {
  std::size_t sent = 0;
  while (sent < data.size()) {
    const step st = s.write(data.substr(sent));
    sent += st.bytes;
    if (st.bytes == 0 && st.wait == want::nothing) throw_write_stalled();
    if (st.bytes == 0) break;
  }
  return sent;
}

// read_some() and write_all() on a plain TCP fd.
inline read_status read_some(int fd, char* out, std::size_t size, std::size_t& got,
                             clock::time_point deadline, const std::stop_token& token) {
  plain_stream s(fd);
  return read_some(s, fd, out, size, got, deadline, token);
}
inline void write_all(int fd, std::string_view data, clock::time_point deadline,
                      const std::stop_token& token) {
  plain_stream s(fd);
  write_all(s, fd, data, deadline, token);
}

// co_await: waits until the socket of `d` is ready for what `w` asks. Throws
// io_error when the socket was closed meanwhile, cancelled when the task's
// ambient scope stops.
LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER inline coro<void> async_wait(io::detail::poll_desc& d,
                                                                     want w, const char* what) {
  io::detail::ready_slot& slot = w == want::write ? d.write : d.read;
  if (co_await io::detail::slot_awaiter(slot, what) == io::detail::wake_reason::closed) {
    throw io_error(std::string(what) + ": the socket was closed while waiting",
                   std::make_error_code(std::errc::bad_file_descriptor));
  }
}

// co_await: wait_step() for a coroutine task: the socket's slot in `d`, or
// the stream's own wait when it has no socket (`d` null).
inline coro<void> async_wait_step(stream& s, io::detail::poll_desc* d, want w, const char* what) {
  return d != nullptr ? async_wait(*d, w, what) : s.async_wait(w);
}

// co_await: reads up to into.size() bytes of `s`, waiting on `d` (null: no
// socket) as its steps ask; 0 at the end of stream.
LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER inline coro<std::size_t> async_read_some(
    stream& s, io::detail::poll_desc* d, std::span<char> into, const char* what) {
  for (;;) {
    const step st = s.read(into);
    if (st.bytes > 0 || st.wait == want::nothing) co_return st.bytes;
    if (st.wait == want::read && s.has_buffered()) continue;
    co_await async_wait_step(s, d, st.wait, what);
  }
}

// co_await: writes all of `data` to `s`, waiting on `d` (null: no socket) as
// its steps ask. If it is cancelled or fails part way, a prefix may have
// been sent.
LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER inline coro<void> async_write_all(stream& s,
                                                                          io::detail::poll_desc* d,
                                                                          std::string_view data,
                                                                          const char* what) {
  while (!data.empty()) {
    const step st = s.write(data);
    data.remove_prefix(st.bytes);
    if (data.empty() || st.bytes > 0) continue;
    if (st.wait == want::nothing) throw_write_stalled();
    co_await async_wait_step(s, d, st.wait, what);
  }
}

// co_await: the stream's orderly end of its write side, waiting on `d`
// (null: no socket) as its steps ask.
LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER inline coro<void> async_shutdown(stream& s,
                                                                         io::detail::poll_desc* d,
                                                                         const char* what) {
  for (want w = s.shutdown(); w != want::nothing; w = s.shutdown()) {
    co_await async_wait_step(s, d, w, what);
  }
}

}  // namespace leash::inline v0::http::detail
