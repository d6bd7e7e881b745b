// SPDX-License-Identifier: BSL-1.0
// leash/http/transport.hpp: an HTTP/1.1 client transport with a keep-alive pool.
// Prevents: Go's net/http persistConn leaks (a readLoop goroutine outliving
// a connection that putIdleConn silently dropped) and `resp.Body` left
// unclosed, which keeps connections from being reused.
//
//   leash::http::transport t;                       // one per process, like Go's
//   leash::http::request req{"127.0.0.1", 8080, {"GET", "/hello"}};
//   {
//     leash::cancel_scope deadline(2s);             // bounds the whole exchange
//     leash::http::response r = t.round_trip(req);
//     std::string text = r.body.read_all(1 << 20);  // EOF closes the body: the
//   }                                               // connection goes back to the pool
//   t.stats();  // {dials, reuses, discarded, idle, open, waiting}
//
// No thread per connection: the calling task does its round trip's I/O, and
// an idle connection is a socket in a list. One timer per transport, armed
// only while a connection is idle, closes connections idle for idle_timeout
// (on the creator's clock: virtual in virtual_time). A pooled connection is
// checked at checkout: EOF, an error or any unread byte means it is closed.
// A connection is reused only when the request was fully written, the
// response framing completed with nothing extra buffered, neither side said
// "Connection: close", the body was not delimited by close, and no error
// happened. Closing a body early drains a short tail (<= drain_limit, within
// drain_timeout) so the connection is reused; otherwise it is closed.
// transport_options::wrap_connection brings TLS (or any byte stream): every
// byte of a dialed connection then goes through the user's http::stream
// (stream.hpp), whose waits are the transport's own. transport_options::dial
// replaces the socket itself: an in-memory connection (memory.hpp) runs a
// client inside leash::virtual_time, where a socket could not.
//
// Guarantees. Blocks: round_trip (dial, write, response head) and body reads.
// Cancelled: by the ambient or an explicit token; the stop callback only
// calls shutdown() on the socket and is destroyed before the socket is
// closed or pooled. Throws: leash::cancelled / deadline_exceeded (the
// caller's token), http::timeout (dial, response header), protocol_error,
// limit_exceeded, io_error, invalid_request (before dialing, or for a stream
// whose length differs from stream_length), and a request stream's errors.
// A request that is idempotent and has no body is retried once when a *reused* connection
// failed before any response byte (the server closed it meanwhile).
// Thread-safe: every member, from any number of tasks. Destroy the transport
// after its round trips returned; open bodies may outlive it (their
// connections are then closed, not pooled).
#pragma once

#include "../detail/config.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>

#include "../body.hpp"
#include "../cancel.hpp"
#include "../coro.hpp"
#include "../io/socket.hpp"
#include "detail/pool.hpp"
#include "errors.hpp"
#include "message.hpp"
#include "request_writer.hpp"
#include "response_parser.hpp"
#include "stream.hpp"

namespace leash::inline v0::http {

// A transport's settings. Designated initializers work:
// `transport t({.max_conns_per_host = 8, .response_header_timeout = 2s});`
struct transport_options {
  using ms = std::chrono::milliseconds;
  // Idle connections kept per host; 0 means the default: max_conns_per_host,
  // or 100 when that is unlimited (Go's default of 2 makes 8 workers dial
  // hundreds of connections).
  std::size_t max_idle_per_host = 0;
  std::size_t max_idle_total = 100;    // over all hosts; the least recently used is evicted
  std::size_t max_conns_per_host = 0;  // open connections per host; 0: unlimited
  ms idle_timeout{90'000};             // an idle connection older than this is closed; 0: never
  ms dial_timeout{30'000};
  ms response_header_timeout{0};  // from the request's last byte to the head's; 0: none
  std::size_t max_response_header_bytes = 64 * 1024;
  std::size_t max_header_fields = 100;
  std::size_t drain_limit = 64 * 1024;  // unread body bytes close() may drain to reuse
  ms drain_timeout{100};                // how long close() may spend draining
  bool disable_keep_alives = false;     // every request gets its own connection
  // Wraps each dialed connection's fd in a stream (TLS: see stream.hpp),
  // given the request's host (for SNI and certificate checks); unset: plain
  // TCP. Called once per dial, on the dialing caller; must not block (a
  // handshake happens in the stream's steps). A throw fails that round trip
  // with the exception; a null stream fails it with io_error.
  std::function<std::unique_ptr<stream>(int fd, const std::string& host)> wrap_connection = nullptr;
  // Dials without a socket: the stream it returns for the request's host
  // and port carries every byte and waits by itself (stream.hpp), as a
  // memory_listener's dialer() does. Unset: TCP. Called once per dial, on
  // the dialing caller; must not block. A throw fails that round trip with
  // the exception; a null stream fails it with io_error. Not with
  // wrap_connection, which wraps a socket (usage_error).
  std::function<std::unique_ptr<stream>(const std::string& host, std::uint16_t port)> dial =
      nullptr;
};

// What round_trip sends: `body` with a Content-Length, or `stream`.
//
//   leash::http::request up{"127.0.0.1", 8080, {"PUT", "/upload"}};
//   up.stream = leash::body(std::make_unique<file_source>(path));  // any body_source
//   up.stream_length = size;  // Content-Length; without it the body goes chunked
//   t.round_trip(up);         // reads the stream to EOF while sending; closes it
struct request {
  request() = default;
  // `{host, port, {method, target}, body}`; a constructor rather than an
  // aggregate so that the stream members need no initializer.
  request(std::string host_, std::uint16_t port_, request_head head_ = {}, std::string body_ = {})
      : host(std::move(host_)), port(port_), head(std::move(head_)), body(std::move(body_)) {}

  std::string host = "127.0.0.1";  // name or numeric address (numeric never blocks)
  std::uint16_t port = 80;
  request_head head;  // method, target, headers (Host is added when missing)
  std::string body;
  // A streaming body, sent instead of `body` when open: round_trip reads it to
  // EOF as it writes (nothing is buffered whole) and closes it on every path.
  // Never retried: it cannot be replayed. Mutable: sending consumes it.
  mutable leash::body stream;
  // The stream's exact length, sent as Content-Length (another count of bytes
  // fails with invalid_request); none: chunked.
  std::optional<std::uint64_t> stream_length;
};

// A response: the head, and a must-close body over the connection.
struct response {
  response_head head;
  leash::body body;  // close it, or read it to EOF; forgetting is reported
  int status() const noexcept { return head.status; }
};

namespace detail {

// A response body read straight from its connection. Closing it decides the
// connection's fate (see the header comment).
class connection_body final : public body_source {
 public:
  connection_body(std::shared_ptr<pool> p, std::unique_ptr<connection> c,
                  const transport_options& o)
      : pool_(std::move(p)),
        c_(std::move(c)),
        drain_limit_(o.drain_limit),
        drain_timeout_(o.drain_timeout) {}

  std::size_t read(std::span<std::byte> out, std::stop_token stop) override {
    try {
      for (;;) {
        response_parser& p = c_->parser;
        if (p.complete()) return 0;
        if (c_->buffered() == 0 && p.framing() == body_framing::content_length) {
          // Straight into the caller's buffer: a Content-Length body needs no
          // framing bytes removed, so the bytes are parsed where they land.
          const auto want =
              static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), p.body_remaining()));
          std::size_t got = 0;
          char* dst = reinterpret_cast<char*>(out.data());
          if (read_some(c_->bytes(), c_->fd(), dst, want, got, clock::time_point::max(), stop) ==
              read_status::eof) {
            p.finish_eof();  // throws truncated_body
          }
          return p.feed({dst, got}).body.size();
        }
        if (c_->buffered() == 0) {
          if (c_->fill(clock::time_point::max(), stop) == read_status::eof) p.finish_eof();
          continue;
        }
        if (const std::size_t n = take_buffered(out)) return n;
      }
    } catch (...) {
      broken_ = true;  // a failed or cancelled read leaves the stream unusable
      throw;
    }
  }

  // read() with no thread: waits on the reactor; the ambient scope cancels.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<std::size_t> async_read(
      std::span<std::byte> out) override {
    try {
      for (;;) {
        if (c_->parser.complete()) co_return 0;
        if (c_->buffered() == 0) {
          if (!co_await c_->async_fill()) c_->parser.finish_eof();  // throws truncated_body
          continue;
        }
        if (const std::size_t n = take_buffered(out)) co_return n;
      }
    } catch (...) {
      broken_ = true;  // a failed or cancelled read leaves the stream unusable
      throw;
    }
  }

  void close(bool) override {
    if (!broken_ && !c_->parser.complete()) drain();
    if (!broken_ && reusable(*c_) && pool_->put_idle(c_)) return;
    pool_->discard(std::move(c_));
  }

  // Reusable once the response completed with nothing after it.
  static bool reusable(const connection& c) {
    return c.parser.complete() && c.parser.keep_alive() && c.buffered() == 0 && !c.request_close;
  }

 private:
  // Parses buffered bytes; copies the body bytes they held into `out` and
  // returns their count (0: only framing was consumed).
  std::size_t take_buffered(std::span<std::byte> out) {
    const parse_step step = c_->parser.feed(c_->pending(out.size()));
    c_->begin += step.consumed;
    if (step.event != parse_event::body) return 0;
    std::memcpy(out.data(), step.body.data(), step.body.size());
    return step.body.size();
  }

  // Reads and drops at most drain_limit_ bytes within drain_timeout_; marks
  // the connection broken when the body does not end by then.
  void drain() {
    response_parser& p = c_->parser;
    if (p.framing() == body_framing::until_close ||
        (p.framing() == body_framing::content_length &&
         p.body_remaining() > c_->buffered() + drain_limit_)) {
      broken_ = true;  // too much left: not worth reading
      return;
    }
    const auto deadline = leash::detail::deadline_after(drain_timeout_);  // the task's clock
    std::size_t drained = 0;
    try {
      while (!p.complete()) {
        if (c_->buffered() == 0) {
          // Closed from a coroutine task, the wait costs a thread, not a worker.
          const leash::detail::blocking_region blocking;
          const read_status st = c_->fill(deadline, {});
          if (st == read_status::timed_out) break;
          if (st == read_status::eof) p.finish_eof();
          continue;
        }
        const parse_step step = p.feed(c_->pending(c_->buffered()));
        c_->begin += step.consumed;
        drained += step.body.size();
        if (drained > drain_limit_) break;
      }
    } catch (const std::exception&) {
      // A bad or dead tail: the connection is discarded below.
    }
    if (!p.complete()) broken_ = true;
  }

  std::shared_ptr<pool> pool_;  // outlives the transport while this body is open
  std::unique_ptr<connection> c_;
  std::size_t drain_limit_;
  clock::duration drain_timeout_;
  bool broken_ = false;  // the connection must not be reused
};

inline bool replayable(const request& r) {
  const std::string& m = r.head.method;
  return r.body.empty() && r.stream.closed() &&
         (m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE");
}

// Appends the request head, and the string body unless `r` has a stream.
inline void write_request_with(std::string& out, const request_head& head, std::string_view host,
                               const request& r) {
  if (!r.stream.closed()) {
    if (!r.body.empty()) {
      throw invalid_request(reason::body_length_mismatch, "both a string body and a stream");
    }
    write_request_head(
        out, head, host,
        r.stream_length ? request_body::of_length(*r.stream_length) : request_body::chunked());
  } else {
    write_request(out, head, host, r.body);
  }
}

// The wire form of a request's stream: raw bytes (Content-Length) or chunks,
// checked against stream_length. Shared by both forms of a round trip.
class stream_framer {
 public:
  explicit stream_framer(const request& r) : length_(r.stream_length) {}

  // The bytes to send for `data`, the stream's next bytes. Throws
  // invalid_request past stream_length.
  std::string_view next(std::string_view data) {
    sent_ += data.size();
    if (length_ && sent_ > *length_) {
      throw invalid_request(reason::body_length_mismatch,
                            "the stream has more than " + std::to_string(*length_) + " bytes");
    }
    if (length_) return data;
    chunk_.clear();
    write_chunk(chunk_, data);
    return chunk_;
  }

  // The bytes to send after the stream's end. Throws invalid_request when
  // the stream was shorter than stream_length.
  std::string_view finish() {
    if (length_ && sent_ != *length_) {
      throw invalid_request(
          reason::body_length_mismatch,
          std::to_string(*length_) + " declared, " + std::to_string(sent_) + " in the stream");
    }
    chunk_.clear();
    if (!length_) write_last_chunk(chunk_);
    return chunk_;
  }

 private:
  std::optional<std::uint64_t> length_;
  std::uint64_t sent_ = 0;
  std::string chunk_;
};

// What a stream is read by, a chunk at a time.
inline constexpr std::size_t stream_chunk = 16 * 1024;

// Sends the stream of `r` after its head. Blocks; cancellable; throws
// invalid_request when the stream's length differs from stream_length, and
// the stream's and the socket's errors.
inline void send_stream(connection& c, const request& r, const std::stop_token& token) {
  char buf[stream_chunk];
  stream_framer framer(r);
  while (std::size_t n = r.stream.read(std::span<char>(buf), token)) {
    write_all(c.bytes(), c.fd(), framer.next({buf, n}), clock::time_point::max(), token);
  }
  if (const std::string_view tail = framer.finish(); !tail.empty()) {
    write_all(c.bytes(), c.fd(), tail, clock::time_point::max(), token);
  }
}

// send_stream() for a coroutine task.
LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER inline coro<void> async_send_stream(connection& c,
                                                                            const request& r) {
  std::string buf(stream_chunk, '\0');
  stream_framer framer(r);
  while (std::size_t n = co_await r.stream.async_read(std::span<char>(buf))) {
    co_await c.async_write(framer.next({buf.data(), n}));
  }
  if (const std::string_view tail = framer.finish(); !tail.empty()) co_await c.async_write(tail);
}

}  // namespace detail

// An HTTP/1.1 client with a keep-alive pool. See the header comment.
class transport {
 public:
  // Idle connections expire on the clock of the code that creates the
  // transport (virtual inside leash::virtual_time).
  explicit transport(transport_options options = {})
      : options_(defaults(options)),
        pool_(std::make_shared<detail::pool>(detail::pool_limits{
            options_.max_idle_per_host, options_.max_idle_total, options_.max_conns_per_host,
            !options_.disable_keep_alives, options_.idle_timeout})) {}

  transport(const transport&) = delete;
  transport& operator=(const transport&) = delete;

  // Stops the idle timer and closes every idle connection. Bodies still
  // open close their connections when they are closed.
  ~transport() { pool_->shut(); }

  // Sends `req` and returns once the response head arrived; the body is read
  // from the returned response. Blocks; cancellable (ambient or `token`);
  // throws as the header comment says.
  response round_trip(const request& req, source_location site = source_location::current()) {
    return round_trip(req, this_task::stop_token(), site);
  }
  response round_trip(const request& req, const std::stop_token& token,
                      source_location site = source_location::current()) {
    const stream_closer closer{req};
    const plan pl = make_plan(req);  // throws before dialing
    for (int attempt = 0;; ++attempt) {
      std::unique_ptr<detail::connection> c = pool_->checkout(pl.key, token);
      const bool reused = c != nullptr;
      if (!reused) c = dial(req, pl.key, token);
      c->request_close = pl.close;
      try {
        return exchange(c, req, pl, token, site);
      } catch (const http::error& e) {
        if (!give_up(c, e, attempt, reused, pl)) continue;
        throw;
      } catch (...) {
        pool_->discard(std::move(c));
        throw;
      }
    }
  }

  // round_trip() for a coroutine task: co_await it. The same request, pool,
  // retry and errors (timeouts are deadlines of scopes inside it, thrown as
  // http::timeout); the caller's ambient scope cancels. Dials, writes and
  // reads with no thread; the response body's async_read does too. Waiting
  // for a max_conns_per_host slot blocks (on a thread after the hand-off).
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<response> async_round_trip(
      const request& req, source_location site = source_location::current()) {
    const stream_closer closer{req};
    const plan pl = make_plan(req);  // throws before dialing
    for (int attempt = 0;; ++attempt) {
      std::unique_ptr<detail::connection> c =
          pool_->checkout(pl.key, leash::detail::ambient_token_ref());
      const bool reused = c != nullptr;
      if (!reused) c = co_await async_dial(req, pl.key);
      c->request_close = pl.close;
      std::exception_ptr failure;
      try {
        co_return co_await async_exchange(c, req, pl, site);
      } catch (...) {
        failure = std::current_exception();
      }
      try {
        std::rethrow_exception(failure);
      } catch (const http::error& e) {
        if (!give_up(c, e, attempt, reused, pl)) continue;
        throw;
      } catch (...) {
        pool_->discard(std::move(c));
        throw;
      }
    }
  }

  // Closes every idle connection now.
  void close_idle() { pool_->close_idle(); }

  // Dials, reuses, discards, and the connections idle, open and waited for now.
  transport_stats stats() const { return pool_->stats(); }

  const transport_options& options() const noexcept { return options_; }

 private:
  static transport_options defaults(transport_options o) {
    if (o.dial && o.wrap_connection) {
      throw usage_error(
          "leash::http::transport: dial and wrap_connection both set (wrap_connection wraps a "
          "socket; a dialed stream has none)");
    }
    if (o.max_idle_per_host == 0) {
      o.max_idle_per_host = o.max_conns_per_host != 0 ? o.max_conns_per_host : 100;
    }
    return o;
  }

  static std::string host_field(const request& r) {
    std::string h = r.host.find(':') != std::string::npos ? "[" + r.host + "]" : r.host;
    if (r.port != 80) h += ":" + std::to_string(r.port);
    return h;
  }

  static bool retryable(const http::error& e) {
    if (dynamic_cast<const io_error*>(&e) != nullptr) return true;
    const auto* p = dynamic_cast<const protocol_error*>(&e);
    return p != nullptr && p->reason() == reason::eof_before_response;
  }

  // A request's stream is closed on every way out of a round trip; reading
  // it to EOF already did.
  struct stream_closer {
    const request& r;
    ~stream_closer() { (void)r.stream.try_close(); }
  };

  // What both forms of a round trip send, decided before dialing.
  struct plan {
    std::string wire;  // the head, and the string body unless streaming
    std::string key;   // the pool's bucket
    bool close;        // the request asks the server to close the connection
    bool replayable;   // may be retried on a fresh connection
    bool streaming;    // the request's stream follows the head
  };

  plan make_plan(const request& req) const {
    plan pl;
    pl.replayable = detail::replayable(req);
    pl.streaming = !req.stream.closed();
    pl.close = options_.disable_keep_alives || req.head.headers.has_token("connection", "close");
    if (options_.disable_keep_alives && !req.head.headers.has_token("connection", "close")) {
      request_head head = req.head;
      head.headers.add("Connection", "close");
      detail::write_request_with(pl.wire, head, host_field(req), req);
    } else {
      detail::write_request_with(pl.wire, req.head, host_field(req), req);
    }
    pl.key = req.host + ":" + std::to_string(req.port);
    return pl;
  }

  // After a failed exchange on `c` (discarded here): false when the request
  // is retried once, on a reused connection that failed before any
  // response byte (the server closed it meanwhile).
  bool give_up(std::unique_ptr<detail::connection>& c, const http::error& e, int attempt,
               bool reused, const plan& pl) {
    const bool before_response = !c->parser.started();
    pool_->discard(std::move(c));
    return !(attempt == 0 && reused && before_response && pl.replayable && retryable(e));
  }

  parser_limits limits() const {
    return parser_limits{options_.max_response_header_bytes, options_.max_header_fields, 5};
  }

  std::unique_ptr<detail::connection> dial(const request& req, const std::string& key,
                                           const std::stop_token& token) {
    if (options_.dial) return dial_stream(req, key);
    try {
      detail::socket s = detail::dial(req.host, req.port,
                                      leash::detail::deadline_after(options_.dial_timeout), token);
      auto c = std::make_unique<detail::connection>(std::move(s), key, limits());
      if (options_.wrap_connection) c->wrap_with(options_.wrap_connection, req.host);
      pool_->dialed();
      return c;
    } catch (...) {
      pool_->dial_failed(key);
      throw;
    }
  }

  // dial() for a coroutine task: io::async_connect (every address) inside a
  // scope whose deadline is the dial timeout.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<std::unique_ptr<detail::connection>> async_dial(
      const request& req, const std::string& key) {
    if (options_.dial) co_return dial_stream(req, key);
    const std::string where = "dial " + key;
    try {
      io::socket s;
      {
        cancel_scope dial_limit(leash::detail::deadline_after(options_.dial_timeout));
        try {
          s = co_await io::async_connect(req.host, req.port);
        } catch (const cancelled&) {
          if (dial_limit.reason() == stop_reason::deadline_exceeded) throw timeout(where);
          throw;
        } catch (const io::io_error& e) {
          throw detail::http_io_error(e);
        }
      }
      const int one = 1;  // as the blocking dial: requests are small writes
      ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto c = std::make_unique<detail::connection>(std::move(s), key, limits());
      if (options_.wrap_connection) c->wrap_with(options_.wrap_connection, req.host);
      pool_->dialed();
      co_return c;
    } catch (...) {
      pool_->dial_failed(key);
      throw;
    }
  }

  // A connection with no socket, from transport_options::dial (both forms).
  std::unique_ptr<detail::connection> dial_stream(const request& req, const std::string& key) {
    try {
      auto c =
          std::make_unique<detail::connection>(options_.dial(req.host, req.port), key, limits());
      pool_->dialed();
      return c;
    } catch (...) {
      pool_->dial_failed(key);
      throw;
    }
  }

  // The response-header timeout's message (both forms).
  std::string header_timeout_text() const {
    return "no response header within " + std::to_string(options_.response_header_timeout.count()) +
           " ms";
  }

  // Parses buffered bytes; true once the response head is complete.
  static bool feed_head(detail::connection& c) {
    const parse_step step = c.parser.feed(c.pending(c.buffered()));
    c.begin += step.consumed;
    return step.event == parse_event::head;
  }

  // Reads up to the end of the response head (the response-header timeout
  // starts now).
  void read_head(detail::connection& c, const std::stop_token& token) {
    const auto header_deadline =
        options_.response_header_timeout.count() > 0
            ? leash::detail::deadline_after(options_.response_header_timeout)
            : detail::clock::time_point::max();
    for (;;) {
      if (c.buffered() == 0) {
        const detail::read_status st = c.fill(header_deadline, token);
        if (st == detail::read_status::timed_out) throw timeout(header_timeout_text());
        if (st == detail::read_status::eof) c.parser.finish_eof();  // throws
        continue;
      }
      if (feed_head(c)) return;
    }
  }

  // read_head() for a coroutine task: the timeout is a scope's deadline.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<void> async_read_head(detail::connection& c) {
    const bool timed = options_.response_header_timeout.count() > 0;
    cancel_scope header_limit(timed
                                  ? leash::detail::deadline_after(options_.response_header_timeout)
                                  : detail::clock::time_point::max());
    try {
      for (;;) {
        if (c.buffered() == 0) {
          if (!co_await c.async_fill()) c.parser.finish_eof();  // throws
          continue;
        }
        if (feed_head(c)) co_return;
      }
    } catch (const cancelled&) {
      if (timed && header_limit.reason() == stop_reason::deadline_exceeded) {
        throw timeout(header_timeout_text());
      }
      throw;
    }
  }

  static void start_exchange(detail::connection& c, const request& req) {
    c.parser.reset(req.head.method);
    c.begin = c.end = 0;
  }

  // The response over `c`, whose head was read: `c` goes to its body, or
  // back to the pool when the response has none.
  response finish_exchange(std::unique_ptr<detail::connection>& c, source_location site) {
    response r{c->parser.head(), body()};
    if (c->parser.complete()) {  // no body: the connection is done now
      if (!detail::connection_body::reusable(*c) || !pool_->put_idle(c)) {
        pool_->discard(std::move(c));
      }
      r.body = memory_body({}, 0, site);
    } else {
      r.body = body(std::make_unique<detail::connection_body>(pool_, std::move(c), options_), site);
    }
    return r;
  }

  // Sends the request and reads the response head. A failed send is
  // reported only if no response arrives: the server may have answered early
  // and stopped reading (a 413 to a big upload), and its response is the
  // answer, as in Go's transport. The connection is then never reused.
  response exchange(std::unique_ptr<detail::connection>& c, const request& req, const plan& pl,
                    const std::stop_token& token, source_location site) {
    start_exchange(*c, req);
    std::exception_ptr send_failure;
    try {
      detail::write_all(c->bytes(), c->fd(), pl.wire, detail::clock::time_point::max(), token);
      if (pl.streaming) detail::send_stream(*c, req, token);
    } catch (const io_error&) {
      c->request_close = true;
      send_failure = std::current_exception();
    }
    try {
      read_head(*c, token);
    } catch (const http::error&) {
      if (send_failure) std::rethrow_exception(send_failure);
      throw;
    }
    return finish_exchange(c, site);
  }

  // exchange() for a coroutine task.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<response> async_exchange(
      std::unique_ptr<detail::connection>& c, const request& req, const plan& pl,
      source_location site) {
    start_exchange(*c, req);
    std::exception_ptr send_failure;
    try {
      co_await c->async_write(pl.wire);
      if (pl.streaming) co_await detail::async_send_stream(*c, req);
    } catch (const io_error&) {
      c->request_close = true;
      send_failure = std::current_exception();
    }
    std::exception_ptr head_failure;
    try {
      co_await async_read_head(*c);
    } catch (const http::error&) {
      head_failure = std::current_exception();
    }
    if (head_failure) std::rethrow_exception(send_failure ? send_failure : head_failure);
    co_return finish_exchange(c, site);
  }

  transport_options options_;
  std::shared_ptr<detail::pool> pool_;  // shared with open bodies
};

}  // namespace leash::inline v0::http
