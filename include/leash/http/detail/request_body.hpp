// SPDX-License-Identifier: BSL-1.0
// leash/http/detail/request_body.hpp: a server request's body, read from the
// connection while the handler asks for it.
//
// The server hands the handler a leash::body over a request_body_source; its
// bytes come from the connection on demand: a Content-Length body straight
// into the handler's buffer, a chunked one through the response parser's
// chunk decoder (reset_to_body: the framing rules are the same both ways).
// The first read of a request that said "Expect: 100-continue" first calls
// the server's hook (which sends "100 Continue" unless the response started).
// A coroutine handler's `co_await body.async_read(buf)` waits for the client
// on the connection's socket with no thread; a plain handler's read polls.
// When the handler returns, the server detaches the stream: it drains a short
// unread tail so the connection can carry the next request, or closes it. A
// body moved out of the handler and read later gets body_closed.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <utility>

#include "../../body.hpp"
#include "../../cancel.hpp"
#include "../../coro.hpp"
#include "../../io/reactor.hpp"
#include "../../io/socket.hpp"
#include "../errors.hpp"
#include "../response_parser.hpp"
#include "socket.hpp"
#include "stream_io.hpp"

namespace leash::inline v0::http::detail {

// The request body's state, shared by the handler's body_source and the
// server's connection loop (which outlives the handler's use of it).
//
// One read at a time (body_source's contract) runs between begin_read and
// end_read with `reading_` set; it holds the mutex only while it parses and
// takes bytes the stream already has (step()), never while it waits for the
// client (a blocking read polls, a coroutine read awaits the socket's
// readiness, in the direction the stream's step asks for). The first read calls the 100-continue
// hook outside the lock.
class request_stream {
 public:
  // `buf` holds the bytes received after the head; the stream consumes them
  // from `buf[begin]` on, and leaves what follows the body (detach()).
  // `sock` is the connection's socket and `bytes` its stream; they outlive
  // every read (detach() waits for a read in progress).
  request_stream(io::socket& sock, stream& bytes, std::string& buf, std::size_t begin,
                 body_framing framing, std::uint64_t length, parser_limits limits,
                 std::function<void()> on_first_read)
      : socket_(&sock),
        stream_(&bytes),
        buf_(&buf),
        begin_(begin),
        parser_(limits),
        on_first_read_(std::move(on_first_read)) {
    parser_.reset_to_body(framing, length);
    // RFC 9110 10.1.1: no 100 needed once content arrived or when there is none.
    if (begin_ < buf_->size() || parser_.complete()) on_first_read_ = nullptr;
  }

  // Reads body bytes into `out` (0 at the end). Blocks; `stop` stops it (and
  // shuts the connection down). Throws protocol_error (truncated_body for a
  // client that closed early, bad chunk framing), limit_exceeded (trailers),
  // io_error, body_closed (after detach()); the stream is broken after any
  // throw.
  std::size_t read(std::span<std::byte> out, const std::stop_token& stop) {
    begin_read(false);
    try {
      run_first_read_hook();
      for (;;) {
        want wait = want::read;
        if (const std::optional<std::size_t> n = handler_step(out, wait)) {
          end_read(nullptr);
          return *n;
        }
        wait_blocking(clock::time_point::max(), stop, wait);
      }
    } catch (...) {
      end_read(std::current_exception());
      throw;
    }
  }

  // read() on a coroutine task: waits for the client's bytes with no thread;
  // stopped by the task's ambient scope (cancelled). Same throws as read().
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<std::size_t> async_read(std::span<std::byte> out) {
    begin_read(true);
    std::size_t n = 0;
    std::exception_ptr error;
    try {
      run_first_read_hook();
      for (;;) {
        want wait = want::read;
        if (const std::optional<std::size_t> got = handler_step(out, wait)) {
          n = *got;
          break;
        }
        co_await io::detail::slot_awaiter(slot_for(wait),
                                          "http::server: waiting for a request body");
      }
    } catch (...) {
      error = std::current_exception();
    }
    end_read(error);
    if (error) std::rethrow_exception(error);
    co_return n;
  }

  // What the server does after the handler returned.
  enum class rest : unsigned char {
    none,     // the body was read to its end: the connection is clean
    drain,    // a tail worth reading (<= limit, or chunked of unknown size): drain()
    too_big,  // a Content-Length tail over the limit: close the connection
    broken,   // a read failed, or the client still waits for "100 Continue": close
  };

  // Ends the handler's access (later reads throw body_closed) and says what
  // is left. A read still in progress (a body moved out of the handler) is
  // woken, and awaited (after a hand-off of the worker: it may need one to
  // finish); the body is then `broken`. A coroutine read is woken through
  // the readiness it waits for (it re-checks detached_ and leaves); a
  // blocking one by shutting the connection down, which ends it. A
  // body still unread that asked for 100-continue is `broken`: its client
  // may never send it.
  rest detach(std::size_t limit) {
    std::unique_lock lock(mutex_);
    detached_ = true;
    if (reading_) {
      broken_ = true;
      if (reading_async_) {
        slot_for(waiting_for_).set_ready();
      } else {
        ::shutdown(fd(), SHUT_RDWR);
      }
      const leash::detail::blocking_region blocking;
      read_done_.wait(lock, [this] { return !reading_; });
    }
    if (broken_) return rest::broken;
    if (parser_.complete()) return rest::none;
    if (on_first_read_) return rest::broken;
    if (parser_.framing() == body_framing::content_length &&
        parser_.body_remaining() > buf_->size() - begin_ + limit) {
      return rest::too_big;
    }
    return rest::drain;
  }

  // After detach() said `drain`, on the connection's coroutine task: reads
  // and drops at most `limit` body bytes before `deadline`, waiting with no
  // thread; true when the body ended (the connection is clean). Throws
  // cancelled only when `task` (the connection task's token) stopped.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<bool> drain(std::size_t limit,
                                                           clock::time_point deadline,
                                                           std::stop_token task) {
    const std::unique_ptr<std::byte[]> tmp(new std::byte[drain_chunk]);
    std::size_t drained = 0;
    cancel_scope timer(deadline);
    try {
      for (;;) {
        std::optional<std::size_t> n;
        want wait = want::read;
        {
          std::lock_guard lock(mutex_);
          n = step(std::span(tmp.get(), drain_chunk), wait);
        }
        if (!n) {
          co_await io::detail::slot_awaiter(slot_for(wait),
                                            "http::server: draining a request body");
          continue;
        }
        if (*n == 0) co_return true;
        drained += *n;
        if (drained > limit) co_return false;
      }
    } catch (const cancelled&) {
      if (task.stop_requested()) throw;
    } catch (const std::exception&) {
      // a bad or dead tail: the connection is closed
    }
    co_return false;
  }

  // Drops the consumed bytes from the connection's buffer: what is left
  // there starts the next request. Call after detach() reported a clean end.
  void release() {
    std::lock_guard lock(mutex_);
    buf_->erase(0, begin_);
    begin_ = 0;
  }

  // True when a read failed because the client's bytes broke HTTP framing
  // (400 rather than 500 for the handler's escaped exception).
  bool malformed() const {
    std::lock_guard lock(mutex_);
    return malformed_;
  }

 private:
  // Bytes a chunked body's read takes from the socket at a time (decoded
  // from buf_ after), and what one drain step reads.
  static constexpr std::size_t chunk_read = 16 * 1024;
  static constexpr std::size_t drain_chunk = 16 * 1024;

  int fd() const noexcept { return io::socket_access::fd(*socket_); }

  // The reactor slot of the socket's readiness that `w` waits for.
  io::detail::ready_slot& slot_for(want w) const noexcept {
    io::detail::poll_desc& d = io::socket_access::desc(*socket_);
    return w == want::write ? d.write : d.read;
  }

  // Starts the handler's read (`async`: a coroutine read): throws
  // body_closed after detach() or an earlier failure.
  void begin_read(bool async) {
    std::lock_guard lock(mutex_);
    if (detached_) throw body_closed("leash::http::server: request body read after the handler");
    if (broken_) throw body_closed("leash::http::server: request body broken by an earlier error");
    reading_ = true;
    reading_async_ = async;
  }

  // Ends the read begun by begin_read; `error` (what it threw) breaks the
  // stream, and marks it malformed for the client's bad framing.
  void end_read(const std::exception_ptr& error) {
    bool bad_framing = false;
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const protocol_error&) {
        bad_framing = true;
      } catch (const limit_exceeded&) {
        bad_framing = true;
      } catch (...) {
      }
    }
    {
      std::lock_guard lock(mutex_);
      reading_ = false;
      broken_ = broken_ || error != nullptr;
      malformed_ = malformed_ || bad_framing;
    }
    read_done_.notify_all();
  }

  // The 100-continue hook, on the first read only.
  void run_first_read_hook() {
    std::function<void()> hook;
    {
      std::lock_guard lock(mutex_);
      hook = std::exchange(on_first_read_, nullptr);
    }
    if (hook) hook();
  }

  // One step of the handler's read; throws body_closed once detached.
  // Notes what a read that must wait waits for (detach() wakes it there).
  std::optional<std::size_t> handler_step(std::span<std::byte> out, want& wait) {
    std::lock_guard lock(mutex_);
    if (detached_) throw body_closed("leash::http::server: request body read after the handler");
    std::optional<std::size_t> n = step(out, wait);
    waiting_for_ = wait;
    return n;
  }

  // The parsing work of one read, without waiting: decodes body bytes from
  // buf_ and from what the socket already has into `out`. Returns their
  // count (0 at the end), or nullopt when it needs more bytes from the
  // client (wait until the socket is ready as `wait` says, then step again).
  std::optional<std::size_t> step(std::span<std::byte> out, want& wait) {
    char* dst = reinterpret_cast<char*>(out.data());
    for (;;) {
      if (parser_.complete()) return 0;
      if (begin_ == buf_->size()) {
        const std::optional<std::size_t> got = receive(dst, out.size(), wait);
        if (!got || parser_.framing() == body_framing::content_length) return got;
        continue;
      }
      const std::span<const char> pending(buf_->data() + begin_,
                                          std::min(buf_->size() - begin_, out.size()));
      const parse_step parsed = parser_.feed(pending);
      begin_ += parsed.consumed;
      if (parsed.event == parse_event::body) {
        std::memcpy(dst, parsed.body.data(), parsed.body.size());
        return parsed.body.size();
      }
    }
  }

  // buf_ is used up: takes what the stream has without waiting (nullopt
  // when nothing yet, with what it waits for in `wait`). A Content-Length body goes straight into
  // dst[0, size) and the body byte count is returned; a chunked one is appended to buf_ for the
  // decoder. Throws truncated_body at an early EOF, io_error.
  std::optional<std::size_t> receive(char* dst, std::size_t size, want& wait) {
    buf_->clear();
    begin_ = 0;
    const bool direct = parser_.framing() == body_framing::content_length;
    char tmp[chunk_read];
    char* into = direct ? dst : tmp;
    const std::size_t room =
        direct ? static_cast<std::size_t>(std::min<std::uint64_t>(size, parser_.body_remaining()))
               : sizeof tmp;
    for (;;) {
      const http::step st = stream_->read({into, room});
      if (st.bytes == 0 && st.wait == want::read && stream_->has_buffered()) continue;
      if (st.bytes == 0 && st.wait != want::nothing) {
        wait = st.wait;
        return std::nullopt;
      }
      if (st.bytes == 0) parser_.finish_eof();  // throws truncated_body
      if (direct) return parser_.feed({dst, st.bytes}).body.size();
      buf_->append(tmp, st.bytes);
      return st.bytes;
    }
  }

  // A blocking read's wait until the socket is ready as `wait` says: throws
  // timeout after `deadline`, cancelled when `stop` stops (which shuts the
  // connection down to end the poll).
  void wait_blocking(clock::time_point deadline, const std::stop_token& stop, want wait) {
    leash::detail::throw_if_stopped(stop);
    bool ready = false;
    {
      stop_guard guard(stop, fd());
      ready = poll_until(fd(), poll_events(wait), deadline);
    }
    leash::detail::throw_if_stopped(stop);
    if (!ready) throw timeout("request body");
  }

  mutable std::mutex mutex_;           // guards everything below; never held while a read waits
  std::condition_variable read_done_;  // reading_ became false
  io::socket* socket_;
  stream* stream_;     // the connection's bytes (plain TCP, or the user's adapter)
  std::string* buf_;   // the connection's read buffer; not touched once detached
  std::size_t begin_;  // unconsumed bytes are (*buf_)[begin_, size)
  response_parser parser_;
  std::function<void()> on_first_read_;  // the 100-continue hook, until it ran
  bool reading_ = false;                 // a read is between begin_read and end_read
  bool reading_async_ = false;           // ... and it is a coroutine read
  want waiting_for_ = want::read;        // ... that waits for this readiness
  bool detached_ = false;                // the handler returned: reads throw body_closed
  bool broken_ = false;                  // a read threw: the connection cannot be reused
  bool malformed_ = false;               // ... with a protocol_error
};

// The handler's view of a request_stream (see body_source). Closing it early
// reads nothing: the server decides after the handler what to do with the tail.
class request_body_source final : public body_source {
 public:
  explicit request_body_source(std::shared_ptr<request_stream> s) : s_(std::move(s)) {}
  std::size_t read(std::span<std::byte> out, std::stop_token stop) override {
    return s_->read(out, stop);
  }
  // Waits for the client with no thread (the default would hand the worker off).
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<std::size_t> async_read(
      std::span<std::byte> out) override {
    return s_->async_read(out);
  }
  void close(bool) override {}

 private:
  std::shared_ptr<request_stream> s_;
};

}  // namespace leash::inline v0::http::detail
