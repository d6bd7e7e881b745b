// SPDX-License-Identifier: BSL-1.0
// leash/http/request_writer.hpp: serialises an HTTP/1.1 request, refusing
// any request that could not be sent as written.
//
// Prevents: header injection and request smuggling through the client: a
// value carrying "\r\n" adds a header or a whole second request, a target or
// method with a space moves the end of the request line (Go's Transport
// refuses such values through httpguts.ValidHeaderFieldValue). The whole
// request is checked before the first byte is appended:
//
//   leash::http::request_head req{"POST", "/upload"};
//   req.headers.add("Content-Type", "text/plain");
//   std::string wire;
//   leash::http::write_request(wire, req, "example.com:8080", "hello");
//   // "POST /upload HTTP/1.1\r\nHost: example.com:8080\r\n"
//   // "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
//
//   // A body streamed in chunks:
//   leash::http::write_request_head(wire, req, host, leash::http::request_body::chunked());
//   leash::http::write_chunk(wire, piece);  // repeat
//   leash::http::write_last_chunk(wire);
//
// Guarantees. Never blocks; only appends to the given string. Throws
// invalid_request (with a reason()) before appending anything: on a method
// that is not a token; an empty target or one with SP, CTL or non-ASCII
// bytes; a field name that is not a token; a field value with CR, LF, NUL or
// another CTL; a Host with SP, CTL, '/' or '@', or two Host fields; a
// Content-Length together with Transfer-Encoding; a Transfer-Encoding other
// than "chunked"; a Content-Length that is not the body's length. Adds Host
// when missing. Thread-safe as far as its arguments are not shared.
#pragma once

#include "../detail/config.hpp"

#include <cstdint>
#include <string>
#include <string_view>

#include "detail/chars.hpp"
#include "errors.hpp"
#include "message.hpp"

namespace leash::inline v0::http {

// How a request's body goes on the wire.
struct request_body {
  enum class kind : unsigned char {
    none,     // no body
    length,   // exactly `length` bytes, announced by Content-Length
    chunked,  // Transfer-Encoding: chunked; the caller writes chunks and the last chunk
  };
  kind mode = kind::none;
  std::uint64_t length = 0;

  static constexpr request_body none() noexcept { return {}; }
  static constexpr request_body of_length(std::uint64_t n) noexcept { return {kind::length, n}; }
  static constexpr request_body chunked() noexcept { return {kind::chunked, 0}; }
};

namespace detail {

// What the caller's own framing fields say, once checked against `body`.
struct user_framing {
  bool content_length = false;
  bool transfer_encoding = false;
};

inline user_framing check_request(const request_head& req, std::string_view host,
                                  request_body body) {
  if (!is_token(req.method)) throw invalid_request(reason::bad_method, req.method);
  if (req.target.empty()) throw invalid_request(reason::bad_target, "empty");
  for (char c : req.target) {
    if (!is(c, target_char)) throw invalid_request(reason::bad_target, req.target);
  }
  user_framing user;
  std::size_t hosts = 0;
  std::uint64_t declared = 0;
  for (fields::field f : req.headers) {
    if (!is_token(f.name)) throw invalid_request(reason::bad_field_name, std::string(f.name));
    if (!valid_field_value(f.value)) {
      throw invalid_request(reason::bad_field_value, std::string(f.name));
    }
    if (iequals(f.name, "host")) {
      ++hosts;
      host = f.value;
    } else if (iequals(f.name, "transfer-encoding")) {
      if (user.transfer_encoding || !iequals(trim_ows(f.value), "chunked")) {
        throw invalid_request(reason::unsupported_transfer_coding, std::string(f.value));
      }
      user.transfer_encoding = true;
    } else if (iequals(f.name, "content-length")) {
      std::uint64_t v = 0;
      if (parse_decimal(trim_ows(f.value), v) != number_status::ok) {
        throw invalid_request(reason::bad_content_length, std::string(f.value));
      }
      if (user.content_length && v != declared) {
        throw invalid_request(reason::conflicting_content_length);
      }
      user.content_length = true;
      declared = v;
    }
  }
  if (hosts > 1) throw invalid_request(reason::duplicate_host);
  for (char c : host) {
    if (!is(c, target_char) || c == '/' || c == '@' || c == '?' || c == '#') {
      throw invalid_request(reason::bad_host, std::string(host));
    }
  }
  if (user.content_length && user.transfer_encoding) {
    throw invalid_request(reason::content_length_with_transfer_encoding);
  }
  switch (body.mode) {
    case request_body::kind::none:
      if (user.transfer_encoding || (user.content_length && declared != 0)) {
        throw invalid_request(reason::body_length_mismatch, "the request has no body");
      }
      break;
    case request_body::kind::length:
      if (user.transfer_encoding) {
        throw invalid_request(reason::body_length_mismatch,
                              "Transfer-Encoding set, but the body has a fixed length");
      }
      if (user.content_length && declared != body.length) {
        throw invalid_request(reason::body_length_mismatch,
                              std::to_string(declared) + " declared, " +
                                  std::to_string(body.length) + " in the body");
      }
      break;
    case request_body::kind::chunked:
      if (user.content_length) throw invalid_request(reason::content_length_with_transfer_encoding);
      break;
  }
  return user;
}

// POST, PUT and PATCH announce an empty body (as Go does), so that a server
// does not wait for one or answer 411 Length Required.
inline bool expects_body(std::string_view method) noexcept {
  return method == "POST" || method == "PUT" || method == "PATCH";
}

}  // namespace detail

// Throws invalid_request if `req` (with `host` as its Host unless it has a
// Host field, and framed as `body`) cannot be sent; does nothing otherwise.
inline void validate_request(const request_head& req, std::string_view host,
                             request_body body = request_body::none()) {
  (void)detail::check_request(req, host, body);
}

// Validates, then appends the request line and header section to `out`: Host
// first (unless the headers have one), the caller's fields in order, then
// Content-Length or Transfer-Encoding for `body` unless the caller set them.
// The body itself is the caller's to append. Throws invalid_request, with
// `out` unchanged.
inline void write_request_head(std::string& out, const request_head& req, std::string_view host,
                               request_body body = request_body::none()) {
  const detail::user_framing user = detail::check_request(req, host, body);
  out.append(req.method).append(" ").append(req.target).append(" HTTP/1.1\r\n");
  if (!req.headers.contains("host")) out.append("Host: ").append(host).append("\r\n");
  for (fields::field f : req.headers)
    out.append(f.name).append(": ").append(f.value).append("\r\n");
  switch (body.mode) {
    case request_body::kind::none:
      if (!user.content_length && detail::expects_body(req.method)) {
        out.append("Content-Length: 0\r\n");
      }
      break;
    case request_body::kind::length:
      if (!user.content_length) {
        out.append("Content-Length: ").append(std::to_string(body.length)).append("\r\n");
      }
      break;
    case request_body::kind::chunked:
      if (!user.transfer_encoding) out.append("Transfer-Encoding: chunked\r\n");
      break;
  }
  out.append("\r\n");
}

// Appends one chunk of a chunked body. An empty `data` appends nothing (an
// empty chunk would end the body).
inline void write_chunk(std::string& out, std::string_view data) {
  if (data.empty()) return;
  constexpr char digits[] = "0123456789abcdef";
  char hex[16];
  int n = 0;
  for (std::size_t v = data.size(); v != 0; v >>= 4)
    hex[n++] = digits[v & 0xf];
  while (n > 0)
    out.push_back(hex[--n]);
  out.append("\r\n").append(data).append("\r\n");
}

// Appends the last chunk and the (empty) trailer section: the body ends.
inline void write_last_chunk(std::string& out) {
  out.append("0\r\n\r\n");
}

// Validates, then appends a whole request with `body`: framed by
// Content-Length, or chunked when the caller set "Transfer-Encoding:
// chunked". An empty body gets no Content-Length except on POST, PUT and
// PATCH. Throws invalid_request, with `out` unchanged.
inline void write_request(std::string& out, const request_head& req, std::string_view host,
                          std::string_view body = {}) {
  if (req.headers.contains("transfer-encoding")) {
    write_request_head(out, req, host, request_body::chunked());
    write_chunk(out, body);
    write_last_chunk(out);
    return;
  }
  write_request_head(out, req, host,
                     body.empty() ? request_body::none() : request_body::of_length(body.size()));
  out.append(body);
}

}  // namespace leash::inline v0::http
