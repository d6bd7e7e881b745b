// SPDX-License-Identifier: BSL-1.0
// leash/http/client.hpp: requests by URL over a transport.
// Prevents: Go's http.Get on the default client, which has no timeout at all
// (a hung server hangs the caller forever); here every call honours the
// ambient cancel scope, and the body it returns must be closed.
//
//   leash::http::transport t;
//   leash::http::client c(t);
//   leash::cancel_scope deadline(2s);
//   leash::http::response r = c.get("http://127.0.0.1:8080/status");
//   std::string text = r.body.read_all(1 << 20);
//
//   // in a coroutine task: no thread while it waits
//   leash::http::response r = co_await c.async_get("http://127.0.0.1:8080/status");
//   std::string text = co_await r.body.async_read_all(1 << 20);
//
// Plain http:// only: TLS, redirects, cookies and proxies are out of scope
// (the URL of another scheme is refused with invalid_request).
//
// Guarantees. Blocks, is cancelled and throws exactly as
// transport::round_trip (the async_ forms: as transport::async_round_trip);
// a malformed URL throws invalid_request before any dial. Thread-safe: a client is a pointer to its
// transport.
#pragma once

#include "../detail/config.hpp"

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "errors.hpp"
#include "transport.hpp"

namespace leash::inline v0::http {

// An http:// URL split into what a request needs.
struct url {
  std::string host;  // without brackets for an IPv6 literal
  std::uint16_t port = 80;
  std::string target = "/";  // path and query; the fragment is dropped

  // Parses "http://host[:port][/path][?query][#fragment]". Throws
  // invalid_request for another scheme, an empty host or a bad port.
  static url parse(std::string_view text) {
    constexpr std::string_view scheme = "http://";
    if (text.size() < scheme.size() || !detail::iequals(text.substr(0, 7), scheme)) {
      throw invalid_request(reason::bad_target, "only http:// URLs: " + std::string(text));
    }
    text.remove_prefix(scheme.size());
    if (const std::size_t hash = text.find('#'); hash != text.npos) text = text.substr(0, hash);
    const std::size_t slash = text.find_first_of("/?");
    std::string_view authority = text.substr(0, slash);
    url u;
    if (slash != text.npos) {
      u.target = std::string(text.substr(slash));
      if (u.target.front() == '?') u.target.insert(0, "/");
    }
    if (authority.find('@') != authority.npos) {
      throw invalid_request(reason::bad_host, "user info in URL");
    }
    std::string_view port;
    if (!authority.empty() && authority.front() == '[') {  // [IPv6]:port
      const std::size_t close = authority.find(']');
      if (close == authority.npos) throw invalid_request(reason::bad_host, std::string(authority));
      u.host = std::string(authority.substr(1, close - 1));
      authority.remove_prefix(close + 1);
      if (!authority.empty()) {
        if (authority.front() != ':') throw invalid_request(reason::bad_host, std::string(text));
        port = authority.substr(1);
      }
    } else {
      const std::size_t colon = authority.find(':');
      u.host = std::string(authority.substr(0, colon));
      if (colon != authority.npos) port = authority.substr(colon + 1);
    }
    if (u.host.empty()) throw invalid_request(reason::bad_host, "empty host");
    if (!port.empty()) {
      unsigned value = 0;
      const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
      if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
        throw invalid_request(reason::bad_host, "bad port: " + std::string(port));
      }
      u.port = static_cast<std::uint16_t>(value);
    }
    return u;
  }
};

// Requests by URL through a transport (which it does not own).
class client {
 public:
  explicit client(transport& t) noexcept : transport_(&t) {}

  // GET `target_url`. Blocks until the response head; cancellable.
  response get(std::string_view target_url, source_location site = source_location::current()) {
    return send("GET", target_url, {}, {}, site);
  }

  // POST `body` with `content_type`. Not retried (it has a body).
  response post(std::string_view target_url, std::string_view content_type, std::string body,
                source_location site = source_location::current()) {
    return send("POST", target_url, content_type, std::move(body), site);
  }

  // Any method; `content_type` is sent when not empty.
  response send(std::string method, std::string_view target_url, std::string_view content_type,
                std::string body, source_location site = source_location::current()) {
    const request req = make_request(std::move(method), target_url, content_type, std::move(body));
    return transport_->round_trip(req, site);
  }

  // get, post and send for a coroutine task: co_await them. The URL is
  // copied at the call; a malformed one throws when awaited.
  coro<response> async_get(std::string_view target_url,
                           source_location site = source_location::current()) {
    return async_send("GET", target_url, {}, {}, site);
  }
  coro<response> async_post(std::string_view target_url, std::string_view content_type,
                            std::string body, source_location site = source_location::current()) {
    return async_send("POST", target_url, content_type, std::move(body), site);
  }
  coro<response> async_send(std::string method, std::string_view target_url,
                            std::string_view content_type, std::string body,
                            source_location site = source_location::current()) {
    return send_coro(transport_, std::move(method), std::string(target_url),
                     std::string(content_type), std::move(body), site);
  }

 private:
  static request make_request(std::string method, std::string_view target_url,
                              std::string_view content_type, std::string body) {
    url u = url::parse(target_url);
    request req{
        std::move(u.host), u.port, {std::move(method), std::move(u.target)}, std::move(body)};
    if (!content_type.empty()) req.head.headers.add("Content-Type", content_type);
    return req;
  }

  // Owns copies of its arguments: the caller's views may be gone by the time
  // the coro is awaited.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER static coro<response> send_coro(
      transport* t, std::string method, std::string target_url, std::string content_type,
      std::string body, source_location site) {
    const request req = make_request(std::move(method), target_url, content_type, std::move(body));
    co_return co_await t->async_round_trip(req, site);
  }

  transport* transport_;
};

}  // namespace leash::inline v0::http
