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
// When the handler returns, the server detaches the stream: it drains a short
// unread tail so the connection can carry the next request, or closes it. A
// body moved out of the handler and read later gets body_closed.
//
// Lock order: the stream's mutex, then the response writer's (the 100 hook).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <utility>

#include "../../body.hpp"
#include "../errors.hpp"
#include "../response_parser.hpp"
#include "socket.hpp"

namespace leash::inline v0::http::detail {

// The request body's state, shared by the handler's body_source and the
// server's connection loop (which outlives the handler's use of it).
class request_stream {
 public:
  // `buf` holds the bytes received after the head; the stream consumes them
  // from `buf[begin]` on, and leaves what follows the body (detach()).
  request_stream(int fd, std::string& buf, std::size_t begin, body_framing framing,
                 std::uint64_t length, parser_limits limits, std::function<void()> on_first_read)
      : fd_(fd),
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
  // io_error; the stream is broken after any throw.
  std::size_t read(std::span<std::byte> out, const std::stop_token& stop) {
    std::unique_lock lock(mutex_);
    if (detached_) throw body_closed("leash::http::server: request body read after the handler");
    if (broken_) throw body_closed("leash::http::server: request body broken by an earlier error");
    try {
      if (on_first_read_) std::exchange(on_first_read_, nullptr)();
      return read_locked(reinterpret_cast<char*>(out.data()), out.size(), clock::time_point::max(),
                         stop);
    } catch (const protocol_error&) {
      malformed_ = broken_ = true;
      throw;
    } catch (const limit_exceeded&) {
      malformed_ = broken_ = true;
      throw;
    } catch (...) {
      broken_ = true;
      throw;
    }
  }

  // What the server does after the handler returned.
  enum class rest : unsigned char {
    none,     // the body was read to its end: the connection is clean
    drain,    // a tail worth reading (<= limit, or chunked of unknown size): drain()
    too_big,  // a Content-Length tail over the limit: close the connection
    broken,   // a read failed, or the client still waits for "100 Continue": close
  };

  // Ends the handler's access (later reads throw body_closed; a read still
  // blocked on another thread is woken by shutting the connection down) and
  // says what is left. A body still unread that asked for 100-continue is
  // `broken`: its client may never send it.
  rest detach(std::size_t limit) {
    std::unique_lock lock(mutex_, std::try_to_lock);
    if (!lock.owns_lock()) {  // a body moved out of the handler is being read
      ::shutdown(fd_, SHUT_RDWR);
      lock.lock();
    }
    detached_ = true;
    if (broken_) return rest::broken;
    if (parser_.complete()) return rest::none;
    if (on_first_read_) return rest::broken;
    if (parser_.framing() == body_framing::content_length &&
        parser_.body_remaining() > buf_->size() - begin_ + limit) {
      return rest::too_big;
    }
    return rest::drain;
  }

  // After detach() said `drain`: reads and drops at most `limit` body bytes
  // before `deadline`; true when the body ended (the connection is clean).
  bool drain(std::size_t limit, clock::time_point deadline, const std::stop_token& token) {
    std::lock_guard lock(mutex_);
    char tmp[16 * 1024];
    std::size_t drained = 0;
    try {
      while (!parser_.complete()) {
        drained += read_locked(tmp, sizeof tmp, deadline, token);
        if (drained > limit) return false;
      }
    } catch (const std::exception&) {
      return false;  // a bad, slow or dead tail: the connection is closed
    }
    return true;
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
  // One read of body bytes into dst[0, size); 0 at the end. Throws timeout
  // when `deadline` passes.
  std::size_t read_locked(char* dst, std::size_t size, clock::time_point deadline,
                          const std::stop_token& stop) {
    for (;;) {
      if (parser_.complete()) return 0;
      if (begin_ == buf_->size()) {
        buf_->clear();
        begin_ = 0;
        const bool direct = parser_.framing() == body_framing::content_length;
        // A Content-Length body goes straight into the caller's buffer.
        char tmp[16 * 1024];
        char* into = direct ? dst : tmp;
        const std::size_t want =
            direct
                ? static_cast<std::size_t>(std::min<std::uint64_t>(size, parser_.body_remaining()))
                : sizeof tmp;
        std::size_t got = 0;
        const read_status st = read_some(fd_, into, want, got, deadline, stop);
        if (st == read_status::timed_out) throw timeout("request body");
        if (st == read_status::eof) parser_.finish_eof();  // throws truncated_body
        if (direct) return parser_.feed({dst, got}).body.size();
        buf_->append(tmp, got);
        continue;
      }
      const std::span<const char> pending(buf_->data() + begin_,
                                          std::min(buf_->size() - begin_, size));
      const parse_step step = parser_.feed(pending);
      begin_ += step.consumed;
      if (step.event == parse_event::body) {
        std::memcpy(dst, step.body.data(), step.body.size());
        return step.body.size();
      }
    }
  }

  mutable std::mutex mutex_;  // guards everything below; held through a read
  int fd_;
  std::string* buf_;   // the connection's read buffer; not touched once detached
  std::size_t begin_;  // unconsumed bytes are (*buf_)[begin_, size)
  response_parser parser_;
  std::function<void()> on_first_read_;  // the 100-continue hook, until it ran
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
  void close(bool) override {}

 private:
  std::shared_ptr<request_stream> s_;
};

}  // namespace leash::inline v0::http::detail
