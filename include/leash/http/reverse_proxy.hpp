// SPDX-License-Identifier: BSL-1.0
// leash/http/reverse_proxy.hpp: a coroutine server handler that forwards through a transport.
// Prevents: httputil.ReverseProxy's flushLoop, a time.Ticker goroutine that
// outlived its response and flushed a finished ResponseWriter (a panic); here
// the periodic flush is a scoped tick in the proxy's own select, ended before
// the response is finished.
//
//   leash::http::transport upstream;
//   leash::http::reverse_proxy proxy(upstream, {.host = "127.0.0.1", .port = 8081,
//                                               .flush_interval = 100ms});
//   leash::nursery n;
//   leash::http::server front(n, std::ref(proxy));  // or std::cref(proxy), or a copy
//
// The proxy is a coroutine handler, coro<void>(server_request&,
// response_writer&): the server awaits it on the connection's task, and it
// waits for the upstream, for the client's body and for the client to take
// the response with no thread (transport::async_round_trip, body async_read
// both ways, response_writer::async_write / async_flush). A coroutine
// handler of one's own may `co_await proxy(req, w)`.
//
// Per request: hop-by-hop fields (RFC 9110 7.6.1: Connection, Keep-Alive,
// TE, Trailer, Transfer-Encoding, Upgrade, every field the Connection header
// names) and every field whose name starts with "Proxy-" (credentials and
// state of this hop: Proxy-Authorization, Proxy-Authenticate,
// Proxy-Connection, ...) are dropped both ways; Content-Length is redone from
// the parsed length (one field, whatever duplicates the upstream sent).
// Added upstream, as Go's httputil.ReverseProxy does: X-Forwarded-For (the
// client's IP, replacing an incoming one, or appended to it with
// trust_forwarded_for), X-Forwarded-Host (the request's host) and
// X-Forwarded-Proto ("http"), both replacing incoming ones. An absolute-form
// target ("GET http://h/x") goes upstream in origin-form with Host set to
// its authority (RFC 9112 3.2.2). The response head is flushed to the client
// at once. The request body streams upstream as the client sends it (nothing
// buffered whole): with its Content-Length, or chunked when it came chunked;
// a client body that breaks HTTP is answered 400 by the server, not 502. The
// response body is copied as it arrives and flushed every flush_interval, or
// after every read for text/event-stream, for a body of unknown length, or
// when flush_interval is zero or negative. An upstream that fails before its
// head is answered 502; one that fails mid-body aborts the client's
// connection (the client sees a truncated response, never a clean end). A
// client that goes away cancels the upstream request (the server cancels
// the handler's scope).
//
// Guarantees. Blocks: no thread; the coroutine suspends for the upstream
// exchange and the client. Cancelled: by the server's shutdown and by the
// client going away (the server's cancel of the handler's scope), and by
// any scope of the awaiting coroutine. Throws: cancelled; the upstream's
// error after an abort; the client's body error (answered 400). The proxy
// object is stateless per request and thread-safe.
#pragma once

#include "../detail/config.hpp"

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../channel.hpp"
#include "../coro.hpp"
#include "../nursery.hpp"
#include "../select.hpp"
#include "../timer_channel.hpp"
#include "server.hpp"
#include "transport.hpp"

namespace leash::inline v0::http {

struct proxy_options {
  std::string host = "127.0.0.1";  // the upstream
  std::uint16_t port = 80;
  // How often buffered body bytes are flushed to the client; negative: after
  // every read. Text/event-stream and unknown-length bodies always flush at once.
  std::chrono::milliseconds flush_interval{100};
  // Append the client to an incoming X-Forwarded-For (the proxy in front is
  // trusted) instead of replacing it (a client could claim any address).
  bool trust_forwarded_for = false;
};

namespace detail {

// Copies every end-to-end field of `from` into `to` (RFC 9110 7.6.1).
inline void copy_end_to_end(const fields& from, fields& to) {
  std::vector<std::string> named;  // fields the Connection header lists
  for (std::string_view v : from.get_all("connection")) {
    for_each_list_element(v, [&](std::string_view e) { named.emplace_back(e); });
  }
  static constexpr std::string_view hop[] = {"connection",    "keep-alive",        "te",
                                             "trailer",       "transfer-encoding", "upgrade",
                                             "content-length"};
  constexpr std::string_view proxy_prefix = "proxy-";  // this hop's fields, all of them
  for (fields::field f : from) {
    bool drop = f.name.size() >= proxy_prefix.size() &&
                iequals(f.name.substr(0, proxy_prefix.size()), proxy_prefix);
    for (std::string_view h : hop)
      drop = drop || iequals(f.name, h);
    for (const std::string& n : named)
      drop = drop || iequals(f.name, n);
    if (!drop) to.add(f.name, f.value);
  }
}

// The IP of an "ip:port" or "[ip]:port" peer address.
inline std::string_view peer_ip(std::string_view peer) {
  const std::size_t colon = peer.rfind(':');
  if (colon == std::string_view::npos) return peer;
  std::string_view ip = peer.substr(0, colon);
  if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  return ip;
}

// The request head that goes upstream for `req`: origin-form target,
// end-to-end fields, Host and the X-Forwarded-* fields (see the header
// comment).
inline request_head upstream_head(const server_request& req, bool trust_forwarded_for) {
  request_head out{std::string(req.method()), std::string(req.target())};
  copy_end_to_end(req.headers(), out.headers);
  std::string host(req.headers().get("host").value_or(""));
  if (auto absolute = split_absolute_form(req.target())) {
    out.target = std::move(absolute->origin);
    host = std::string(absolute->authority);
    out.headers.set("Host", host);
  }
  std::string forwarded_for;
  if (trust_forwarded_for) {
    for (std::string_view v : req.headers().get_all("x-forwarded-for"))
      forwarded_for.append(v).append(", ");
  }
  forwarded_for.append(peer_ip(req.peer_address()));
  if (forwarded_for.size() >= 2 && forwarded_for.ends_with(", "))
    forwarded_for.resize(forwarded_for.size() - 2);
  if (!forwarded_for.empty()) {
    out.headers.set("X-Forwarded-For", forwarded_for);
  } else {
    out.headers.erase("x-forwarded-for");
  }
  if (!host.empty()) {
    out.headers.set("X-Forwarded-Host", host);
  } else {
    out.headers.erase("x-forwarded-host");
  }
  out.headers.set("X-Forwarded-Proto", "http");
  return out;
}

// The single length of a Content-Length the transport accepted ("7",
// "7, 7", or the first of identical fields).
inline std::optional<std::uint64_t> parsed_length(const fields& headers) {
  const auto value = headers.get("content-length");
  if (!value) return std::nullopt;
  std::uint64_t n = 0;
  const std::string_view first = trim_ows(value->substr(0, value->find(',')));
  if (parse_decimal(first, n) != number_status::ok) return std::nullopt;
  return n;
}

// The client's request body on its way upstream; remembers whether reading
// it failed, so that a bad upload is the client's error (400), not a 502.
class downstream_source final : public body_source {
 public:
  downstream_source(leash::body b, bool& failed) : body_(std::move(b)), failed_(&failed) {}
  std::size_t read(std::span<std::byte> out, std::stop_token stop) override {
    try {
      return body_.read(out, stop);
    } catch (...) {
      *failed_ = true;
      throw;
    }
  }
  // read() with no thread (the server's request body waits on the reactor).
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<std::size_t> async_read(
      std::span<std::byte> out) override {
    try {
      co_return co_await body_.async_read(out);
    } catch (...) {
      *failed_ = true;
      throw;
    }
  }
  void close(bool) override { (void)body_.try_close(); }

 private:
  leash::body body_;
  bool* failed_;
};

}  // namespace detail

// A coroutine handler (usable by http::server) that forwards each request
// to one upstream through `upstream`. See the header comment.
class reverse_proxy {
 public:
  reverse_proxy(transport& upstream, proxy_options options)
      : upstream_(&upstream), options_(std::move(options)) {}

  // Forwards one request; awaited by the server on the connection's task.
  // `req` and `w` must outlive the returned coro (the server's do).
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<void> operator()(server_request& req,
                                                                response_writer& w) const {
    request out{options_.host, options_.port,
                detail::upstream_head(req, options_.trust_forwarded_for)};
    // The transport sends the body as soon as the head (it never waits for a
    // 100); the client's expectation was answered by our first read.
    out.head.headers.erase("expect");
    // The body streams upstream as the client sends it: same length, or chunked.
    const std::optional<std::uint64_t> length = req.body_length();
    bool body_failed = false;
    if (!length || *length > 0) {
      out.stream = leash::body(
          std::make_unique<detail::downstream_source>(std::move(req.body()), body_failed));
      out.stream_length = length;
    }
    // A client that leaves needs no watcher here: the server cancels the
    // handler's scope, which ends every wait below, the upstream's included.
    co_await forward(out, w, body_failed);
  }

 private:
  // What one read of the upstream's body takes at most.
  static constexpr std::size_t copy_chunk = 16 * 1024;

  // `body_failed`: set when reading the client's body failed (then the
  // error is rethrown for the server to answer, not turned into a 502).
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<void> forward(const request& out, response_writer& w,
                                                             const bool& body_failed) const {
    response r;
    std::optional<std::string> unreachable;  // the upstream's error before its head
    try {
      r = co_await upstream_->async_round_trip(out);
    } catch (const http::error& e) {
      if (body_failed) throw;
      unreachable = e.what();
    }
    if (unreachable) {
      w.set_status(502);
      w.headers().set("Content-Type", "text/plain");
      co_await w.async_write(*unreachable + "\n");
      co_return;
    }
    std::exception_ptr failure;
    bool head_sent = false;
    try {
      const bool immediate = start_response(r, w);
      co_await w.async_flush();  // the head reaches the client now, whatever the upstream does
      head_sent = true;
      if (immediate) {
        co_await copy_flushing_each(r.body, w);
      } else {
        co_await copy_flushing_periodically(r.body, w);
      }
    } catch (...) {
      failure = std::current_exception();
    }
    if (!failure) co_return;
    if (head_sent) w.abort();  // never end a broken response cleanly
    (void)r.body.try_close();  // the upstream connection goes; nothing is reported unclosed
    std::rethrow_exception(failure);
  }

  // Sets the client's status and fields from `r`; true when every read of
  // the body is to be flushed at once (text/event-stream, unknown length,
  // or a flush_interval that is not positive).
  bool start_response(const response& r, response_writer& w) const {
    w.set_status(r.status());
    detail::copy_end_to_end(r.head.headers, w.headers());
    const std::optional<std::uint64_t> length = detail::parsed_length(r.head.headers);
    if (length) w.headers().set("Content-Length", std::to_string(*length));
    const auto type = r.head.headers.get("content-type");
    return options_.flush_interval.count() <= 0 || !length ||
           (type && type->substr(0, 17) == "text/event-stream");
  }

  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER static coro<void> copy_flushing_each(body& b,
                                                                               response_writer& w) {
    std::string buf(copy_chunk, '\0');  // on the heap: the frame stays small
    while (std::size_t n = co_await b.async_read(std::span<char>(buf))) {
      co_await w.async_write(std::string_view(buf.data(), n));
      co_await w.async_flush();
    }
  }

  // The flusher is scoped, which is why this proxy exists: Go's flushLoop
  // outlived its response and flushed a finished writer. The writer makes a
  // second sender wait for the first on a thread, so copy and flush take
  // turns in this one task: a select between the next piece of the body and
  // the next tick. A body read cannot be a select case, so a child task reads
  // the body into an unbuffered channel. The nursery joins the reader and the
  // tick timer dies before this returns: nothing flushes after the response.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<void> copy_flushing_periodically(
      body& b, response_writer& w) const {
    channel<std::string> pieces;  // unbuffered: the reader is one piece ahead at most
    co_await run_nursery({.name = "reverse_proxy copy"}, [&](nursery& n) {
      n.spawn("reverse_proxy body reader", [&] { return read_pieces(b, pieces); });
      return write_with_ticks(pieces, w);
    });
  }

  // Sends each piece of `b` on `pieces`, and closes it at the body's end.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER static coro<void> read_pieces(
      body& b, channel<std::string>& pieces) {
    for (;;) {
      std::string piece(copy_chunk, '\0');
      const std::size_t n = co_await b.async_read(std::span<char>(piece));
      if (n == 0) break;
      piece.resize(n);
      co_await pieces.async_send(std::move(piece));
    }
    pieces.close();
  }

  // Writes the pieces as they come and flushes on every tick with bytes
  // written since the last flush, until `pieces` is closed.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<void> write_with_ticks(channel<std::string>& pieces,
                                                                      response_writer& w) const {
    timer_channel ticks = leash::tick(options_.flush_interval);
    bool unflushed = false;
    for (;;) {
      std::optional<std::string> piece;
      bool ended = false;
      bool tick = false;
      co_await async_select(on_recv(pieces,
                                    [&](std::optional<std::string> p) {
                                      ended = !p;
                                      piece = std::move(p);
                                    }),
                            on_recv(ticks, [&] { tick = true; }));
      if (ended) co_return;
      if (piece) {
        co_await w.async_write(*piece);
        unflushed = true;
      }
      if (tick && unflushed) {
        co_await w.async_flush();
        unflushed = false;
      }
    }
  }

  transport* upstream_;
  proxy_options options_;
};

}  // namespace leash::inline v0::http
