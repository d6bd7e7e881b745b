// SPDX-License-Identifier: BSL-1.0
// leash/http/response_writer.hpp: the server's writer of one response.
//
// A handler writes its response through it; the server frames it: by
// Content-Length when the handler returns before anything was flushed,
// otherwise chunked (HTTP/1.1) or delimited by close (HTTP/1.0). The framing
// fields are the writer's: a Content-Length the handler set is enforced
// (more or fewer bytes abort the connection, never a clean end the client
// would wait past), identical duplicates go out as one field; a handler's
// "Transfer-Encoding: chunked" only asks for a streamed body (chunked, or
// close-delimited for HTTP/1.0) and is never sent next to a Content-Length.
// Framing a client could read two ways is refused before a byte is sent:
// two different lengths, a length that is not one decimal number, any other
// transfer coding, or both fields. A status is a final one, 200..599.
//
//   w.set_status(200);
//   w.headers().set("Content-Type", "text/plain");
//   w.write("hello");   // buffered (sent once more than 16 KiB are)
//   w.flush();          // head and "hello" on the wire now; the body is chunked
//
// A coroutine handler writes with `co_await w.async_write(s)` and
// `co_await w.async_flush()`: the same, waiting for a slow client with no
// thread.
//
// Guarantees. Blocks: write() and flush() while sending (in a coroutine
// task the worker goes on elsewhere meanwhile), each send bounded by the
// server's write_timeout (then http::timeout, and the connection is
// aborted). Cancelled: by the connection task's token (the server's
// shutdown); the async forms by the task's ambient scope as well. Throws:
// io_error, timeout, cancelled, usage_error (a status outside 200..599, or
// set after the head), invalid_request (when the head is sent: a field the
// response cannot carry, framing fields as above). Thread-safe: one mutex,
// never held while waiting for the client; one send at a time, in order:
// flush() may come from another thread (a ticker) while the handler runs.
#pragma once

#include "../detail/config.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "../cancel.hpp"
#include "../coro.hpp"
#include "../detail/scheduler.hpp"
#include "../errors.hpp"
#include "../io/socket.hpp"
#include "detail/chars.hpp"
#include "detail/socket.hpp"
#include "detail/stream_io.hpp"
#include "errors.hpp"
#include "message.hpp"
#include "request_writer.hpp"
#include "stream.hpp"

namespace leash::inline v0::http {

namespace detail {
class server_connection;
}

// Writes one response. Buffers until flush(), the buffer filling up, or the
// handler returning. Thread-safe (one mutex): flush() may come from a ticker.
class response_writer {
 public:
  response_writer(const response_writer&) = delete;
  response_writer& operator=(const response_writer&) = delete;

  // Sets the final status, 200..599, before the head was sent; anything else
  // is a usage_error. Interim 1xx responses are the server's (100 Continue),
  // and 101 needs an upgrade, which leash does not do.
  void set_status(int status) {
    if (status < min_status || status > max_status) {
      throw usage_error("leash::http::response_writer: status " + std::to_string(status) +
                        " is not a final status (200..599)");
    }
    std::lock_guard lock(mutex_);
    if (head_sent_) throw usage_error("leash::http::response_writer: status after the head");
    status_ = status;
  }
  // The response fields; changes after the head was sent are ignored. Not
  // locked: set them before another thread may call flush().
  fields& headers() noexcept { return headers_; }

  // Appends body bytes; sends when more than 16 KiB are buffered. Blocks
  // while sending; cancellable; throws io_error, cancelled.
  void write(std::string_view data) {
    const std::unique_lock lock = take_turn();
    buffer_.append(data);
    if (buffer_.size() > buffer_limit) send_locked(false);
  }
  // Sends the head (if not yet sent) and the buffered bytes now.
  void flush() {
    const std::unique_lock lock = take_turn();
    send_locked(false);
  }
  // co_await, in a coroutine task: write() waiting for the client with no
  // thread. `data` is copied before the first suspension.
  coro<void> async_write(std::string_view data) {
    bool full = false;
    {
      const std::unique_lock lock = take_turn();
      buffer_.append(data);
      full = buffer_.size() > buffer_limit;
    }
    if (full) co_await async_send(false);
  }
  // co_await, in a coroutine task: flush() waiting for the client with no thread.
  coro<void> async_flush() { return async_send(false); }
  // Kills the connection: the client sees it end before the response did.
  void abort() {
    std::lock_guard lock(mutex_);
    aborted_ = true;
    ::shutdown(fd_, SHUT_RDWR);
  }
  bool head_sent() const {
    std::lock_guard lock(mutex_);
    return head_sent_;
  }
  // The token of the connection's task: stops when the server cancels it.
  const std::stop_token& stop_token() const noexcept { return token_; }

  // Blocks until the client closed or reset its side of the connection
  // (true), or `token` stopped (false). For handlers that must notice a
  // client going away (the reverse proxy cancels its upstream request).
  // Never reads request bytes; cancelled through an eventfd, so a stop never
  // touches the client's socket.
  bool wait_client_gone(const std::stop_token& token) const {
    const leash::detail::blocking_region blocking;  // a coroutine task's worker goes on elsewhere
    detail::socket wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake.valid()) detail::throw_errno("eventfd", errno);
    auto ring = [fd = wake.fd()] {
      const std::uint64_t one = 1;
      (void)!::write(fd, &one, sizeof one);
    };
    std::stop_callback<decltype(ring)> on_stop(token, ring);
    for (;;) {
      pollfd p[2] = {{fd_, POLLRDHUP, 0}, {wake.fd(), POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        detail::throw_errno("poll", errno);
      }
      if (p[1].revents != 0) return false;
      if ((p[0].revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) return true;
    }
  }

 private:
  // The server connection's interface: the members up to "the writer's own
  // machinery" below, and reason_phrase() for its own error answers, are all
  // it uses of the writer.
  friend class detail::server_connection;

  // A writer on the connection `sock`, whose bytes go through `bytes`, for a response to a request
  // that said HEAD (`head_request`: no body is sent) or HTTP/1.0 (`http10`: no chunked body);
  // `keep_alive`: the connection may carry another request after it.
  response_writer(io::socket& sock, stream& bytes, std::stop_token token, bool head_request,
                  bool http10, bool keep_alive, std::chrono::milliseconds write_timeout)
      : sock_(&sock),
        stream_(&bytes),
        fd_(sock.native_handle()),
        token_(std::move(token)),
        head_request_(head_request),
        http10_(http10),
        keep_alive_(keep_alive),
        write_timeout_(write_timeout) {}

  // "100 Continue", before the request body's first read, unless the
  // response already started (RFC 9110 10.1.1).
  void send_continue() {
    const std::unique_lock lock = take_turn();
    if (head_sent_ || aborted_) return;
    send_bytes_locked("HTTP/1.1 100 Continue\r\n\r\n");
  }

  // Ends the response after the handler returned: sends the head if it was
  // not sent (framed by Content-Length then) and the rest of the body (the
  // last chunk when chunked). `close_connection`: the connection ends after
  // this response ("Connection: close" when the head is still to be sent).
  // Throws as flush(), and invalid_request for a head it cannot send. Runs
  // on the connection's coroutine task: waits for the client with no thread.
  coro<void> async_finish(bool close_connection) {
    {
      const std::unique_lock lock = take_turn();
      if (close_connection) keep_alive_ = false;
    }
    return async_send(true);
  }

  // After finish(): true when the connection may carry another request
  // (keep-alive, and the body was not delimited by the connection's end).
  bool keeps_connection() const {
    std::lock_guard lock(mutex_);
    return keep_alive_ && mode_ != mode::until_close;
  }

  // True when a send exceeded write_timeout (the connection was aborted).
  bool timed_out() const {
    std::lock_guard lock(mutex_);
    return timed_out_;
  }

  // True when the connection was aborted: by abort(), a stalled send, or a
  // body that broke its Content-Length. Nothing more can be sent on it.
  bool aborted() const {
    std::lock_guard lock(mutex_);
    return aborted_;
  }

  // The writer's own machinery from here on.

  // Sends buffered beyond this much (a few socket buffers' worth per send).
  static constexpr std::size_t buffer_limit = 16 * 1024;

  // The mutex, once no send is in flight: sends go out one at a time and in
  // order. Waiting hands a coroutine task's worker to another thread.
  std::unique_lock<std::mutex> take_turn() {
    std::unique_lock lock(mutex_, std::try_to_lock);
    if (lock.owns_lock() && !sending_) return lock;
    const leash::detail::blocking_region blocking;
    if (!lock.owns_lock()) lock.lock();
    turn_.wait(lock, [&] { return !sending_; });
    return lock;
  }

  // Ends a send in flight however it ends, and lets the next one go.
  struct end_of_send {
    response_writer& w;
    ~end_of_send() {
      {
        const std::lock_guard lock(w.mutex_);
        w.sending_ = false;
      }
      w.turn_.notify_all();
    }
  };

  // Writes `out` within write_timeout; a stalled client aborts the response.
  void send_bytes_locked(std::string_view out) {
    try {
      detail::write_all(*stream_, fd_, out, leash::detail::deadline_after(write_timeout_), token_);
    } catch (const timeout&) {
      aborted_ = true;
      throw_write_timed_out();
    }
  }

  // The client took nothing for write_timeout: the connection is aborted.
  [[noreturn]] void throw_write_timed_out() {
    timed_out_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    throw timeout("response write: the client read nothing for " +
                  std::to_string(write_timeout_.count()) + " ms (write_timeout)");
  }

  // Renders what is due (the head if not sent, the buffered bytes, the last
  // chunk when `last`) and sends it with no lock held, waiting for the
  // client with no thread.
  coro<void> async_send(bool last) {
    std::string out;
    {
      const std::unique_lock lock = take_turn();
      out = render_locked(last);
      sending_ = true;
    }
    const end_of_send ended{*this};
    co_await send_bytes_async(out);
  }

  // Sends `out` within write_timeout: what the socket takes at once, then
  // the rest as the client reads.
  coro<void> send_bytes_async(std::string_view out) {
    out.remove_prefix(detail::send_now(*stream_, out));
    if (out.empty()) co_return;
    cancel_scope limit(write_timeout_);
    try {
      co_await detail::async_write_all(*stream_, &io::socket_access::desc(*sock_), out,
                                       "io::async_write_all");
    } catch (const cancelled&) {
      if (limit.reason() != stop_reason::deadline_exceeded) throw;
      const std::lock_guard lock(mutex_);
      aborted_ = true;
      throw_write_timed_out();
    }
  }

  // The RFC 9110 reason phrase of common statuses ("Status" for the rest:
  // clients must ignore the phrase).
  static const char* reason_phrase(int s) {
    switch (s) {
      case 200:
        return "OK";
      case 201:
        return "Created";
      case 202:
        return "Accepted";
      case 204:
        return "No Content";
      case 301:
        return "Moved Permanently";
      case 302:
        return "Found";
      case 303:
        return "See Other";
      case 304:
        return "Not Modified";
      case 307:
        return "Temporary Redirect";
      case 308:
        return "Permanent Redirect";
      case 400:
        return "Bad Request";
      case 401:
        return "Unauthorized";
      case 403:
        return "Forbidden";
      case 404:
        return "Not Found";
      case 405:
        return "Method Not Allowed";
      case 408:
        return "Request Timeout";
      case 409:
        return "Conflict";
      case 410:
        return "Gone";
      case 411:
        return "Length Required";
      case 413:
        return "Content Too Large";
      case 415:
        return "Unsupported Media Type";
      case 429:
        return "Too Many Requests";
      case 431:
        return "Request Header Fields Too Large";
      case 500:
        return "Internal Server Error";
      case 501:
        return "Not Implemented";
      case 502:
        return "Bad Gateway";
      case 503:
        return "Service Unavailable";
      case 504:
        return "Gateway Timeout";
      default:
        return "Status";
    }
  }

  // The handler's framing fields, checked and taken over: identical
  // Content-Lengths become one field, Transfer-Encoding is removed (the
  // writer adds its own). Throws invalid_request, with nothing sent.
  struct user_framing {
    std::optional<std::uint64_t> length;
    bool chunked = false;  // the handler asked for a streamed body
  };
  user_framing take_framing_fields() {
    user_framing user;
    for (fields::field f : headers_) {
      if (detail::iequals(f.name, "transfer-encoding")) {
        if (user.chunked || !detail::iequals(detail::trim_ows(f.value), "chunked")) {
          throw invalid_request(reason::unsupported_transfer_coding,
                                "response Transfer-Encoding " + std::string(f.value));
        }
        user.chunked = true;
      } else if (detail::iequals(f.name, "content-length")) {
        std::uint64_t n = 0;
        if (detail::parse_decimal(detail::trim_ows(f.value), n) != detail::number_status::ok) {
          throw invalid_request(reason::bad_content_length,
                                "response Content-Length " + std::string(f.value));
        }
        if (user.length && *user.length != n) {
          throw invalid_request(reason::conflicting_content_length, "response Content-Length");
        }
        user.length = n;
      }
    }
    if (user.length && user.chunked) {
      throw invalid_request(reason::content_length_with_transfer_encoding, "response");
    }
    headers_.erase("transfer-encoding");
    if (user.length) headers_.set("Content-Length", std::to_string(*user.length));
    return user;
  }

  void send_locked(bool last) { send_bytes_locked(render_locked(last)); }

  // The bytes of the response that are due now: the head when it was not
  // sent, the buffered body bytes in the response's framing, and with
  // `last` its end. Throws io_error on an aborted response and
  // invalid_request for a head it cannot send.
  std::string render_locked(bool last) {
    if (aborted_)
      throw io_error("response aborted", std::make_error_code(std::errc::connection_aborted));
    std::string out;
    if (!head_sent_) {
      const bool no_body = head_request_ || status_ == 204 || status_ == 304;
      const user_framing user = take_framing_fields();
      // RFC 9110 8.6: no Content-Length in a 204.
      if (status_ == 204) headers_.erase("content-length");
      if (no_body) {
        mode_ = mode::none;  // a user Content-Length describes the body not sent
      } else if (user.length) {
        mode_ = mode::length;
        remaining_ = *user.length;
      } else if (last && !user.chunked) {
        mode_ = mode::length;
        remaining_ = buffer_.size();
        headers_.set("Content-Length", std::to_string(buffer_.size()));
      } else if (!http10_) {
        mode_ = mode::chunked;
        headers_.set("Transfer-Encoding", "chunked");
      } else {
        mode_ = mode::until_close;
        keep_alive_ = false;
      }
      if (!keep_alive_) headers_.set("Connection", "close");
      out.append("HTTP/1.1 ").append(std::to_string(status_)).append(" ");
      out.append(reason_phrase(status_)).append("\r\n");
      for (fields::field f : headers_) {
        if (!detail::is_token(f.name) || !detail::valid_field_value(f.value)) {
          throw invalid_request(reason::bad_field_value, "response field " + std::string(f.name));
        }
        out.append(f.name).append(": ").append(f.value).append("\r\n");
      }
      out.append("\r\n");
      head_sent_ = true;
    }
    if (mode_ == mode::chunked) {
      write_chunk(out, buffer_);
      if (last) write_last_chunk(out);
    } else if (mode_ == mode::length) {
      // Never more than declared, and never a clean end with less: the
      // client would wait for bytes that are not coming.
      if (buffer_.size() > remaining_ || (last && buffer_.size() != remaining_)) {
        aborted_ = true;
        ::shutdown(fd_, SHUT_RDWR);
        throw io_error("response body length differs from its Content-Length",
                       std::make_error_code(std::errc::invalid_argument));
      }
      remaining_ -= buffer_.size();
      out.append(buffer_);
    } else if (mode_ == mode::until_close) {
      out.append(buffer_);
    }
    buffer_.clear();
    return out;
  }

  static constexpr int min_status = 200;  // 1xx are interim: never a handler's final answer
  static constexpr int max_status = 599;  // the last class RFC 9110 15 defines
  enum class mode : unsigned char { none, length, chunked, until_close };
  mutable std::mutex mutex_;      // guards everything below
  std::condition_variable turn_;  // a send in flight ended
  bool sending_ = false;          // an async send is in flight, with no lock held
  io::socket* sock_;
  stream* stream_;  // the connection's bytes (plain TCP, or the user's adapter)
  int fd_;
  std::stop_token token_;
  bool head_request_;
  bool http10_;
  bool keep_alive_;  // false: "Connection: close", the connection ends after this response
  std::chrono::milliseconds write_timeout_;  // bound of one send
  bool timed_out_ = false;                   // a send exceeded write_timeout_
  int status_ = 200;
  fields headers_;
  std::string buffer_;
  bool head_sent_ = false;
  bool aborted_ = false;
  mode mode_ = mode::none;
  std::uint64_t remaining_ = 0;  // mode::length: body bytes still owed
};

}  // namespace leash::inline v0::http
