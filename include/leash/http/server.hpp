// SPDX-License-Identifier: BSL-1.0
// leash/http/server.hpp: a minimal HTTP/1.1 server whose connections are coroutine tasks.
// Prevents: Go servers whose per-connection goroutines and request values
// outlive a shutdown (gorilla/context's global map grew forever); here every
// connection is a task of the server's nursery, and request values live in
// the request object.
//
//   leash::nursery n;
//   leash::http::server srv(n, [](leash::http::server_request& req,
//                                 leash::http::response_writer& w) {
//     w.headers().set("Content-Type", "text/plain");
//     if (req.method() == "POST") {                   // the body streams from the socket
//       char buf[16384];
//       while (std::size_t n = req.body().read(std::span<char>(buf))) consume(buf, n);
//     }                                               // or: req.read_body() (<= max_body_bytes)
//     w.write("hello " + std::string(req.target()));
//   });
//   ... clients talk to 127.0.0.1:srv.port() ...
//   srv.shutdown(2s);  // stop accepting; finish in-flight requests; then cancel
//
// A coroutine handler is awaited on the connection's task and waits with no
// thread (`co_await w.async_write(...)`, `co_await req.body().async_read(buf)`):
//
//   leash::http::server srv(n, [](leash::http::server_request& req,
//                                 leash::http::response_writer& w) -> leash::coro<> {
//     co_await w.async_write("hello " + std::string(req.target()));
//   });
//
// One coroutine task runs in `n` (the accept task); it opens the server's
// own nursery, where each connection is one coroutine task (a
// detail::server_connection) that reads a request, calls the handler,
// writes the response, and waits for the next (keep-alive). A connection
// waiting for its client costs its buffers and a frame, no thread. A plain
// handler may block in anything (a lock, a database, a body read): it runs
// on the connection's task after the task's worker was handed to another
// thread, so it holds a thread while it runs, and only then. A response is
// framed by Content-Length when the handler returns before anything was
// flushed, otherwise chunked (HTTP/1.1) or delimited by close (HTTP/1.0).
// A request body (Content-Length or chunked) is a leash::body read from the
// connection while the handler reads it (req.body()); "Expect: 100-continue"
// is answered by the first read. After the handler, an unread tail up to
// drain_limit is read and dropped so the connection carries the next request;
// a longer one closes the connection. A response write that stalls longer
// than write_timeout (a client that stopped reading) ends the connection.
// A request head must arrive within header_timeout of its first byte (408
// and close otherwise: a slowloris is cut). One epoll set holds every
// connection whose handler runs, served by a coroutine task: a client that
// closes or resets its connection cancels its handler's scope ("client
// disconnected"), with no thread per handler. At max_connections the accept
// loop waits until a connection ends; a failed accept is counted and, out
// of fds or memory, followed by a short rest.
// server_options::wrap_connection brings TLS (or any byte stream): every
// byte of a connection then goes through the user's http::stream
// (stream.hpp), whose waits are the server's own.
//
// Guarantees. Blocks: shutdown() and the destructor, until every connection
// task ended. Cancelled: a cancelled `n` cancels every connection (handlers
// blocked in leash calls throw cancelled); a handler's exception is answered
// 500 (413 for body_too_large, 400 after a malformed request body), or aborts
// the connection once bytes were sent, and never fails `n`.
// Thread-safe: shutdown(), port() and stats() from any thread; a
// response_writer may be flushed from another thread while the handler runs.
#pragma once

#include "../detail/config.hpp"

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "../body.hpp"
#include "../cancel.hpp"
#include "../coro.hpp"
#include "../io/socket.hpp"
#include "../nursery.hpp"
#include "detail/disconnect_watcher.hpp"
#include "detail/request_body.hpp"
#include "detail/request_parser.hpp"
#include "detail/socket.hpp"
#include "detail/stream_io.hpp"
#include "errors.hpp"
#include "message.hpp"
#include "response_writer.hpp"
#include "stream.hpp"
#include "values.hpp"

namespace leash::inline v0::http {

namespace detail {
class server_connection;
}

// A request as the server received it, with its value bag. Lives for one
// handler call; not copyable.
class server_request {
 public:
  server_request(const server_request&) = delete;
  server_request& operator=(const server_request&) = delete;

  std::string_view method() const noexcept { return method_; }
  std::string_view target() const noexcept { return target_; }
  http::version version() const noexcept { return version_; }
  const fields& headers() const noexcept { return headers_; }
  // The body, read from the connection on demand: `read()` it in pieces, or
  // `read_all(max)` (more: body_too_large, which the server answers 413 if it
  // escapes the handler). Valid during the handler call; a read after the
  // handler returned throws body_closed. Reads block; cancellable; a failed
  // or cancelled read ends the connection after the response.
  leash::body& body() noexcept { return body_; }
  // The whole body, at most server_options::max_body_bytes (else body_too_large).
  std::string read_body() { return body_.read_all(max_body_); }
  // The declared Content-Length (0 when the request has no body), or nullopt
  // for a chunked body.
  std::optional<std::uint64_t> body_length() const noexcept { return body_length_; }
  // This request's typed values; destroyed with the request.
  value_bag& values() noexcept { return values_; }
  // The client's address as "ip:port" ("[ip]:port" for IPv6); empty if unknown.
  std::string_view peer_address() const noexcept { return peer_address_; }

 private:
  friend class detail::server_connection;
  // The request of the parsed `head` (its fields are moved out of it), from
  // the client at `peer_address`; read_body() reads at most `max_body`. The
  // body is attached when the handler is called (attach_body).
  server_request(detail::parsed_request&& head, std::string peer_address, std::size_t max_body)
      : method_(head.method),
        target_(head.target),
        version_(head.version),
        headers_(std::move(head.headers)),
        max_body_(max_body),
        peer_address_(std::move(peer_address)) {
    if (!head.chunked) body_length_ = head.content_length;
  }

  void attach_body(leash::body b) noexcept { body_ = std::move(b); }

  std::string method_;
  std::string target_;
  http::version version_;
  fields headers_;
  leash::body body_;
  std::optional<std::uint64_t> body_length_;
  std::size_t max_body_ = 0;
  std::string peer_address_;
  value_bag values_;
};

struct server_options {
  using ms = std::chrono::milliseconds;
  // Numeric IPv4 or IPv6 address to listen on ("::" takes IPv4 clients too).
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: an ephemeral port (see server::port())
  // Connections the kernel queues before accept; 0: net.core.somaxconn (as
  // Go), so that a burst of connects is queued instead of dropped.
  int backlog = 0;
  // Connections served at once; 0: unlimited. At the limit the server stops
  // accepting (clients wait in the backlog) until a connection ends.
  std::size_t max_connections = 0;
  std::size_t max_header_bytes = 64 * 1024;
  std::size_t max_header_fields = 100;
  std::size_t max_body_bytes = 1 << 20;  // server_request::read_body()'s limit
  ms idle_timeout{60'000};  // a keep-alive connection waiting longer for a request is closed
  // The whole request head must arrive within this, counted from its first
  // byte (from the accept for a connection's first request); else 408 and close.
  ms header_timeout{10'000};
  // One send of response bytes (a flush, at most the buffered bytes) must be
  // taken by the client within this, or the connection is aborted.
  ms write_timeout{60'000};
  std::size_t drain_limit = 64 * 1024;  // unread request body bytes dropped to reuse the connection
  ms drain_timeout{100};                // how long that drain may take
  std::string name = "http::server";
  // Wraps each accepted connection's fd in a stream (TLS: see stream.hpp);
  // unset: plain TCP. Called once per connection on its task, before its
  // first read; must not block (a handshake happens in the stream's steps).
  // A throw or a null stream closes that connection, counted in
  // server_stats::wrap_failures; the server goes on.
  std::function<std::unique_ptr<stream>(int fd)> wrap_connection = nullptr;
};

// Counters of a server (a snapshot).
struct server_stats {
  std::uint64_t accepted = 0;            // connections accepted
  std::uint64_t requests = 0;            // handler calls that returned
  std::uint64_t write_timeouts = 0;      // connections ended by write_timeout
  std::size_t connections = 0;           // connection tasks running now
  std::uint64_t accept_paused = 0;       // times accepting waited for max_connections
  std::uint64_t accept_errors = 0;       // failed accepts (out of fds or memory, aborted connects)
  int last_accept_error = 0;             // errno of the last failed accept (EMFILE: out of fds)
  std::uint64_t header_timeouts = 0;     // connections ended by header_timeout
  std::uint64_t client_disconnects = 0;  // handlers cancelled because their client left
  // Connections answered 503 and closed because no task could be started for
  // them (out of memory).
  std::uint64_t connections_refused = 0;
  std::uint64_t wrap_failures = 0;  // connections closed because wrap_connection failed
};

namespace detail {

// A request body that says when it was read to its end (then a close by the
// client means it left, not that it finished sending).
class end_aware_body final : public body_source {
 public:
  end_aware_body(std::unique_ptr<body_source> inner, std::function<void()> at_end)
      : inner_(std::move(inner)), at_end_(std::move(at_end)) {}
  std::size_t read(std::span<std::byte> out, std::stop_token stop) override {
    const std::size_t n = inner_->read(out, std::move(stop));
    if (n == 0 && at_end_) std::exchange(at_end_, nullptr)();
    return n;
  }
  // Forwarded, so that the inner source's thread-free wait is kept.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<std::size_t> async_read(
      std::span<std::byte> out) override {
    const std::size_t n = co_await inner_->async_read(out);
    if (n == 0 && at_end_) std::exchange(at_end_, nullptr)();
    co_return n;
  }
  void close(bool at_end) override { inner_->close(at_end); }

 private:
  std::unique_ptr<body_source> inner_;
  std::function<void()> at_end_;
};

// A server's counters that its connections keep.
struct connection_counters {
  std::atomic<std::uint64_t> requests{0};            // handler calls that returned
  std::atomic<std::uint64_t> write_timeouts{0};      // connections ended by write_timeout
  std::atomic<std::uint64_t> header_timeouts{0};     // connections ended by header_timeout
  std::atomic<std::uint64_t> client_disconnects{0};  // handlers cancelled: their client left
  std::atomic<std::uint64_t> wrap_failures{0};       // wrap_connection threw or gave nothing
};

// A server's handler: a plain function, called on the connection's task
// after handing the task's worker to another thread (it may block in
// anything), or a coroutine, awaited there. Exactly one is set.
struct handlers {
  std::function<void(server_request&, response_writer&)> plain;
  std::function<coro<void>(server_request&, response_writer&)> coroutine;
};

// What a connection uses of its server, which outlives every connection.
struct connection_env {
  const server_options& options;
  const handlers& handler;
  disconnect_watcher& watcher;        // cancels a handler whose client left
  std::stop_token idle_end;           // stopped by shutdown(): a connection waiting for a
                                      // request ends
  const std::atomic<bool>& stopping;  // shutdown() began: responses end their connection
  connection_counters& counters;
};

// One client connection of a server, from its accept to its close: reads a
// request head, makes the request and its writer, runs the handler, finishes
// the response, and does it again while keep-alive lasts (run()). Runs on the
// connection's coroutine task, which waits for the client with no thread;
// its stop token (the server's shutdown or a cancelled parent) stops every
// wait. Not copyable.
class server_connection {
 public:
  // Takes over `s`, wrapped by the server's wrap_connection when it has
  // one; call from the connection's task. Throws what the wrapping threw.
  server_connection(const connection_env& env, io::socket s)
      : env_(env),
        socket_(std::move(s)),
        token_(this_task::stop_token()),
        peer_(peer_address_of(fd())),
        plain_(fd()),
        wrapped_(wrap(env, fd())) {}

  server_connection(const server_connection&) = delete;
  server_connection& operator=(const server_connection&) = delete;

  // Serves requests until the connection ends: at EOF, an idle timeout or
  // shutdown between requests, after an error answer (400, 408, 413, 431,
  // 500, 504), when the client left, or after a response that ends it.
  // Throws what a failed error answer throws (io_error, timeout, cancelled).
  coro<void> run() {
    for (bool first = true; co_await serve_request(first); first = false) {
    }
    if (wrapped_) co_await close_stream();
  }

 private:
  using rest = request_stream::rest;

  static constexpr std::size_t read_chunk = 8192;  // bytes taken from the socket per read
  // A lingering close's bounds: enough for a client to see the answer, short
  // enough that a client that keeps sending cannot hold the connection.
  static constexpr auto linger_time = std::chrono::milliseconds(100);
  static constexpr int linger_reads = 32;  // 256 KiB of reads of read_chunk

  // Thrown by read_head when part of a head came but not all of it within
  // header_timeout (answered 408).
  struct head_timed_out {};

  // The request body's stream while a request is served. However the
  // request ends, the body is the server's again (take_back) before the
  // writer and the connection's buffer die: a body moved out of the handler
  // reads nothing more.
  class body_lease {
   public:
    body_lease(std::shared_ptr<request_stream> stream, server_request& req, std::size_t limit)
        : stream_(std::move(stream)), req_(req), limit_(limit) {}
    body_lease(const body_lease&) = delete;
    body_lease& operator=(const body_lease&) = delete;
    ~body_lease() { (void)take_back(); }

    const std::shared_ptr<request_stream>& stream() const noexcept { return stream_; }

    // Ends the handler's access (its handle is closed, reading nothing) and
    // says what is left of the body; later calls say the same.
    rest take_back() {
      if (!rest_) {
        rest_ = stream_->detach(limit_);
        (void)req_.body().try_close();
      }
      return *rest_;
    }

   private:
    std::shared_ptr<request_stream> stream_;
    server_request& req_;
    std::size_t limit_;         // the unread tail drained to keep the connection
    std::optional<rest> rest_;  // set by the first take_back()
  };

  // Counts a response whose send exceeded write_timeout, once it can send
  // nothing more (when the request ends, however it ends).
  struct count_write_timeout {
    const response_writer& w;
    std::atomic<std::uint64_t>& count;
    ~count_write_timeout() {
      if (w.timed_out()) ++count;
    }
  };

  int fd() const noexcept { return socket_.native_handle(); }

  // The connection's bytes: the user's stream, or plain TCP.
  stream& bytes() noexcept { return wrapped_ ? static_cast<stream&>(*wrapped_) : plain_; }

  // The stream of the server's wrap_connection for `fd`, or null without
  // one. A failure is counted and thrown.
  static std::unique_ptr<checked_stream> wrap(const connection_env& env, int fd) {
    if (!env.options.wrap_connection) return nullptr;
    try {
      std::unique_ptr<stream> s = env.options.wrap_connection(fd);
      if (s == nullptr) {
        throw io_error("leash::http::server: wrap_connection gave no stream",
                       std::make_error_code(std::errc::invalid_argument));
      }
      return std::make_unique<checked_stream>(std::move(s));
    } catch (...) {
      ++env.counters.wrap_failures;
      throw;
    }
  }

  // Reads, handles and answers one request; true when the connection then
  // waits for the next one.
  coro<bool> serve_request(bool first) {
    parsed_request head;
    std::size_t head_end = 0;
    if (!co_await read_request_head(first, head, head_end)) co_return false;
    server_request req = make_request(head);
    response_writer w = make_writer(head, req);
    const count_write_timeout counted{w, env_.counters.write_timeouts};
    body_lease body(open_body(head, head_end, req, w), req, env_.options.drain_limit);
    const bool body_read = !head.chunked && head.content_length == 0;
    if (!co_await respond(req, w, body, body_read)) co_return false;
    ++env_.counters.requests;
    co_return co_await ready_for_next(body, w);
  }

  // Reads the next request head and parses it into `head` (its views point
  // into buf_, whose first `head_end` bytes it is). False when the connection
  // ends: quietly (EOF, idle timeout, shutdown), or after answering 431 (a
  // head over the limits), 400 (a malformed head) or 408 (too slow a head).
  coro<bool> read_request_head(bool first, parsed_request& head, std::size_t& head_end) {
    int status = 0;
    try {
      if (!co_await read_head(first, head_end)) co_return false;
      parse_request_head(std::string_view(buf_).substr(0, head_end), env_.options.max_header_fields,
                         head);
      co_return true;
    } catch (const limit_exceeded&) {
      status = 431;
    } catch (const protocol_error&) {
      status = 400;
    } catch (const head_timed_out&) {
      status = 408;
    }
    co_await reply_error(status);
    co_return false;
  }

  // Where the head at the start of `buf` ends (after its empty line), or
  // npos. "\n\n" ends it too, so that a head with bare LFs is refused (400)
  // instead of awaited forever.
  static std::size_t find_head_end(std::string_view buf) noexcept {
    const std::size_t crlf = buf.find("\n\r\n");
    const std::size_t lf = buf.find("\n\n");
    return std::min(crlf == buf.npos ? buf.npos : crlf + 3, lf == buf.npos ? buf.npos : lf + 2);
  }

  // Reads until buf_ holds a whole head, `head_end` bytes long; false when
  // the connection should end quietly (EOF, idle timeout, shutdown before a
  // byte of the next request). The head is timed by header_timeout from its
  // first byte, or from the accept for a connection's `first` request;
  // throws head_timed_out when that passed with part of a head received,
  // limit_exceeded for a head over max_header_bytes.
  coro<bool> read_head(bool first, std::size_t& head_end) {
    const server_options& o = env_.options;
    bool timing_head = first || !buf_.empty();  // else: idle until the first byte
    auto deadline = leash::detail::deadline_after(timing_head ? o.header_timeout : o.idle_timeout);
    for (;;) {
      head_end = find_head_end(buf_);
      if (head_end != std::string::npos && head_end <= o.max_header_bytes) co_return true;
      if (std::min(head_end, buf_.size()) > o.max_header_bytes) {
        throw limit_exceeded(limit::header_bytes, o.max_header_bytes);
      }
      const read_status st = co_await read_more(deadline);
      if (st == read_status::timed_out && timing_head) {
        ++env_.counters.header_timeouts;
        if (!buf_.empty()) throw head_timed_out{};
      }
      if (st != read_status::data) co_return false;
      if (!timing_head) {
        timing_head = true;
        deadline = leash::detail::deadline_after(o.header_timeout);
      }
    }
  }

  // Appends one read's bytes to buf_, waiting for them until `deadline`.
  // While no byte of the request came (idle), a shutdown ends the wait
  // (eof): never mid-request; and the connection keeps no read buffer.
  coro<read_status> read_more(clock::time_point deadline) {
    const bool idle = buf_.empty();
    for (;;) {
      if (idle && env_.idle_end.stop_requested()) co_return read_status::eof;
      want wait = want::read;
      if (const std::optional<read_status> st = try_read(wait)) co_return *st;
      if (idle) buf_.shrink_to_fit();
      if (!co_await wait_ready(deadline, idle, wait)) {
        co_return idle&& env_.idle_end.stop_requested() ? read_status::eof : read_status::timed_out;
      }
    }
  }

  // One read into buf_'s end without waiting; nullopt when nothing is
  // there yet, with what the stream waits for in `wait`.
  std::optional<read_status> try_read(want& wait) {
    const std::size_t old = buf_.size();
    buf_.resize(old + read_chunk);
    step st;
    do {
      st = bytes().read({buf_.data() + old, read_chunk});
    } while (st.bytes == 0 && st.wait == want::read && bytes().has_buffered());
    buf_.resize(old + st.bytes);
    if (st.bytes > 0) return read_status::data;
    if (st.wait == want::nothing) return read_status::eof;
    wait = st.wait;
    return std::nullopt;
  }

  // Waits until the socket is ready as `wait` says; false when `deadline`
  // passed or, `idle`, the server began its shutdown. A cancel of the
  // connection's task throws cancelled.
  coro<bool> wait_ready(clock::time_point deadline, bool idle, want wait) {
    cancel_scope shutting_down(idle ? env_.idle_end : std::stop_token{});
    cancel_scope timer(deadline);
    io::detail::poll_desc& desc = io::socket_access::desc(socket_);
    try {
      co_await io::detail::slot_awaiter(wait == want::write ? desc.write : desc.read,
                                        "http::server: waiting for a request");
    } catch (const cancelled&) {
      if (token_.stop_requested()) throw;
      co_return false;
    }
    co_return true;
  }

  // The request of `head` (whose fields move into it), from this
  // connection's peer.
  server_request make_request(parsed_request& head) const {
    return server_request(std::move(head), peer_, env_.options.max_body_bytes);
  }

  // The writer of `req`'s response: keep-alive when the client asked for it
  // and the server is not shutting down.
  response_writer make_writer(const parsed_request& head, const server_request& req) {
    return response_writer(socket_, bytes(), token_, req.method() == "HEAD",
                           head.version.minor == 0, head.keep_alive && !env_.stopping.load(),
                           env_.options.write_timeout);
  }

  // The request body's stream, over buf_ from `head_end` on. An HTTP/1.1
  // "Expect: 100-continue" is answered by the body's first read (RFC 9110
  // 10.1.1: an HTTP/1.0 request's expectation is ignored).
  std::shared_ptr<request_stream> open_body(const parsed_request& head, std::size_t head_end,
                                            const server_request& req, response_writer& w) {
    const auto expect = req.headers().get("expect");
    std::function<void()> on_first_read;
    if (head.version.minor == 1 && expect && iequals(*expect, "100-continue")) {
      on_first_read = [&w] { w.send_continue(); };
    }
    const server_options& o = env_.options;
    return std::make_shared<request_stream>(
        socket_, bytes(), buf_, head_end,
        head.chunked ? body_framing::chunked : body_framing::content_length, head.content_length,
        parser_limits{o.max_header_bytes, o.max_header_fields, 0}, std::move(on_first_read));
  }

  // Runs the handler and finishes its response. False when the connection
  // ends here: the client left (nobody to answer), or the handler or the
  // finish failed (answered when nothing was sent yet: 413 for
  // body_too_large, 400 after a malformed body, 504 for a deadline of the
  // handler's own, else 500; nothing for the server's own cancel).
  coro<bool> respond(server_request& req, response_writer& w, body_lease& body, bool body_read) {
    bool client_left = false;
    int status = 0;
    try {
      co_await run_handler(req, w, body.stream(), body_read, client_left);
      if (client_left) co_return client_gone();
      co_await finish_response(req, w, body);
      co_return true;
    } catch (const cancelled& e) {
      if (client_left) co_return client_gone();
      (void)body.take_back();
      if (!token_.stop_requested() && untouched(w)) {
        status = dynamic_cast<const deadline_exceeded*>(&e) != nullptr ? 504 : 500;
      }
    } catch (const body_too_large&) {
      (void)body.take_back();
      if (untouched(w)) status = 413;
    } catch (const std::exception&) {
      (void)body.take_back();
      if (untouched(w)) status = body.stream()->malformed() ? 400 : 500;
    }
    if (status != 0) co_await reply_error(status);
    co_return false;
  }

  // Calls the handler in a scope that the client leaving cancels ("client
  // disconnected"); `client_left` says whether it did, also when the handler
  // throws. `body_read`: the request has no body, so a close by the client
  // means it left from the start.
  coro<void> run_handler(server_request& req, response_writer& w,
                         const std::shared_ptr<request_stream>& stream, bool body_read,
                         bool& client_left) {
    cancel_scope scope;
    struct unwatch_on_exit {
      disconnect_watcher& watcher;
      std::uint64_t id;
      bool& left;
      ~unwatch_on_exit() { left = watcher.unwatch(id); }
    } watched{env_.watcher, env_.watcher.watch(fd(), scope, body_read), client_left};
    req.attach_body(leash::body(std::make_unique<end_aware_body>(
        std::make_unique<request_body_source>(stream),
        [&watcher = env_.watcher, id = watched.id] { watcher.watch_eof(id); })));
    if (env_.handler.coroutine) {
      co_await env_.handler.coroutine(req, w);
    } else {
      // A plain handler may block in anything (a lock, a database): if it
      // does, the worker goes on with other tasks on another thread.
      leash::detail::scheduler::instance().call_may_block([&] { env_.handler.plain(req, w); });
    }
  }

  // The handler returned: its request's values go, the body comes back, and
  // the response ends ("Connection: close" when an unread tail will not be
  // read: a broken body, or one over drain_limit).
  coro<void> finish_response(server_request& req, response_writer& w, body_lease& body) {
    req.values().clear();  // gone before the client has the whole response
    const rest left = body.take_back();
    co_await w.async_finish(left == rest::broken || left == rest::too_big);
  }

  // After a finished response: drains the body's unread tail (at most
  // drain_limit, within drain_timeout) and says whether the connection
  // carries the next request. A tail not drained ends it with a lingering
  // close.
  coro<bool> ready_for_next(body_lease& body, const response_writer& w) {
    const server_options& o = env_.options;
    const rest left = body.take_back();
    bool clean = left == rest::none;
    if (left == rest::drain) {
      clean = co_await body.stream()->drain(o.drain_limit,
                                            leash::detail::deadline_after(o.drain_timeout), token_);
    }
    if (!clean) {
      co_await linger_close();
      co_return false;
    }
    body.stream()->release();
    co_return w.keeps_connection();
  }

  bool client_gone() {
    ++env_.counters.client_disconnects;
    return false;
  }

  // Nothing of the response went out: an error answer can still be sent.
  static bool untouched(const response_writer& w) { return !w.head_sent() && !w.aborted(); }

  // Answers `status` with no body and ends the connection.
  coro<void> reply_error(int status) {
    const std::string out = "HTTP/1.1 " + std::to_string(status) + " " +
                            response_writer::reason_phrase(status) +
                            "\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    const std::size_t sent = send_now(bytes(), out);
    if (sent < out.size()) {
      cancel_scope limit(env_.options.write_timeout);
      co_await async_write_all(bytes(), &io::socket_access::desc(socket_),
                               std::string_view(out).substr(sent), "io::async_write_all");
    }
    co_await linger_close();
  }

  // Ends the connection without a reset that could destroy the last
  // response (Go's closeWriteAndWait): closing with unread request bytes
  // would send a reset that can destroy the reply before the client reads
  // it. Reads and drops up to linger_reads reads for at most linger_time,
  // through the stream (a TLS peer's records are read and dropped whole).
  coro<void> linger_close() {
    buf_.clear();
    cancel_scope limit(linger_time);
    try {
      co_await close_write();
      for (int i = 0; i < linger_reads; ++i) {
        if (co_await read_more(clock::time_point::max()) != read_status::data) break;
        buf_.clear();
      }
    } catch (const cancelled&) {
      if (token_.stop_requested()) throw;
    } catch (const std::exception&) {
      // a reset: the client is gone; nothing to linger for
    }
  }

  // Ends the write side in order, once: the stream's shutdown (a TLS
  // close_notify; nothing for plain TCP), then the fd's. Throws the
  // stream's errors, or cancelled.
  coro<void> close_write() {
    if (std::exchange(write_closed_, true)) co_return;
    try {
      co_await async_shutdown(bytes(), &io::socket_access::desc(socket_),
                              "http::server: closing a connection");
    } catch (...) {
      ::shutdown(fd(), SHUT_WR);
      throw;
    }
    ::shutdown(fd(), SHUT_WR);
  }

  // The orderly end of a user's stream when the connection ends (a TLS
  // close_notify), within linger_time; a peer gone meanwhile does not matter.
  coro<void> close_stream() {
    cancel_scope limit(linger_time);
    try {
      co_await close_write();
    } catch (const cancelled&) {
      if (token_.stop_requested()) throw;
    } catch (const std::exception&) {
      // the peer is gone: nothing to tell it
    }
  }

  // "ip:port" of the peer of `fd`, or "" when it cannot be told.
  static std::string peer_address_of(int fd) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    char ip[INET6_ADDRSTRLEN] = {};
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return {};
    if (addr.ss_family == AF_INET) {
      const auto& a = reinterpret_cast<const sockaddr_in&>(addr);
      ::inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
      return std::string(ip) + ":" + std::to_string(ntohs(a.sin_port));
    }
    if (addr.ss_family == AF_INET6) {
      const auto& a = reinterpret_cast<const sockaddr_in6&>(addr);
      ::inet_ntop(AF_INET6, &a.sin6_addr, ip, sizeof ip);
      return "[" + std::string(ip) + "]:" + std::to_string(ntohs(a.sin6_port));
    }
    return {};
  }

  connection_env env_;
  io::socket socket_;
  std::stop_token token_;  // the connection task's
  std::string peer_;       // "ip:port" of the client
  std::string buf_;        // bytes read and not yet consumed; the next head starts it
  plain_stream plain_;     // the connection's bytes without wrap_connection
  std::unique_ptr<checked_stream> wrapped_;  // wrap_connection's stream, if the server has one
  bool write_closed_ = false;                // close_write() ran
};

}  // namespace detail

class server {
 public:
  using handler = std::function<void(server_request&, response_writer&)>;
  using coro_handler = std::function<coro<void>(server_request&, response_writer&)>;

  // Listens at once (throws io_error), then runs the accept loop as a task
  // of `n` and returns once it runs. `h` is a plain function, called as
  // h(req, w) on the connection's task, or a coroutine function returning
  // coro<void>, awaited there. The server must be destroyed before `n` is
  // (it joins its task).
  template <class H>
  server(nursery& n, H&& h, server_options options = {}) : options_(std::move(options)) {
    set_handler(std::forward<H>(h));
    listen();
    task_ = n.spawn(options_.name, [this] { return serve(); });
    if (!task_.done()) {  // returns with the accept loop running (stats, leak counts)
      const leash::detail::blocking_region blocking;
      std::unique_lock lock(mutex_);
      done_cv_.wait(lock, [&] { return started_; });
    }
  }

  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // shutdown(0): cancels what is still running, and joins.
  ~server() { shutdown(std::chrono::milliseconds(0)); }

  std::uint16_t port() const noexcept { return port_; }

  // Stops accepting, closes idle keep-alive connections, lets in-flight
  // requests finish until `grace` passed (their handlers see
  // this_task::soft_stop_requested()), then cancels the rest (nursery::
  // shutdown of the connections); returns once every connection task ended.
  // A later call waits, and may shorten the grace. Blocks; not cancellable
  // (it is the cleanup).
  template <class Rep, class Period>
  void shutdown(std::chrono::duration<Rep, Period> grace) {
    const leash::detail::blocking_region blocking;
    {
      std::unique_lock lock(mutex_);
      // Handlers see a soft stop at once (before a connect is refused) and
      // are cancelled when the grace ends, on the connections' clock; a
      // later call can only shorten it.
      if (conns_ != nullptr) conns_->shutdown(grace);
      if (!stopping_) {
        stopping_ = true;
        ::shutdown(listener_.native_handle(), SHUT_RDWR);  // refuses new connects
        if (accepting_ != nullptr) accepting_->cancel("http::server: shutdown");
      }
    }
    drain_.request_stop();  // wakes connections waiting for a next request
    {
      std::unique_lock lock(mutex_);
      done_cv_.wait(lock, [&] { return done_; });
    }
    if (task_.valid()) {
      try {
        task_.get(std::stop_token{});
      } catch (const std::exception&) {
        // The accept task never fails on its own; a cancelled parent ends it quietly.
      }
    }
  }

  server_stats stats() const {
    server_stats st;
    st.accepted = accepted_.load();
    st.requests = counters_.requests.load();
    st.write_timeouts = counters_.write_timeouts.load();
    st.connections = static_cast<std::size_t>(connections_.load());
    st.accept_paused = accept_paused_.load();
    st.accept_errors = accept_errors_.load();
    st.last_accept_error = last_accept_error_.load();
    st.header_timeouts = counters_.header_timeouts.load();
    st.client_disconnects = counters_.client_disconnects.load();
    st.connections_refused = connections_refused_.load();
    st.wrap_failures = counters_.wrap_failures.load();
    return st;
  }

 private:
  // How long the accept loop rests after running out of fds or memory,
  // instead of spinning on a listener that stays ready.
  static constexpr std::chrono::milliseconds accept_backoff{10};
  // What a refused connection's request may have sent before the 503: one
  // request head of the default size limit.
  static constexpr std::size_t refused_read_bytes = 64 * 1024;

  template <class H>
  void set_handler(H&& h) {
    using fn = std::decay_t<H>;
    static_assert(std::is_invocable_v<fn&, server_request&, response_writer&>,
                  "leash::http::server: the handler must be callable as "
                  "h(leash::http::server_request&, leash::http::response_writer&)");
    using result = std::invoke_result_t<fn&, server_request&, response_writer&>;
    static_assert(std::is_void_v<result> || std::is_same_v<result, coro<void>>,
                  "leash::http::server: the handler must return void (a plain function) or "
                  "leash::coro<void> (a coroutine)");
    if constexpr (std::is_void_v<result>) {
      handler_.plain = std::forward<H>(h);
    } else {
      handler_.coroutine = std::forward<H>(h);
    }
  }

  // The bound address of options_.host (numeric; brackets allowed around IPv6).
  sockaddr_storage listen_address(socklen_t& len) const {
    std::string host = options_.host;
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    sockaddr_storage addr{};
    auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
    if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      v4->sin_port = htons(options_.port);
      len = sizeof(sockaddr_in);
    } else if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(options_.port);
      len = sizeof(sockaddr_in6);
    } else {
      throw io_error("listen on " + options_.host + ": not a numeric address",
                     std::make_error_code(std::errc::invalid_argument));
    }
    return addr;
  }

  int backlog() const {
    return options_.backlog > 0 ? options_.backlog : detail::system_somaxconn();
  }

  void listen() {
    socklen_t len = 0;
    sockaddr_storage addr = listen_address(len);
    detail::socket fd(::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) detail::throw_errno("socket", errno);
    const int one = 1;
    ::setsockopt(fd.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (addr.ss_family == AF_INET6) {  // "::" takes IPv4 clients too, whatever the sysctl says
      const int zero = 0;
      ::setsockopt(fd.fd(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    }
    if (::bind(fd.fd(), reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(fd.fd(), backlog()) != 0) {
      detail::throw_errno("listen on " + options_.host, errno);
    }
    len = sizeof addr;
    ::getsockname(fd.fd(), reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    listener_ = io::socket(fd.release());
  }

  // Clears a pointer that shutdown() reads under `mutex` when the scope that
  // published it ends, however it ends.
  template <class T>
  struct unpublish {
    std::mutex& mutex;
    T*& published;
    ~unpublish() {
      std::lock_guard lock(mutex);
      published = nullptr;
    }
  };

  // The accept task: the connections' nursery, the watcher of clients that
  // leave, the accept loop; then the last connections' end.
  coro<void> serve() {
    // Whatever ends this task, shutdown() learns it.
    struct publish_done {
      server& self;
      ~publish_done() {
        std::lock_guard lock(self.mutex_);
        self.done_ = true;
        self.done_cv_.notify_all();
      }
    } done_on_exit{*this};
    try {
      co_await run_nursery({.name = options_.name + " connections"},
                           [this](nursery& conns) { return serve_in(conns); });
    } catch (const cancelled&) {
      // The accept task was cancelled: every connection was, and ended.
    }
  }

  coro<void> serve_in(nursery& conns) {
    // shutdown() reaches `conns` only until this body ends, before the
    // nursery is joined and destroyed.
    const unpublish<nursery> published{mutex_, conns_};
    conns.spawn(options_.name + " watcher", [this] { return watcher_.run(); });
    {
      std::lock_guard lock(mutex_);
      conns_ = &conns;
      started_ = true;  // the constructor returns with the accept task's tasks all started
      done_cv_.notify_all();
    }
    co_await accept_loop(conns);
    ::shutdown(listener_.native_handle(), SHUT_RDWR);  // later connects are refused, not queued
    while (connections_.load() > 0) {
      co_await io::detail::slot_awaiter(freed_, "http::server: waiting for the last connections");
    }
    watcher_.stop();
  }

  // Accepts connections and spawns their tasks until shutdown() cancels it.
  coro<void> accept_loop(nursery& conns) {
    cancel_scope accepting;
    const unpublish<cancel_scope> published{mutex_, accepting_};
    {
      std::lock_guard lock(mutex_);
      if (stopping_) co_return;
      accepting_ = &accepting;
    }
    try {
      // A listener shut down by shutdown() fails every accept at once: the
      // scope's stop is checked, not only seen at a wait.
      while (!accepting.stop_requested()) {
        co_await wait_for_room();
        const int fd = co_await accept_one();
        if (fd >= 0) spawn_connection(conns, fd);
      }
    } catch (const cancelled&) {
      if (accepting.reason() != stop_reason::cancelled) throw;  // not shutdown(): the task's cancel
    }
  }

  // Waits while max_connections connections run.
  coro<void> wait_for_room() {
    bool paused = false;
    while (!has_room()) {
      if (!paused) {
        paused = true;
        ++accept_paused_;
      }
      co_await io::detail::slot_awaiter(freed_, "http::server: at max_connections");
    }
  }

  bool has_room() const {
    return options_.max_connections == 0 ||
           static_cast<std::size_t>(connections_.load()) < options_.max_connections;
  }

  // The next connection's fd (non-blocking), or -1 after a failed accept
  // (counted; out of fds or memory, followed by a short rest).
  coro<int> accept_one() {
    for (;;) {
      const int fd =
          ::accept4(listener_.native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        ++accepted_;
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        co_return fd;
      }
      const int err = errno;
      if (err == EINTR) continue;
      if (err == EINVAL) co_return -1;  // shut down by shutdown(): not a failed accept
      if (err != EAGAIN && err != EWOULDBLOCK) {
        co_await accept_failed(err);
        co_return -1;
      }
      co_await io::detail::slot_awaiter(io::socket_access::desc(listener_).read,
                                        "http::server: accepting");
    }
  }

  // Counts a failed accept; rests when out of fds or memory.
  coro<void> accept_failed(int err) {
    last_accept_error_ = err;  // first: a reader that sees the count sees the errno too
    ++accept_errors_;
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
      co_await this_task::async_sleep_for(accept_backoff);
    }
  }

  // Runs the connection's task. When no task can be started for it (out of
  // memory), the client is answered 503 and the accept loop goes on; the
  // connection count stays exact either way.
  void spawn_connection(nursery& conns, int fd) {
    ++connections_;
    try {
      conns.spawn("http::server connection", [this, fd] { return run_connection(fd); });
    } catch (...) {
      ++connections_refused_;
      refuse_connection(fd);
      connection_ended();
    }
  }

  coro<void> run_connection(int fd) {
    try {
      detail::server_connection c(connection_env(), io::socket(fd));
      co_await c.run();
    } catch (...) {
      // The connection is over; its task never fails the server.
    }
    connection_ended();
  }

  // Best effort, never blocking the accept loop: takes what the client sent
  // so far (so that the close does not reset the answer away), answers 503,
  // and closes.
  static void refuse_connection(int fd) noexcept {
    static constexpr std::string_view answer =
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n"
        "Retry-After: 1\r\n\r\n";
    char sink[refused_read_bytes];
    (void)::recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    (void)::send(fd, answer.data(), answer.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    ::shutdown(fd, SHUT_WR);
    ::close(fd);
  }

  void connection_ended() {
    --connections_;
    freed_.set_ready();  // a slot is free; or the last connection ended
  }

  // What every connection uses of the server.
  detail::connection_env connection_env() {
    return {options_, handler_, watcher_, drain_.get_token(), stopping_, counters_};
  }

  detail::handlers handler_;
  server_options options_;
  io::socket listener_;
  std::uint16_t port_ = 0;
  detail::disconnect_watcher watcher_;
  io::detail::ready_slot freed_;  // a connection ended (the accept task waits on it)
  std::stop_source drain_;        // stopped by shutdown(): idle connections end
  std::atomic<std::uint64_t> accepted_{0};
  std::atomic<std::int64_t> connections_{0};
  std::atomic<std::uint64_t> accept_paused_{0};
  std::atomic<std::uint64_t> accept_errors_{0};
  std::atomic<int> last_accept_error_{0};
  std::atomic<std::uint64_t> connections_refused_{0};
  detail::connection_counters counters_;  // the connections' counters
  mutable std::mutex mutex_;              // guards the fields below
  std::condition_variable done_cv_;
  bool started_ = false;               // the accept task runs
  std::atomic<bool> stopping_{false};  // shutdown() called: accept nothing more (written
                                       // under mutex_, read by connections without it)
  bool done_ = false;                  // the accept task finished, every connection ended
  nursery* conns_ = nullptr;           // the connections' nursery while it exists
  cancel_scope* accepting_ = nullptr;  // the accept loop's scope while it accepts
  task<void> task_;                    // the accept task, in the caller's nursery
};

}  // namespace leash::inline v0::http
