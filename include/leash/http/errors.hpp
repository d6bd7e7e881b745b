// SPDX-License-Identifier: BSL-1.0
// leash/http/errors.hpp: the exceptions of leash's HTTP example.
//
// Prevents: Go's "unexpected EOF" / "malformed HTTP response" strings that a
// caller can only match by text. Each failure here is a type, and a protocol
// failure carries a machine-readable reason:
//
//   try {
//     parser.feed(bytes);
//   } catch (const leash::http::protocol_error& e) {
//     if (e.reason() == leash::http::reason::content_length_with_transfer_encoding) ...
//     std::puts(e.what());  // "leash::http: protocol error: ..."
//   } catch (const leash::http::limit_exceeded& e) {
//     e.which();  // limit::header_bytes, limit::header_fields, ...
//   }
//
// Guarantees. Every type derives from http::error, itself a leash::error, and
// every message starts with "leash::http: ". Cancellation is never one of
// these: a cancelled round trip throws leash::cancelled (or deadline_exceeded).
#pragma once

#include "../detail/config.hpp"

#include <cstddef>
#include <string>
#include <system_error>

#include "../errors.hpp"

namespace leash::inline v0::http {

// Base of every exception thrown by leash::http.
class error : public leash::error {
 public:
  using leash::error::error;
};

// Why a message was refused: by the response parser (the peer broke RFC 9112)
// or by the request writer (the caller's request would break it).
enum class reason : unsigned char {
  // Status line.
  bad_version,                     // not "HTTP/1.x"
  bad_status_line,                 // malformed status line, or bytes that are not one
  bad_status_code,                 // not three digits in 100..599
  unexpected_switching_protocols,  // 101 to a request that asked for no upgrade
  // Line endings.
  bare_cr,  // a CR not followed by LF
  bare_lf,  // a LF not preceded by CR
  // Field lines (headers and trailers).
  whitespace_before_first_field,  // a line starting with SP/HTAB right after the start line
  whitespace_before_colon,        // "Name : value"
  missing_colon,                  // a field line without ':'
  bad_field_name,                 // empty, or not a token
  bad_field_value,                // NUL, CR, LF or another CTL in a value
  folded_framing_field,           // obs-fold in Content-Length or Transfer-Encoding
  // Framing.
  content_length_with_transfer_encoding,
  bad_content_length,           // sign, garbage, empty element
  content_length_overflow,      // more than 2^63 - 1
  conflicting_content_length,   // duplicates with different values
  unsupported_transfer_coding,  // anything but a single "chunked"
  transfer_encoding_in_http10,
  // Chunked body.
  bad_chunk_size,            // empty or not hexadecimal
  chunk_size_overflow,       // more than 2^63 - 1
  bad_chunk_extension,       // malformed "; name=value" after the size
  chunk_line_too_long,       // a chunk-size line over 4096 bytes
  excessive_chunk_overhead,  // far more framing bytes than data (Go's rule)
  bad_chunk_terminator,      // chunk data not followed by CRLF
  // End of input.
  eof_before_response,  // the connection ended before any byte of the response
  truncated_head,       // ended inside the status line or header section
  truncated_body,       // ended before the framing said the body ends
  // Request writer only.
  bad_method,            // not a token
  bad_target,            // empty, or SP, CTL or non-ASCII byte in it
  bad_host,              // SP, CTL, '/' or '@' in the Host value
  duplicate_host,        // more than one Host field
  body_length_mismatch,  // a user Content-Length that differs from the body
};

// A short English description of r, e.g. "bare CR in a line".
constexpr const char* to_string(reason r) noexcept {
  switch (r) {
    case reason::bad_version:
      return "bad HTTP version";
    case reason::bad_status_line:
      return "malformed status line";
    case reason::bad_status_code:
      return "bad status code";
    case reason::unexpected_switching_protocols:
      return "unexpected 101 Switching Protocols";
    case reason::bare_cr:
      return "bare CR in a line";
    case reason::bare_lf:
      return "bare LF line ending";
    case reason::whitespace_before_first_field:
      return "whitespace before the first field line";
    case reason::whitespace_before_colon:
      return "whitespace between field name and colon";
    case reason::missing_colon:
      return "field line without a colon";
    case reason::bad_field_name:
      return "field name is not a token";
    case reason::bad_field_value:
      return "NUL, CR, LF or control character in a field value";
    case reason::folded_framing_field:
      return "obs-fold in Content-Length or Transfer-Encoding";
    case reason::content_length_with_transfer_encoding:
      return "both Content-Length and Transfer-Encoding";
    case reason::bad_content_length:
      return "malformed Content-Length";
    case reason::content_length_overflow:
      return "Content-Length too large";
    case reason::conflicting_content_length:
      return "conflicting Content-Length values";
    case reason::unsupported_transfer_coding:
      return "Transfer-Encoding other than chunked";
    case reason::transfer_encoding_in_http10:
      return "Transfer-Encoding in an HTTP/1.0 message";
    case reason::bad_chunk_size:
      return "malformed chunk size";
    case reason::chunk_size_overflow:
      return "chunk size too large";
    case reason::bad_chunk_extension:
      return "malformed chunk extension";
    case reason::chunk_line_too_long:
      return "chunk-size line too long";
    case reason::excessive_chunk_overhead:
      return "too much chunk framing for too little data";
    case reason::bad_chunk_terminator:
      return "chunk data not followed by CRLF";
    case reason::eof_before_response:
      return "connection closed before any response byte";
    case reason::truncated_head:
      return "connection closed inside the response head";
    case reason::truncated_body:
      return "connection closed inside the response body";
    case reason::bad_method:
      return "method is not a token";
    case reason::bad_target:
      return "request target is empty or has SP, CTL or non-ASCII bytes";
    case reason::bad_host:
      return "bad Host value";
    case reason::duplicate_host:
      return "more than one Host field";
    case reason::body_length_mismatch:
      return "Content-Length differs from the body length";
  }
  return "?";
}

// The peer sent bytes that are not a valid HTTP/1.1 response (RFC 9112). The
// connection they came on must be closed, never reused.
class protocol_error : public error {
 public:
  explicit protocol_error(http::reason r, const std::string& detail = {})
      : error(describe("protocol error", r, detail)), reason_(r) {}

  // Which rule the message broke.
  http::reason reason() const noexcept { return reason_; }

 protected:
  static std::string describe(const char* what, http::reason r, const std::string& detail) {
    std::string s = std::string("leash::http: ") + what + ": " + to_string(r);
    if (!detail.empty()) s += " (" + detail + ")";
    return s;
  }

 private:
  http::reason reason_;
};

// The caller's request cannot be sent as HTTP/1.1 without breaking the
// protocol (a header-injection attempt, a target with spaces...). Thrown
// before a single byte is written.
class invalid_request : public error {
 public:
  explicit invalid_request(http::reason r, const std::string& detail = {})
      : error(describe(r, detail)), reason_(r) {}

  // Which rule the request broke.
  http::reason reason() const noexcept { return reason_; }

 private:
  static std::string describe(http::reason r, const std::string& detail) {
    std::string s = std::string("leash::http: invalid request: ") + to_string(r);
    if (!detail.empty()) s += " (" + detail + ")";
    return s;
  }

  http::reason reason_;
};

// The limits a peer can run into.
enum class limit : unsigned char {
  header_bytes,       // bytes of one response head (or trailer section)
  header_fields,      // field lines in one response head (or trailer section)
  interim_responses,  // 1xx responses before the final one
};

// A short English name of l, e.g. "response header bytes".
constexpr const char* to_string(limit l) noexcept {
  switch (l) {
    case limit::header_bytes:
      return "response header bytes";
    case limit::header_fields:
      return "response header fields";
    case limit::interim_responses:
      return "interim (1xx) responses";
  }
  return "?";
}

// The peer sent more than a configured limit allows.
class limit_exceeded : public error {
 public:
  limit_exceeded(http::limit which, std::size_t max)
      : error(std::string("leash::http: limit exceeded: more than ") + std::to_string(max) + " " +
              to_string(which)),
        which_(which),
        max_(max) {}

  // Which limit was exceeded.
  http::limit which() const noexcept { return which_; }
  // The configured limit that was exceeded.
  std::size_t max() const noexcept { return max_; }

 private:
  http::limit which_;
  std::size_t max_;
};

// A timeout of the HTTP layer itself (dial, response header, drain), as
// opposed to a caller's deadline, which throws leash::deadline_exceeded.
class timeout : public error {
 public:
  explicit timeout(const std::string& what) : error("leash::http: timeout: " + what) {}
};

// A socket call failed; code() is the errno value it failed with.
class io_error : public error {
 public:
  io_error(const std::string& what, std::error_code code)
      : error("leash::http: I/O error: " + what + ": " + code.message()), code_(code) {}

  std::error_code code() const noexcept { return code_; }

 private:
  std::error_code code_;
};

}  // namespace leash::inline v0::http
