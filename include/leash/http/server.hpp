// leash/http/server.hpp: a minimal HTTP/1.1 server whose connections are nursery tasks.
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
// One task runs in `n` (the accept loop); it opens the server's own nursery,
// where each connection is one task that reads a request, calls the handler,
// writes the response, and waits for the next (keep-alive). A response is
// framed by Content-Length when the handler returns before anything was
// flushed, otherwise chunked (HTTP/1.1) or delimited by close (HTTP/1.0).
// A request body (Content-Length or chunked) is a leash::body read from the
// connection while the handler reads it (req.body()); "Expect: 100-continue"
// is answered by the first read. After the handler, an unread tail up to
// drain_limit is read and dropped so the connection carries the next request;
// a longer one closes the connection. A response write that stalls longer
// than write_timeout (a client that stopped reading) ends the connection.
//
// Guarantees. Blocks: shutdown() and the destructor, until every connection
// task ended. Cancelled: a cancelled `n` cancels every connection (handlers
// blocked in leash calls throw cancelled); a handler's exception is answered
// 500 (413 for body_too_large, 400 after a malformed request body), or aborts
// the connection once bytes were sent, and never fails `n`.
// Thread-safe: shutdown(), port() and stats() from any thread; a
// response_writer may be flushed from another thread while the handler runs.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>

#include "../body.hpp"
#include "../cancel.hpp"
#include "../nursery.hpp"
#include "detail/request_body.hpp"
#include "detail/request_parser.hpp"
#include "detail/socket.hpp"
#include "errors.hpp"
#include "message.hpp"
#include "response_writer.hpp"
#include "values.hpp"

namespace leash::inline v0::http {

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
  friend class server;
  server_request() = default;
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
  std::string host = "127.0.0.1";  // numeric IPv4 address to listen on
  std::uint16_t port = 0;          // 0: an ephemeral port (see server::port())
  std::size_t max_header_bytes = 64 * 1024;
  std::size_t max_header_fields = 100;
  std::size_t max_body_bytes = 1 << 20;  // server_request::read_body()'s limit
  ms idle_timeout{60'000};  // a keep-alive connection waiting longer for a request is closed
  // One send of response bytes (a flush, at most the buffered bytes) must be
  // taken by the client within this, or the connection is aborted.
  ms write_timeout{60'000};
  std::size_t drain_limit = 64 * 1024;  // unread request body bytes dropped to reuse the connection
  ms drain_timeout{100};                // how long that drain may take
  std::string name = "http::server";
};

// Counters of a server (a snapshot).
struct server_stats {
  std::uint64_t accepted = 0;        // connections accepted
  std::uint64_t requests = 0;        // handler calls that returned
  std::uint64_t write_timeouts = 0;  // connections ended by write_timeout
  std::size_t connections = 0;       // connection tasks running now
};

class server {
 public:
  using handler = std::function<void(server_request&, response_writer&)>;

  // Listens at once (throws io_error), then runs the accept loop as a task
  // of `n` and returns once it runs. The server must be destroyed before `n` is (it joins its
  // task).
  server(nursery& n, handler h, server_options options = {})
      : handler_(std::move(h)), options_(std::move(options)) {
    listen();
    task_ = n.spawn(options_.name, [this] { serve(); });
    if (!task_.done()) {  // returns with the accept loop running (stats, leak counts)
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
  // requests finish until `grace` passed, then cancels the rest; returns once
  // every connection task ended. Later calls only wait. Blocks; not
  // cancellable (it is the cleanup).
  template <class Rep, class Period>
  void shutdown(std::chrono::duration<Rep, Period> grace) {
    const auto deadline = leash::detail::deadline_after(grace);
    {
      std::unique_lock lock(mutex_);
      if (!stopping_) {
        stopping_ = true;
        ::shutdown(listener_.fd(), SHUT_RDWR);  // wakes the accept loop
      }
    }
    drain_.request_stop();  // wakes connections waiting for a next request
    {
      std::unique_lock lock(mutex_);
      if (!done_cv_.wait_until(lock, deadline, [&] { return done_; }) && conns_ != nullptr) {
        conns_->cancel("http::server: shutdown grace period over");
      }
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
    return {accepted_.load(), requests_.load(), write_timeouts_.load(),
            static_cast<std::size_t>(connections_.load())};
  }

 private:
  void listen() {
    listener_ = detail::socket(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!listener_.valid()) detail::throw_errno("socket", errno);
    const int one = 1;
    ::setsockopt(listener_.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(options_.port);
    if (::inet_pton(AF_INET, options_.host.c_str(), &addr.sin_addr) != 1) {
      throw io_error("listen on " + options_.host,
                     std::make_error_code(std::errc::invalid_argument));
    }
    if (::bind(listener_.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener_.fd(), 128) != 0) {
      detail::throw_errno("listen on " + options_.host, errno);
    }
    socklen_t len = sizeof addr;
    ::getsockname(listener_.fd(), reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }

  void serve() {
    nursery conns({.name = options_.name + " connections"});
    {
      std::lock_guard lock(mutex_);
      conns_ = &conns;
      started_ = true;
      done_cv_.notify_all();
    }
    const std::stop_token token = this_task::stop_token();
    while (!stopping()) {
      {
        detail::stop_guard guard(token, listener_.fd());
        detail::poll_until(listener_.fd(), POLLIN, detail::clock::time_point::max());
      }
      if (token.stop_requested() || stopping()) break;
      const int fd = ::accept4(listener_.fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        // Out of fds or memory: back off instead of spinning on a ready listener.
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          try {
            this_task::sleep_for(std::chrono::milliseconds(10));
          } catch (const cancelled&) {
            break;
          }
        }
        continue;
      }
      ++accepted_;
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      ++connections_;
      conns.spawn("http::server connection", [this, fd] {
        try {
          serve_connection(detail::socket(fd));
        } catch (...) {
        }
        --connections_;
      });
    }
    try {
      conns.wait();
    } catch (...) {
    }
    std::lock_guard lock(mutex_);
    conns_ = nullptr;
    done_ = true;
    done_cv_.notify_all();
  }

  bool stopping() const {
    std::lock_guard lock(mutex_);
    return stopping_;
  }

  // Reads the next head into `buf`; false when the connection should end
  // quietly (EOF, idle timeout, shutdown before a byte of the next request).
  bool read_head(const detail::socket& s, std::string& buf, std::size_t& head_end,
                 const std::stop_token& token) {
    const auto deadline = leash::detail::deadline_after(options_.idle_timeout);
    for (;;) {
      // The head ends at the first empty line; "\n\n" is found too, so that
      // a head with bare LFs is refused (400) instead of awaited forever.
      const std::size_t crlf = buf.find("\n\r\n");
      const std::size_t lf = buf.find("\n\n");
      head_end =
          std::min(crlf == buf.npos ? buf.npos : crlf + 3, lf == buf.npos ? buf.npos : lf + 2);
      if (head_end != std::string::npos && head_end <= options_.max_header_bytes) return true;
      if (std::min(head_end, buf.size()) > options_.max_header_bytes) {
        throw limit_exceeded(limit::header_bytes, options_.max_header_bytes);
      }
      char tmp[8192];
      std::size_t got = 0;
      detail::read_status st;
      if (buf.empty()) {  // idle: shutdown may close it (never mid-request)
        detail::stop_guard drain(drain_.get_token(), s.fd());
        if (drain_.stop_requested()) return false;
        st = detail::read_some(s.fd(), tmp, sizeof tmp, got, deadline, token);
      } else {
        st = detail::read_some(s.fd(), tmp, sizeof tmp, got, deadline, token);
      }
      if (st != detail::read_status::data) return false;
      buf.append(tmp, got);
    }
  }

  void reply_error(const detail::socket& s, int status, const std::stop_token& token) {
    const std::string out = "HTTP/1.1 " + std::to_string(status) + " " +
                            response_writer::reason_phrase(status) +
                            "\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    detail::write_all(s.fd(), out, leash::detail::deadline_after(options_.write_timeout), token);
    linger_close(s, token);
  }

  // Ends the connection without a reset that could destroy the last response.
  void linger_close(const detail::socket& s, const std::stop_token& token) {
    // Lingering close (Go's closeWriteAndWait): closing with unread request
    // bytes would send a reset that can destroy the reply before the client
    // reads it. Reads and drops up to 256 KiB for at most 100 ms.
    ::shutdown(s.fd(), SHUT_WR);
    const auto deadline = leash::detail::deadline_after(std::chrono::milliseconds(100));
    char tmp[8192];
    std::size_t got = 0;
    for (int i = 0; i < 32; ++i) {
      if (detail::read_some(s.fd(), tmp, sizeof tmp, got, deadline, token) !=
          detail::read_status::data) {
        break;
      }
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

  void serve_connection(detail::socket s) {
    const std::stop_token token = this_task::stop_token();
    const std::string peer = peer_address_of(s.fd());
    std::string buf;
    for (;;) {
      server_request req;
      req.peer_address_ = peer;
      detail::parsed_request parsed;
      std::size_t head_end = 0;
      try {
        if (!read_head(s, buf, head_end, token)) return;
        detail::parse_request_head(std::string_view(buf).substr(0, head_end),
                                   options_.max_header_fields, parsed);
      } catch (const limit_exceeded&) {
        return reply_error(s, 431, token);
      } catch (const protocol_error&) {
        return reply_error(s, 400, token);
      }
      req.method_ = parsed.method;
      req.target_ = parsed.target;
      req.version_ = parsed.version;
      req.headers_ = std::move(parsed.headers);
      req.max_body_ = options_.max_body_bytes;
      if (!parsed.chunked) req.body_length_ = parsed.content_length;

      const bool keep_alive = parsed.keep_alive && !stopping();
      response_writer w(s.fd(), token, req.method_ == "HEAD", parsed.version.minor == 0, keep_alive,
                        options_.write_timeout);
      // RFC 9110 10.1.1: an HTTP/1.0 request's expectation is ignored.
      const auto expect = req.headers_.get("expect");
      std::function<void()> on_first_read;
      if (parsed.version.minor == 1 && expect && detail::iequals(*expect, "100-continue")) {
        on_first_read = [&w] { w.send_continue(); };
      }
      const auto stream = std::make_shared<detail::request_stream>(
          s.fd(), buf, head_end,
          parsed.chunked ? body_framing::chunked : body_framing::content_length,
          parsed.content_length,
          parser_limits{options_.max_header_bytes, options_.max_header_fields, 0},
          std::move(on_first_read));
      req.body_ = leash::body(std::make_unique<detail::request_body_source>(stream));
      // However the request ends, the body is the server's again before `w`
      // and `buf` die: a body moved out of the handler reads nothing more.
      auto rest = detail::request_stream::rest::broken;
      bool detached = false;
      auto take_back = [&] {
        if (detached) return;
        detached = true;
        rest = stream->detach(options_.drain_limit);
        (void)req.body_.try_close();  // the handler's handle; reads nothing
      };
      struct on_exit {
        decltype(take_back)& f;
        const response_writer& w;
        std::atomic<std::uint64_t>& write_timeouts;
        ~on_exit() {
          f();
          if (w.timed_out_) ++write_timeouts;  // after the last send of the response
        }
      } guard{take_back, w, write_timeouts_};
      try {
        handler_(req, w);
        req.values_.clear();  // gone before the client has the whole response
        take_back();
        std::lock_guard lock(w.mutex_);
        // An unread tail the server will not read: say the connection ends.
        if (rest == detail::request_stream::rest::broken ||
            rest == detail::request_stream::rest::too_big) {
          w.keep_alive_ = false;
        }
        w.send_locked(true);
      } catch (const cancelled&) {
        return;
      } catch (const body_too_large&) {
        take_back();
        if (!w.head_sent() && !w.aborted_) reply_error(s, 413, token);
        return;
      } catch (const std::exception&) {
        take_back();
        if (!w.head_sent() && !w.aborted_) reply_error(s, stream->malformed() ? 400 : 500, token);
        return;
      }
      ++requests_;
      const bool clean =
          rest == detail::request_stream::rest::none ||
          (rest == detail::request_stream::rest::drain &&
           stream->drain(options_.drain_limit,
                         leash::detail::deadline_after(options_.drain_timeout), token));
      if (!clean) return linger_close(s, token);
      stream->release();
      if (!w.keep_alive_ || w.mode_ == response_writer::mode::until_close) return;
    }
  }

  handler handler_;
  server_options options_;
  detail::socket listener_;
  std::uint16_t port_ = 0;
  std::stop_source drain_;  // stopped by shutdown(): idle connections end
  std::atomic<std::uint64_t> accepted_{0};
  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> write_timeouts_{0};
  std::atomic<std::int64_t> connections_{0};
  mutable std::mutex mutex_;  // guards the fields below
  std::condition_variable done_cv_;
  bool started_ = false;      // the accept task runs
  bool stopping_ = false;     // shutdown() called: accept nothing more
  bool done_ = false;         // the accept task finished, every connection ended
  nursery* conns_ = nullptr;  // the connections' nursery while it exists
  task<void> task_;           // the accept loop, in the caller's nursery
};

}  // namespace leash::inline v0::http
