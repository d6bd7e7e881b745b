// SPDX-License-Identifier: BSL-1.0
// leash/http/response_parser.hpp: a strict, incremental HTTP/1.1 response parser.
//
// Prevents: response splitting and request smuggling through lenient framing
// (CL beside TE, two different CLs, bare LF, "Name : value" — Go's net/http
// patched these one by one, e.g. CVE-2019-16276), and parsers whose answer
// depends on how the bytes happened to be split by TCP.
// The same bytes give the same result whether they arrive whole, one at a
// time or split anywhere. Feed it what the socket returned; it says what
// happened and how much of the input it used:
//
//   leash::http::response_parser p;
//   p.reset("GET");  // the method of the request this response answers
//   while (!p.complete()) {
//     std::span<const char> in = read_some(sock, buf);  // empty at EOF
//     if (in.empty()) { p.finish_eof(); break; }       // throws if truncated
//     while (!in.empty() && !p.complete()) {
//       auto step = p.feed(in);
//       in = in.subspan(step.consumed);
//       if (step.event == leash::http::parse_event::head) use(p.head());
//       if (step.event == leash::http::parse_event::body) sink(step.body);
//     }
//     // bytes left in `in` here follow the message: the connection is unusable.
//   }
//   bool reuse = p.keep_alive() && nothing_else_buffered;
//
// Guarantees. Never blocks, never reads past the end of the message: feed()
// consumes at most up to the last byte of the response. Body bytes are never
// copied: a body event is a span inside the input. The head is copied once
// into the parser's own buffers, which reset() keeps for the next message, so
// a keep-alive connection parses without allocating. Throws protocol_error
// (with a reason()) or limit_exceeded; after a throw the parser stays failed
// and rethrows until reset(). Not thread-safe: one parser per connection.
#pragma once

#include "../detail/config.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "detail/chars.hpp"
#include "errors.hpp"
#include "message.hpp"

namespace leash::inline v0::http {

// What one response may cost before the parser gives up.
struct parser_limits {
  std::size_t max_header_bytes = 64 * 1024;  // one head: status line, fields, final CRLF
  std::size_t max_header_fields = 100;       // field lines in one head (folds not counted)
  std::size_t max_interim_responses = 5;     // 1xx responses skipped before the final one
};

// How the body of the current response is delimited (known after the head).
enum class body_framing : unsigned char {
  none,            // no body: HEAD, 1xx, 204, 304, or Content-Length: 0
  content_length,  // exactly content_length() bytes
  chunked,         // Transfer-Encoding: chunked
  until_close,     // everything until the peer closes; the connection dies with it
};

// What a call to feed() produced.
enum class parse_event : unsigned char {
  need_more,  // all the input was used (some kept for a partial line); feed more
  head,       // the final response's head is complete: head() is valid
  body,       // step.body holds the next body bytes
  complete,   // the response is complete; feed() will consume nothing more
};

struct parse_step {
  parse_event event = parse_event::need_more;
  std::size_t consumed = 0;    // bytes of the input used, from its start
  std::span<const char> body;  // event == body: the bytes, inside the input
};

// Parses one response at a time on a connection; reset() between responses.
//
// State table:    awaiting head --head--> in body --complete--> complete
//                       |  \__ 1xx: skipped, back to awaiting head   |
//                       +------------ (no body) -------------------->+
//   Any state --bad input--> failed (rethrows until reset()).
class response_parser {
 public:
  explicit response_parser(parser_limits limits = {}) : limits_(limits) {}

  // Prepares for the response to a request with `request_method` (a response
  // to HEAD has no body whatever its fields say). Keeps allocated memory.
  void reset(std::string_view request_method = "GET") {
    state_ = state::status_line;
    failure_ = nullptr;
    head_request_ = request_method == "HEAD";
    started_ = false;
    head_done_ = false;
    keep_alive_ = false;
    framing_ = body_framing::none;
    content_length_.reset();
    summary_ = {};
    remaining_ = 0;
    head_bytes_ = 0;
    chunk_overhead_ = 0;
    interim_ = 0;
    line_.clear();
    head_.version = {};
    head_.status = 0;
    head_.reason.clear();
    head_.headers.clear();
    trailers_.clear();
  }

  // Prepares to parse a body alone, framed as `framing` (content_length:
  // `length` bytes). The server reads request bodies with it: chunked framing,
  // its limits and its trailers are the same in both directions. Keeps memory.
  void reset_to_body(body_framing framing, std::uint64_t length = 0) {
    reset();
    started_ = true;
    head_done_ = true;
    keep_alive_ = true;
    framing_ =
        length == 0 && framing == body_framing::content_length ? body_framing::none : framing;
    if (framing_ == body_framing::content_length) content_length_ = length;
    enter_body();
  }

  // Consumes a prefix of `input` and reports one event (see parse_event).
  // Returns need_more only after using all of the input. Never consumes a
  // byte past the end of the response. Throws protocol_error or
  // limit_exceeded.
  [[nodiscard]] parse_step feed(std::span<const char> input) {
    if (state_ == state::failed) std::rethrow_exception(failure_);
    try {
      return feed_some(input);
    } catch (...) {
      state_ = state::failed;
      failure_ = std::current_exception();
      throw;
    }
  }

  // Tells the parser the peer closed the connection. Completes a body
  // delimited by close; throws protocol_error (eof_before_response,
  // truncated_head or truncated_body) for any other unfinished response.
  void finish_eof() {
    if (state_ == state::failed) std::rethrow_exception(failure_);
    reason r;
    switch (state_) {
      case state::complete:
        return;
      case state::body_until_close:
        state_ = state::complete;
        return;
      case state::status_line:
        r = started_ ? reason::truncated_head : reason::eof_before_response;
        break;
      case state::field_line:
        r = reason::truncated_head;
        break;
      default:
        r = reason::truncated_body;
        break;
    }
    state_ = state::failed;
    failure_ = std::make_exception_ptr(protocol_error(r));
    std::rethrow_exception(failure_);
  }

  // True once any byte of this response (an interim one included) was fed.
  bool started() const noexcept { return started_; }
  // True once the final head was parsed (head(), framing() and keep_alive() are valid).
  bool head_complete() const noexcept { return head_done_; }
  // True once the whole response, trailers included, was consumed.
  bool complete() const noexcept { return state_ == state::complete; }
  // True after feed() or finish_eof() threw.
  bool failed() const noexcept { return state_ == state::failed; }

  // The final (non-1xx) response's status line and fields, after the head event.
  const response_head& head() const noexcept { return head_; }
  // Trailer fields of a chunked body, after complete. They never frame the message.
  const fields& trailers() const noexcept { return trailers_; }
  // How the body is delimited, after the head event.
  body_framing framing() const noexcept { return framing_; }
  // The Content-Length the response declared, if any (also for HEAD and 304).
  std::optional<std::uint64_t> content_length() const noexcept { return content_length_; }
  // Body bytes still expected: of the whole body (content_length) or of the
  // current chunk (chunked); 0 otherwise.
  std::uint64_t body_remaining() const noexcept { return remaining_; }
  // Whether the connection may carry another request once this response is
  // complete: HTTP/1.1 unless "Connection: close", HTTP/1.0 only with
  // "Connection: keep-alive", never with a body delimited by close. Valid
  // after the head event. The caller must also check nothing follows it.
  bool keep_alive() const noexcept { return keep_alive_; }
  // How many 1xx responses were skipped before the final one.
  std::size_t interim_responses() const noexcept { return interim_; }

  static constexpr std::size_t max_chunk_line = 4096;         // bytes, CRLF included (Go's)
  static constexpr std::uint64_t max_chunk_overhead = 16384;  // Go's excess budget

 private:
  enum class state : unsigned char {
    status_line,
    field_line,
    body_length,
    body_until_close,
    chunk_size,
    chunk_data,
    chunk_data_cr,
    chunk_data_lf,
    trailer_line,
    complete,
    failed,
  };
  enum class line_status : unsigned char { line, partial, too_long };

  parse_step feed_some(std::span<const char> in) {
    const char* data = in.data();
    const std::size_t n = in.size();
    std::size_t pos = 0;
    for (;;) {
      switch (state_) {
        case state::status_line:
        case state::field_line:
        case state::trailer_line: {
          if (n > pos) started_ = true;
          std::string_view line;
          const std::size_t budget = limits_.max_header_bytes - head_bytes_;
          const line_status st = next_line(data, n, pos, budget, line);
          if (st == line_status::partial) return {parse_event::need_more, n, {}};
          if (st == line_status::too_long) {
            throw limit_exceeded(limit::header_bytes, limits_.max_header_bytes);
          }
          head_bytes_ += line.size() + 1;
          const bool head_done = on_head_line(strip_cr(line));
          line_.clear();
          if (state_ == state::complete && !head_done) return {parse_event::complete, pos, {}};
          if (head_done) return {parse_event::head, pos, {}};
          break;
        }
        case state::body_length:
        case state::chunk_data: {
          if (pos == n) return {parse_event::need_more, n, {}};
          const std::size_t take =
              static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, n - pos));
          const std::span<const char> body = in.subspan(pos, take);
          pos += take;
          remaining_ -= take;
          if (remaining_ == 0) {
            state_ = state_ == state::body_length ? state::complete : state::chunk_data_cr;
          }
          return {parse_event::body, pos, body};
        }
        case state::body_until_close:
          if (pos == n) return {parse_event::need_more, n, {}};
          return {parse_event::body, n, in.subspan(pos)};
        case state::chunk_size: {
          std::string_view line;
          const line_status st = next_line(data, n, pos, max_chunk_line, line);
          if (st == line_status::partial) return {parse_event::need_more, n, {}};
          if (st == line_status::too_long) throw protocol_error(reason::chunk_line_too_long);
          on_chunk_line(line);
          line_.clear();
          break;
        }
        case state::chunk_data_cr:
        case state::chunk_data_lf: {
          if (pos == n) return {parse_event::need_more, n, {}};
          const bool cr = state_ == state::chunk_data_cr;
          if (data[pos] != (cr ? '\r' : '\n')) throw protocol_error(reason::bad_chunk_terminator);
          ++pos;
          state_ = cr ? state::chunk_data_lf : state::chunk_size;
          break;
        }
        case state::complete:
          return {parse_event::complete, pos, {}};
        case state::failed:
          std::rethrow_exception(failure_);
      }
    }
  }

  // Takes the next line (without its LF) from data[pos..n), or keeps the
  // partial line in line_ for the next call. A line may use `budget` bytes,
  // LF included; the check is the same whole or in pieces (a partial line of
  // k bytes already needs k + 1), so the result does not depend on the split.
  line_status next_line(const char* data, std::size_t n, std::size_t& pos, std::size_t budget,
                        std::string_view& line) {
    const std::size_t avail = n - pos;
    if (avail == 0) return line_status::partial;
    const char* start = data + pos;
    const void* lf = std::memchr(start, '\n', avail);
    if (lf == nullptr) {
      if (line_.size() + avail + 1 > budget) return line_status::too_long;
      line_.append(start, avail);
      pos = n;
      return line_status::partial;
    }
    const auto len = static_cast<std::size_t>(static_cast<const char*>(lf) - start);
    if (line_.size() + len + 1 > budget) return line_status::too_long;
    pos += len + 1;
    if (line_.empty()) {
      line = std::string_view(start, len);  // the common case: no copy
    } else {
      line_.append(start, len);
      line = line_;
    }
    return line_status::line;
  }

  // RFC 9112 2.2 lets a recipient accept a bare LF and replace a bare CR with
  // SP; both are refused here (docs/design.md, "HTTP parser strictness").
  static std::string_view strip_cr(std::string_view line) {
    if (line.empty() || line.back() != '\r') throw protocol_error(reason::bare_lf);
    line.remove_suffix(1);
    return line;
  }

  // A CR breaks the grammar of every kind of line (status, field, chunk), so
  // it is looked for only when a line failed to parse, and then reported
  // instead: the result is the same as checking for it first, without a
  // second scan of every good line.
  [[noreturn]] static void rethrow_line_error(std::string_view line) {
    if (line.find('\r') != std::string_view::npos) throw protocol_error(reason::bare_cr);
    throw;
  }

  // Handles a status, field or trailer line; true when the final head ended.
  bool on_head_line(std::string_view line) {
    try {
      return parse_head_line(line);
    } catch (const error&) {
      rethrow_line_error(line);
    }
  }

  bool parse_head_line(std::string_view line) {
    if (state_ == state::status_line) {
      parse_status_line(line);
      state_ = state::field_line;
      return false;
    }
    fields& target = state_ == state::trailer_line ? trailers_ : head_.headers;
    if (!line.empty()) {
      parse_field_line(line, target);
      return false;
    }
    if (state_ == state::trailer_line) {
      state_ = state::complete;
      return false;
    }
    return end_of_head();
  }

  void parse_status_line(std::string_view line) {
    // status-line = HTTP-version SP status-code SP [ reason-phrase ]
    if (line.substr(0, 5) != "HTTP/") throw protocol_error(reason::bad_status_line);
    if (line.size() < 8 || !detail::is_digit(line[5]) || line[6] != '.' ||
        !detail::is_digit(line[7]) || line[5] != '1') {
      throw protocol_error(reason::bad_version);
    }
    if (line.size() < 9 || line[8] != ' ') throw protocol_error(reason::bad_status_line);
    if (line.size() < 12 || !detail::is_digit(line[9]) || !detail::is_digit(line[10]) ||
        !detail::is_digit(line[11]) || (line.size() > 12 && detail::is_digit(line[12]))) {
      throw protocol_error(reason::bad_status_code);
    }
    const int status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    if (status < 100 || status > 599) throw protocol_error(reason::bad_status_code);
    std::string_view phrase;
    if (line.size() > 12) {  // "HTTP/1.1 200" without SP is accepted, as Go and llhttp do
      if (line[12] != ' ') throw protocol_error(reason::bad_status_line);
      phrase = line.substr(13);
      for (char c : phrase) {
        if (!detail::is(c, detail::reason_char)) throw protocol_error(reason::bad_status_line);
      }
    }
    head_.version = {1, line[7] - '0'};
    head_.status = status;
    head_.reason.assign(phrase);
  }

  void parse_field_line(std::string_view line, fields& out) {
    if (detail::is_ows(line.front())) {
      // obs-fold (RFC 9112 5.2): a user agent must replace it with SP.
      if (out.empty()) throw protocol_error(reason::whitespace_before_first_field);
      // A folded framing field is read one way by an unfolding parser and
      // another by one that keeps lines: refused (docs/design.md).
      if (&out == &head_.headers && is_framing_field(out[out.size() - 1].name)) {
        throw protocol_error(reason::folded_framing_field);
      }
      const std::string_view more = check_value(detail::trim_ows(line));
      if (!more.empty()) {
        if (!out[out.size() - 1].value.empty()) out.append_to_last_value(" ");
        out.append_to_last_value(more);
      }
      return;
    }
    std::size_t colon = 0;
    while (colon < line.size() && detail::is(line[colon], detail::tchar))
      ++colon;
    if (colon == 0 || colon == line.size() || line[colon] != ':') throw_field_name_error(line);
    const std::string_view value = check_value(detail::trim_ows(line.substr(colon + 1)));
    if (out.size() >= limits_.max_header_fields) {
      throw limit_exceeded(limit::header_fields, limits_.max_header_fields);
    }
    if (&out == &head_.headers && !out.empty()) classify(out.size() - 1);
    out.add(line.substr(0, colon), value);
  }

  static bool is_framing_field(std::string_view name) noexcept {
    return detail::iequals(name, "content-length") || detail::iequals(name, "transfer-encoding");
  }

  // The name did not end in ':' right after its last tchar: say why.
  [[noreturn]] static void throw_field_name_error(std::string_view line) {
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) throw protocol_error(reason::missing_colon);
    if (colon > 0 && detail::is_ows(line[colon - 1])) {
      throw protocol_error(reason::whitespace_before_colon);
    }
    throw protocol_error(reason::bad_field_name);
  }

  // Notes what a head field (complete, folds included) says about framing,
  // so the end of the head needs no second pass over the fields. A bad
  // Content-Length is remembered, not thrown, so that the checks at the end
  // of the head keep their order (TE on 1.0, then CL+TE, then TE, then CL).
  void classify(std::size_t index) {
    const fields::field f = head_.headers[index];
    switch (f.name.size()) {
      case 10:
        if (!detail::iequals(f.name, "connection")) return;
        detail::for_each_list_element(f.value, [&](std::string_view opt) {
          summary_.close = summary_.close || detail::iequals(opt, "close");
          summary_.keep_alive = summary_.keep_alive || detail::iequals(opt, "keep-alive");
        });
        return;
      case 14:
        if (!detail::iequals(f.name, "content-length")) return;
        summary_.content_length = true;
        if (!summary_.cl_error) check_content_length(f.value);
        return;
      case 17:
        if (!detail::iequals(f.name, "transfer-encoding")) return;
        ++summary_.te_fields;
        summary_.te_index = index;
        return;
      default:
        return;
    }
  }

  // RFC 9110 5.5 lets a recipient keep CTLs other than NUL/CR/LF; refused here.
  static std::string_view check_value(std::string_view v) {
    if (!detail::valid_field_value(v)) throw protocol_error(reason::bad_field_value);
    return v;
  }

  // The empty line ended a head: skip a 1xx, or decide the framing.
  bool end_of_head() {
    const int status = head_.status;
    if (status < 200) {
      if (status == 101) throw protocol_error(reason::unexpected_switching_protocols);
      if (++interim_ > limits_.max_interim_responses) {
        throw limit_exceeded(limit::interim_responses, limits_.max_interim_responses);
      }
      head_.headers.clear();  // an interim head is checked for syntax, then dropped
      summary_ = {};
      content_length_.reset();
      head_bytes_ = 0;
      state_ = state::status_line;
      return false;
    }
    if (!head_.headers.empty()) classify(head_.headers.size() - 1);
    decide_framing();
    head_done_ = true;
    head_bytes_ = 0;  // trailers get their own budget
    return true;
  }

  void decide_framing() {
    const framing_summary& h = summary_;
    const std::string_view te = h.te_fields > 0 ? head_.headers[h.te_index].value : "";
    const bool http10 = head_.version.minor == 0;
    if (h.te_fields > 0 && http10) throw protocol_error(reason::transfer_encoding_in_http10);
    if (h.te_fields > 0 && h.content_length) {
      throw protocol_error(reason::content_length_with_transfer_encoding);
    }
    if (h.te_fields > 1 || (h.te_fields == 1 && !detail::iequals(te, "chunked"))) {
      throw protocol_error(reason::unsupported_transfer_coding, std::string(te));
    }
    if (h.cl_error) throw protocol_error(*h.cl_error, h.cl_detail);

    keep_alive_ = http10 ? h.keep_alive && !h.close : !h.close;
    const int status = head_.status;
    if (head_request_ || status == 204 || status == 304) {
      framing_ = body_framing::none;
    } else if (h.te_fields == 1) {
      framing_ = body_framing::chunked;
    } else if (content_length_) {
      framing_ = *content_length_ == 0 ? body_framing::none : body_framing::content_length;
    } else {
      framing_ = body_framing::until_close;
      keep_alive_ = false;
    }
    enter_body();
  }

  // The framing is decided: start reading the body it describes.
  void enter_body() {
    switch (framing_) {
      case body_framing::none:
        state_ = state::complete;
        break;
      case body_framing::content_length:
        remaining_ = *content_length_;
        state_ = state::body_length;
        break;
      case body_framing::chunked:
        state_ = state::chunk_size;
        break;
      case body_framing::until_close:
        state_ = state::body_until_close;
        break;
    }
  }

  // Every Content-Length field, and every element of a comma list in one,
  // must be the same valid decimal (RFC 9110 8.6 allows accepting "42, 42").
  // Records the first violation in summary_.
  void check_content_length(std::string_view value) {
    detail::for_each_list_element(value, [&](std::string_view e) {
      if (summary_.cl_error) return;
      std::uint64_t v = 0;
      switch (detail::parse_decimal(e, v)) {
        case detail::number_status::ok:
          if (content_length_ && *content_length_ != v) {
            summary_.cl_error = reason::conflicting_content_length;
          } else {
            content_length_ = v;
          }
          return;
        case detail::number_status::overflow:
          summary_.cl_error = reason::content_length_overflow;
          return;
        default:
          summary_.cl_error = reason::bad_content_length;
          summary_.cl_detail = std::string(value);
          return;
      }
    });
  }

  // chunk = chunk-size [ chunk-ext ] CRLF; the last chunk has size 0.
  void on_chunk_line(std::string_view line) {
    const std::size_t line_bytes = line.size() + 1;
    line = strip_cr(line);
    try {
      parse_chunk_line(line, line_bytes);
    } catch (const error&) {
      rethrow_line_error(line);
    }
  }

  void parse_chunk_line(std::string_view line, std::size_t line_bytes) {
    std::size_t i = 0;
    std::uint64_t size = 0;
    bool overflow = false;
    for (; i < line.size(); ++i) {
      const int d = detail::hex_value(line[i]);
      if (d < 0) break;
      if (size > (detail::max_length - static_cast<std::uint64_t>(d)) / 16) overflow = true;
      if (!overflow) size = size * 16 + static_cast<std::uint64_t>(d);
    }
    const std::string_view ext = line.substr(i);
    if (i == 0 || (!ext.empty() && ext[0] != ';' && !detail::is_ows(ext[0]))) {
      throw protocol_error(reason::bad_chunk_size);
    }
    if (overflow) throw protocol_error(reason::chunk_size_overflow);
    if (!valid_chunk_extensions(ext)) throw protocol_error(reason::bad_chunk_extension);

    // Go's rule (net/http/internal/chunked.go): 16 framing bytes per chunk
    // plus twice its data are free; beyond that, 16 KiB of excess is an
    // attack (tiny chunks with huge extensions), not a body.
    chunk_overhead_ += line_bytes + 2;
    const std::uint64_t allowance =
        size > detail::max_length / 2 ? detail::max_length : 16 + 2 * size;
    chunk_overhead_ -= std::min(chunk_overhead_, allowance);
    if (chunk_overhead_ > max_chunk_overhead)
      throw protocol_error(reason::excessive_chunk_overhead);

    remaining_ = size;
    state_ = size == 0 ? state::trailer_line : state::chunk_data;
  }

  // chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )
  static bool valid_chunk_extensions(std::string_view s) {
    const std::size_t n = s.size();
    std::size_t i = 0;
    auto skip_ows = [&](std::size_t& k) {
      while (k < n && detail::is_ows(s[k]))
        ++k;
    };
    auto token = [&](std::size_t& k) {
      const std::size_t start = k;
      while (k < n && detail::is(s[k], detail::tchar))
        ++k;
      return k > start;
    };
    while (i < n) {
      skip_ows(i);
      if (i == n || s[i] != ';') return false;
      ++i;
      skip_ows(i);
      if (!token(i)) return false;
      std::size_t j = i;
      skip_ows(j);
      if (j == n || s[j] != '=') continue;
      i = j + 1;
      skip_ows(i);
      if (i < n && s[i] == '"') {
        for (++i;; ++i) {
          if (i == n) return false;
          if (s[i] == '"') break;
          if (s[i] == '\\') {
            if (++i == n || !detail::is(s[i], detail::value_char)) return false;
          } else if (!detail::is(s[i], detail::qdtext)) {
            return false;
          }
        }
        ++i;
      } else if (!token(i)) {
        return false;
      }
    }
    return true;
  }

  // What the head's fields say about framing, gathered field by field.
  struct framing_summary {
    std::size_t te_fields = 0;
    std::size_t te_index = 0;  // of the last Transfer-Encoding field
    bool content_length = false;
    std::optional<reason> cl_error;  // the first bad Content-Length
    std::string cl_detail;
    bool close = false;       // "Connection: close"
    bool keep_alive = false;  // "Connection: keep-alive"
  };

  parser_limits limits_;
  state state_ = state::status_line;
  std::exception_ptr failure_;  // set exactly when state_ == failed
  bool head_request_ = false;   // a response to HEAD has no body
  bool started_ = false;        // a byte of this response was fed
  bool head_done_ = false;      // the final head was parsed and framed
  bool keep_alive_ = false;
  body_framing framing_ = body_framing::none;
  std::optional<std::uint64_t> content_length_;
  framing_summary summary_;
  std::uint64_t remaining_ = 0;  // of the body (content_length) or the chunk
  std::size_t head_bytes_ = 0;   // of the current head or trailer section, <= max
  std::uint64_t chunk_overhead_ = 0;
  std::size_t interim_ = 0;
  std::string line_;  // a line split across feeds, without its LF
  response_head head_;
  fields trailers_;
};

}  // namespace leash::inline v0::http
