// SPDX-License-Identifier: BSL-1.0
// leash/http/detail/request_parser.hpp: the server's strict request-head parser.
//
// Parses one whole request head (request line, field lines, through the
// empty line) that the server already found in its buffer. Strict in the
// same ways as the response parser (docs/design.md, "HTTP parser
// strictness"), with the character tables of detail/chars.hpp; and refuses
// obs-fold, which RFC 9112 5.2 lets a server reject (400). The rules that
// keep one request from being read as two (RFC 9112 3.2, 6.1): an HTTP/1.1
// request has exactly one Host, any request at most one, and its value is a
// valid uri-host[:port]; Transfer-Encoding on HTTP/1.0 is faulty framing
// (400, then close); an absolute-form target is http(s) with a valid
// authority and no userinfo.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "../errors.hpp"
#include "../message.hpp"
#include "chars.hpp"

namespace leash::inline v0::http::detail {

struct parsed_request {
  std::string_view method;
  std::string_view target;
  http::version version;
  fields headers;
  std::uint64_t content_length = 0;
  bool chunked = false;
  bool keep_alive = true;
};

// An absolute-form request target "scheme://authority[path][?query]" split
// for a server that answers in origin-form (RFC 9112 3.2.2).
struct absolute_target {
  std::string_view scheme;
  std::string_view authority;  // the effective Host; never empty once parsed
  std::string origin;          // path and query, "/" when the path is empty
};

// The parts of `target` when it is absolute-form (a scheme followed by
// "://"); nullopt for origin-form, "*" and authority-form. Checks nothing
// beyond the shape; parse_request_head checks scheme and authority.
inline std::optional<absolute_target> split_absolute_form(std::string_view target) {
  const std::size_t colon = target.find("://");
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  const std::string_view scheme = target.substr(0, colon);
  const auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (!alpha(scheme.front())) return std::nullopt;
  for (char c : scheme) {
    if (!alpha(c) && !is_digit(c) && c != '+' && c != '-' && c != '.') return std::nullopt;
  }
  const std::string_view rest = target.substr(colon + 3);
  const std::size_t end = rest.find_first_of("/?#");
  absolute_target out{scheme, rest.substr(0, end), {}};
  const std::string_view tail = end == std::string_view::npos ? "" : rest.substr(end);
  out.origin = (tail.empty() || tail.front() != '/') ? "/" + std::string(tail) : std::string(tail);
  return out;
}

// Throws bad_target unless an absolute-form `target` is http or https with a
// non-empty valid authority (RFC 9110 4.2.1: an empty host is invalid;
// 4.2.4: userinfo is an error, and '@' is no host character).
inline void check_absolute_form(std::string_view target) {
  const auto t = split_absolute_form(target);
  if (!t) return;
  if (!iequals(t->scheme, "http") && !iequals(t->scheme, "https")) {
    throw protocol_error(reason::bad_target, "absolute-form scheme other than http(s)");
  }
  if (t->authority.empty() || !valid_host(t->authority)) {
    throw protocol_error(reason::bad_target, "absolute-form authority");
  }
}

// `head` ends with CRLF CRLF. Throws protocol_error or limit_exceeded.
inline void parse_request_head(std::string_view head, std::size_t max_fields, parsed_request& out) {
  bool first = true;
  bool content_length = false;
  bool close = false;
  bool keep_alive = false;
  std::size_t te_fields = 0;
  std::size_t hosts = 0;
  std::string_view te;
  while (!head.empty()) {
    const std::size_t lf = head.find('\n');
    if (lf == 0 || head[lf - 1] != '\r') throw protocol_error(reason::bare_lf);
    std::string_view line = head.substr(0, lf - 1);
    head.remove_prefix(lf + 1);
    if (line.find('\r') != std::string_view::npos) throw protocol_error(reason::bare_cr);
    if (first) {  // method SP request-target SP HTTP-version
      first = false;
      const std::size_t sp1 = line.find(' ');
      const std::size_t sp2 = line.find(' ', sp1 == line.npos ? line.size() : sp1 + 1);
      if (sp2 == line.npos) throw protocol_error(reason::bad_status_line, "request line");
      out.method = line.substr(0, sp1);
      out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
      const std::string_view v = line.substr(sp2 + 1);
      if (!is_token(out.method)) throw protocol_error(reason::bad_method);
      if (out.target.empty()) throw protocol_error(reason::bad_target);
      for (char c : out.target) {
        if (!is(c, target_char)) throw protocol_error(reason::bad_target);
      }
      check_absolute_form(out.target);
      if (v.size() != 8 || v.substr(0, 7) != "HTTP/1." || !is_digit(v[7])) {
        throw protocol_error(reason::bad_version);
      }
      out.version = {1, v[7] - '0'};
      continue;
    }
    if (line.empty()) break;
    if (is_ows(line.front())) throw protocol_error(reason::whitespace_before_first_field);
    std::size_t colon = 0;
    while (colon < line.size() && is(line[colon], tchar))
      ++colon;
    if (colon == line.size()) throw protocol_error(reason::missing_colon);
    if (line[colon] != ':') {
      throw protocol_error(is_ows(line[colon]) ? reason::whitespace_before_colon
                                               : reason::bad_field_name);
    }
    if (colon == 0) throw protocol_error(reason::bad_field_name);
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trim_ows(line.substr(colon + 1));
    if (!valid_field_value(value)) throw protocol_error(reason::bad_field_value);
    if (out.headers.size() >= max_fields) throw limit_exceeded(limit::header_fields, max_fields);
    out.headers.add(name, value);
    if (iequals(name, "content-length")) {
      for_each_list_element(value, [&](std::string_view e) {
        std::uint64_t n = 0;
        if (parse_decimal(e, n) != number_status::ok)
          throw protocol_error(reason::bad_content_length);
        if (content_length && n != out.content_length) {
          throw protocol_error(reason::conflicting_content_length);
        }
        content_length = true;
        out.content_length = n;
      });
    } else if (iequals(name, "transfer-encoding")) {
      ++te_fields;
      te = value;
    } else if (iequals(name, "host")) {
      if (++hosts > 1) throw protocol_error(reason::duplicate_host);
      if (!valid_host(value)) throw protocol_error(reason::bad_host, std::string(value));
    } else if (iequals(name, "connection")) {
      for_each_list_element(value, [&](std::string_view opt) {
        close = close || iequals(opt, "close");
        keep_alive = keep_alive || iequals(opt, "keep-alive");
      });
    }
  }
  // RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host.
  if (hosts == 0 && out.version.minor != 0) {
    throw protocol_error(reason::bad_host, "no Host field in an HTTP/1.1 request");
  }
  // RFC 9112 6.1: Transfer-Encoding on HTTP/1.0 is faulty framing; the
  // server answers 400 and closes instead of guessing where the body ends.
  if (te_fields > 0 && out.version.minor == 0)
    throw protocol_error(reason::transfer_encoding_in_http10);
  if (te_fields > 0 && content_length) {
    throw protocol_error(reason::content_length_with_transfer_encoding);
  }
  if (te_fields > 1 || (te_fields == 1 && !iequals(te, "chunked"))) {
    throw protocol_error(reason::unsupported_transfer_coding);
  }
  out.chunked = te_fields == 1;
  out.keep_alive = out.version.minor == 0 ? keep_alive && !close : !close;
}

}  // namespace leash::inline v0::http::detail
