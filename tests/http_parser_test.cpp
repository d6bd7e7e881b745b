// Tests for leash/http/response_parser.hpp: framing, strictness, limits,
// keep-alive, and the same result however the bytes are split; and for the
// server's request-head parser (detail/request_parser.hpp).
#include <doctest/doctest.h>

#include <cstdint>
#include <leash/http/detail/request_parser.hpp>
#include <leash/http/response_parser.hpp>
#include <optional>
#include <string>
#include <vector>

#include "support/http_collect.hpp"

using http_test::outcome;
using leash::http::body_framing;
using leash::http::parse_event;
using leash::http::parser_limits;
using leash::http::response_parser;

namespace {

// Parses `input` whole, byte by byte, cut at every offset and cut at a few
// pseudo-random sets of offsets; all must agree. Returns the outcome.
outcome parse_all_ways(const std::string& input, std::string_view method = "GET", bool eof = true,
                       parser_limits limits = {}) {
  const outcome whole = http_test::parse_whole(input, method, eof, limits);
  const outcome bytewise = http_test::parse_bytewise(input, method, eof, limits);
  INFO("input: ", input);
  INFO("whole:     ", http_test::describe(whole));
  INFO("bytewise:  ", http_test::describe(bytewise));
  CHECK(whole == bytewise);
  for (std::size_t cut = 0; cut <= input.size(); ++cut) {
    const outcome split = http_test::parse_pieces(input, {cut}, method, eof, limits);
    if (!(split == whole)) {
      INFO("split at ", cut, ": ", http_test::describe(split));
      CHECK(split == whole);
      break;
    }
  }
  std::uint32_t seed = 12345;
  for (int round = 0; round < 20 && input.size() > 2; ++round) {
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < input.size(); ++i) {
      seed = seed * 1664525u + 1013904223u;
      if ((seed >> 24) % 7 == 0) cuts.push_back(i);
    }
    const outcome split = http_test::parse_pieces(input, cuts, method, eof, limits);
    if (!(split == whole)) {
      INFO("random cuts round ", round, ": ", http_test::describe(split));
      CHECK(split == whole);
      break;
    }
  }
  return whole;
}

std::string error_of(const std::string& input, std::string_view method = "GET",
                     parser_limits limits = {}) {
  return parse_all_ways(input, method, true, limits).error;
}

std::string protocol(const char* reason) {
  return std::string("protocol_error: ") + reason;
}

std::string with_reason(leash::http::reason r) {
  return protocol(leash::http::to_string(r));
}

using R = leash::http::reason;

const std::string ok_head = "HTTP/1.1 200 OK\r\n";

}  // namespace

// ---------------------------------------------------------------------------
// Valid responses: the table every splitting must agree on.

struct valid_sample {
  const char* name;
  std::string bytes;
  std::string method;
  int status;
  std::string body;
  bool keep_alive;
  body_framing framing;
  std::size_t trailing = 0;  // bytes after the message that the parser must not consume
};

TEST_CASE("valid responses parse the same whole, byte by byte and split anywhere") {
  const std::vector<valid_sample> samples = {
      {"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "GET", 200, "hello",
       true, body_framing::content_length},
      {"content-length then the next response's bytes",
       "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\n", "GET", 200, "hi", true,
       body_framing::content_length, 17},
      {"zero content-length", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", 200, "", true,
       body_framing::none},
      {"identical duplicate content-length",
       "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", "GET", 200, "abc",
       true, body_framing::content_length},
      {"content-length list of equal values", "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc",
       "GET", 200, "abc", true, body_framing::content_length},
      {"chunked with extensions and trailers",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
       "5;name=value\r\nhello\r\n"
       "1 ; a ; b = \"q\\\"uoted\" ;c\r\n,\r\n"
       "6\r\n world\r\n"
       "0;last\r\nX-Checksum: abc\r\nContent-Length: 999\r\n\r\n",
       "GET", 200, "hello, world", true, body_framing::chunked},
      {"chunked, upper-case hex and leading zeros",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n00A\r\n0123456789\r\n000\r\n\r\n",
       "GET", 200, "0123456789", true, body_framing::chunked},
      {"close-delimited", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", "GET",
       200, "until the end", false, body_framing::until_close},
      {"HTTP/1.0 close-delimited", "HTTP/1.0 200 OK\r\n\r\nold", "GET", 200, "old", false,
       body_framing::until_close},
      {"HTTP/1.0 keep-alive with length",
       "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", "GET", 200, "ok",
       true, body_framing::content_length},
      {"HTTP/1.0 with length, no keep-alive", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
       "GET", 200, "ok", false, body_framing::content_length},
      {"connection close",
       "HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\nContent-Length: 1\r\n\r\nx", "GET", 200,
       "x", false, body_framing::content_length},
      {"HEAD ignores the content-length", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", "HEAD",
       200, "", true, body_framing::none},
      {"HEAD with chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD", 200,
       "", true, body_framing::none},
      {"204 has no body", "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1", "GET", 204, "", true,
       body_framing::none, 8},
      {"304 has no body despite content-length",
       "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "GET", 304, "", true,
       body_framing::none},
      {"1xx responses are skipped",
       "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
       "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
       "GET", 200, "ok", true, body_framing::content_length},
      {"five 1xx are allowed",
       "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
       "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
       "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
       "GET", 200, "", true, body_framing::none},
      {"obs-fold becomes SP",
       "HTTP/1.1 200 OK\r\nX-Long: a\r\n \t b\r\n\tc \r\nContent-Length: 0\r\n\r\n", "GET", 200, "",
       true, body_framing::none},
      {"empty reason phrase", "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", "GET", 404, "", true,
       body_framing::none},
      {"no reason phrase and no SP", "HTTP/1.1 500\r\nContent-Length: 0\r\n\r\n", "GET", 500, "",
       true, body_framing::none},
      {"obs-text in values and reason",
       "HTTP/1.1 200 \xc3\x96K\r\nX: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n", "GET", 200, "",
       true, body_framing::none},
      {"empty field value and odd tchars",
       "HTTP/1.1 200 OK\r\nX-Empty:\r\n!#$%&'*+-.^_`|~09azAZ: v\r\nContent-Length: 0\r\n\r\n",
       "GET", 200, "", true, body_framing::none},
      {"HTTP/1.1 with a large minor version", "HTTP/1.9 200 OK\r\nContent-Length: 0\r\n\r\n", "GET",
       200, "", true, body_framing::none},
  };
  for (const auto& s : samples) {
    CAPTURE(s.name);
    const outcome o = parse_all_ways(s.bytes, s.method);
    CHECK(o.error == "");
    CHECK(o.head);
    CHECK(o.complete);
    CHECK(o.status == s.status);
    CHECK(o.body == s.body);
    CHECK(o.keep_alive == s.keep_alive);
    CHECK(o.framing == s.framing);
    CHECK(o.consumed == s.bytes.size() - s.trailing);
  }
}

TEST_CASE("fields keep order, duplicates and case; lookup ignores case") {
  const outcome o = parse_all_ways(
      "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Mixed:   spaced value  \r\nset-cookie: b=2\r\n"
      "Content-Length: 0\r\n\r\n");
  REQUIRE(o.headers.size() == 4);
  CHECK(o.headers[0] == std::pair<std::string, std::string>{"Set-Cookie", "a=1"});
  CHECK(o.headers[1] == std::pair<std::string, std::string>{"X-Mixed", "spaced value"});
  CHECK(o.headers[2] == std::pair<std::string, std::string>{"set-cookie", "b=2"});

  response_parser p;
  p.reset();
  const std::string bytes = "HTTP/1.1 201 Created\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\r\n";
  const auto step = p.feed(bytes);
  REQUIRE(step.event == parse_event::head);
  CHECK(p.head().reason == "Created");
  CHECK(p.head().headers.get("SET-COOKIE") == "a=1");
  CHECK(p.head().headers.count("set-Cookie") == 2);
  CHECK(p.head().headers.get_all("Set-Cookie") == std::vector<std::string_view>{"a=1", "b=2"});
  CHECK_FALSE(p.head().headers.get("Content-Length").has_value());
}

TEST_CASE("obs-fold is replaced by a single SP") {
  const outcome o = parse_all_ways(
      "HTTP/1.1 200 OK\r\nX-Long: a\r\n \t b\r\n\tc \r\nX-Empty:\r\n  d\r\nX-Blank: e\r\n   \r\n"
      "Content-Length: 0\r\n\r\n");
  REQUIRE(o.headers.size() == 4);
  CHECK(o.headers[0].second == "a b c");
  CHECK(o.headers[1].second == "d");
  CHECK(o.headers[2].second == "e");
}

TEST_CASE("obs-fold in a framing field is refused, elsewhere it is unfolded") {
  CHECK(error_of(ok_head + "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n") ==
        with_reason(R::folded_framing_field));
  CHECK(error_of(ok_head + "Content-Length: 5\r\n\t5\r\n\r\nhello") ==
        with_reason(R::folded_framing_field));
  CHECK(error_of(ok_head + "content-LENGTH: 5\r\n \r\n\r\nhello") ==
        with_reason(R::folded_framing_field));
  // Trailers never frame, so a folded Content-Length there is just a field.
  CHECK(error_of(ok_head + "Transfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 1\r\n 2\r\n\r\n")
            .empty());
  CHECK(parse_all_ways(ok_head + "Connection:\r\n close\r\nContent-Length: 0\r\n\r\n").keep_alive ==
        false);
}

TEST_CASE("an interim response's framing fields are not interpreted") {
  const outcome o = parse_all_ways(
      "HTTP/1.1 100 Continue\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + ok_head +
      "Content-Length: 2\r\n\r\nok");
  CHECK(o.error == "");
  CHECK(o.body == "ok");
}

TEST_CASE("started() tells an idle connection's EOF from a truncated response") {
  response_parser p;
  p.reset();
  CHECK(p.feed(std::span<const char>()).event == parse_event::need_more);
  CHECK_FALSE(p.started());
  CHECK(p.feed(std::string_view("H")).event == parse_event::need_more);
  CHECK(p.started());
  try {
    p.finish_eof();
    FAIL("no throw");
  } catch (const leash::http::protocol_error& e) {
    CHECK(e.reason() == R::truncated_head);
  }
}

TEST_CASE("trailers are kept apart and never frame the message") {
  const outcome o = parse_all_ways(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
      "Content-Length: 1\r\nTransfer-Encoding: gzip\r\nX-Sum: 1\r\n \r\n\r\n");
  CHECK(o.error == "");
  CHECK(o.body == "abc");
  CHECK(o.headers.size() == 1);
  REQUIRE(o.trailers.size() == 3);
  CHECK(o.trailers[0].first == "Content-Length");
  CHECK(o.trailers[2].second == "1");
}

// ---------------------------------------------------------------------------
// Framing: what each response shape leaves on the connection.

TEST_CASE("the parser stops exactly at the end of each message") {
  const std::string two =
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n";
  response_parser p;
  p.reset();
  std::span<const char> in(two.data(), two.size());
  std::string body;
  for (int message = 0; message < 2; ++message) {
    while (!p.complete()) {
      const auto step = p.feed(in);
      in = in.subspan(step.consumed);
      if (step.event == parse_event::body) body.append(step.body.data(), step.body.size());
      REQUIRE(step.event != parse_event::need_more);
    }
    CHECK(p.keep_alive());
    CHECK(p.feed(in).consumed == 0);  // complete: nothing more is taken
    if (message == 0) {
      CHECK(in.size() == two.size() - 41);
      p.reset();
    }
  }
  CHECK(in.empty());
  CHECK(body == "abcde");
}

TEST_CASE("body events are spans inside the input, not copies") {
  const std::string bytes = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody";
  response_parser p;
  p.reset();
  std::span<const char> in(bytes.data(), bytes.size());
  auto step = p.feed(in);
  REQUIRE(step.event == parse_event::head);
  CHECK(p.framing() == body_framing::content_length);
  CHECK(p.content_length() == 4u);
  CHECK(p.body_remaining() == 4u);
  in = in.subspan(step.consumed);
  step = p.feed(in);
  REQUIRE(step.event == parse_event::body);
  CHECK(step.body.data() == bytes.data() + bytes.size() - 4);
  CHECK(step.body.size() == 4);
  CHECK(p.complete());
  CHECK(p.feed(in.subspan(step.consumed)).event == parse_event::complete);
}

TEST_CASE("a body arriving in pieces is delivered as it arrives") {
  response_parser p;
  p.reset();
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
  CHECK(p.feed(head).event == parse_event::head);
  CHECK(p.feed(std::string_view("0123")).body.size() == 4);
  CHECK(p.body_remaining() == 6);
  CHECK_FALSE(p.complete());
  CHECK(p.feed(std::span<const char>()).event == parse_event::need_more);
  const auto step = p.feed(std::string_view("456789XYZ"));
  CHECK(step.consumed == 6);
  CHECK(p.complete());
}

TEST_CASE("close-delimited body ends at finish_eof and is never reusable") {
  response_parser p;
  p.reset();
  const std::string bytes = "HTTP/1.1 200 OK\r\n\r\npart one";
  CHECK(p.feed(bytes).event == parse_event::head);
  CHECK(p.framing() == body_framing::until_close);
  CHECK_FALSE(p.keep_alive());
  const auto step = p.feed(std::string_view(bytes).substr(19));
  CHECK(step.event == parse_event::body);
  CHECK(step.consumed == 8);
  CHECK_FALSE(p.complete());
  p.finish_eof();
  CHECK(p.complete());
  p.finish_eof();  // idempotent once complete
}

TEST_CASE("a response that ends early is an error at EOF, with where it ended") {
  CHECK(parse_all_ways("").error == with_reason(R::eof_before_response));
  CHECK(parse_all_ways("HTTP/1.1 200 O").error == with_reason(R::truncated_head));
  CHECK(parse_all_ways("HTTP/1.1 100 Continue\r\n\r\n").error == with_reason(R::truncated_head));
  CHECK(parse_all_ways(ok_head + "Content-Length: 5\r\n").error == with_reason(R::truncated_head));
  CHECK(parse_all_ways(ok_head + "Content-Length: 5\r\n\r\nabc").error ==
        with_reason(R::truncated_body));
  CHECK(parse_all_ways(ok_head + "Transfer-Encoding: chunked\r\n\r\n5\r\nabcde").error ==
        with_reason(R::truncated_body));
  CHECK(parse_all_ways(ok_head + "Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n").error ==
        with_reason(R::truncated_body));
  CHECK(parse_all_ways(ok_head + "Transfer-Encoding: chunked\r\n\r\n").error ==
        with_reason(R::truncated_body));

  response_parser p;
  p.reset();
  CHECK_FALSE(p.started());
  CHECK_THROWS_AS(p.finish_eof(), leash::http::protocol_error);
  CHECK(p.failed());
}

TEST_CASE("without EOF a partial response just needs more input") {
  const outcome o = parse_all_ways(ok_head + "Content-Length: 5\r\n\r\nabc", "GET", false);
  CHECK(o.error == "");
  CHECK(o.head);
  CHECK_FALSE(o.complete);
  CHECK(o.body == "abc");
}

TEST_CASE("1xx responses are skipped, at most five of them") {
  std::string six;
  for (int i = 0; i < 6; ++i)
    six += "HTTP/1.1 100 Continue\r\n\r\n";
  const outcome o = parse_all_ways(six + ok_head + "Content-Length: 0\r\n\r\n");
  CHECK(o.error == "limit_exceeded: interim (1xx) responses");
  CHECK_FALSE(o.head);

  const outcome five = parse_all_ways(six.substr(25) + ok_head + "Content-Length: 0\r\n\r\n");
  CHECK(five.error == "");
  CHECK(five.interim == 5);

  parser_limits none;
  none.max_interim_responses = 0;
  CHECK(error_of("HTTP/1.1 102 Processing\r\n\r\n" + ok_head + "\r\n", "GET", none) ==
        "limit_exceeded: interim (1xx) responses");
  CHECK(error_of("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n") ==
        with_reason(R::unexpected_switching_protocols));
}

TEST_CASE("an interim response's fields do not leak into the final head") {
  const outcome o =
      parse_all_ways("HTTP/1.1 103 Early Hints\r\nLink: </x>\r\nConnection: close\r\n\r\n" +
                     ok_head + "Content-Length: 0\r\n\r\n");
  CHECK(o.headers.size() == 1);
  CHECK(o.keep_alive);
  CHECK(o.interim == 1);
}

TEST_CASE("keep-alive follows the version, Connection and framing") {
  auto keep = [](const std::string& bytes, std::string_view method = "GET") {
    return parse_all_ways(bytes, method).keep_alive;
  };
  CHECK(keep("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
  CHECK_FALSE(keep("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"));
  CHECK_FALSE(keep("HTTP/1.1 200 OK\r\nConnection: Upgrade, Close\r\nContent-Length: 0\r\n\r\n"));
  CHECK_FALSE(
      keep("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\nContent-Length: "
           "0\r\n\r\n"));
  CHECK(keep("HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 0\r\n\r\n"));
  CHECK_FALSE(keep("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
  CHECK(keep("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"));
  CHECK_FALSE(
      keep("HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n"));
  CHECK_FALSE(keep("HTTP/1.1 200 OK\r\n\r\n"));  // close-delimited
  CHECK_FALSE(keep("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"));
  CHECK(keep("HTTP/1.1 200 OK\r\n\r\n", "HEAD"));  // no body: not close-delimited
  CHECK(keep("HTTP/1.1 204 No Content\r\n\r\n"));
  CHECK(keep("HTTP/1.1 304 Not Modified\r\n\r\n"));
}

TEST_CASE("reset() reuses the parser for the next response") {
  response_parser p;
  for (int i = 0; i < 3; ++i) {
    p.reset(i == 1 ? "HEAD" : "GET");
    const std::string bytes = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    auto step = p.feed(bytes);
    CHECK(step.event == parse_event::head);
    CHECK(p.head().headers.size() == 1);
    if (i != 1) {
      step = p.feed(std::string_view(bytes).substr(step.consumed));
      CHECK(step.event == parse_event::body);
    }
    CHECK(p.complete());
  }
  p.reset();
  CHECK_THROWS_AS((void)p.feed(std::string_view("HTTP/1.1 200 OK\n")), leash::http::protocol_error);
  CHECK_THROWS_AS((void)p.feed(std::string_view("more")),
                  leash::http::protocol_error);  // stays failed
  p.reset();
  CHECK_FALSE(p.failed());
  CHECK(p.feed(std::string_view("HTTP/1.1 204 No Content\r\n\r\n")).event == parse_event::head);
}

// ---------------------------------------------------------------------------
// Rejections: each rule has a case that passes only because of it.

TEST_CASE("status line: version, code and reason phrase are checked") {
  CHECK(error_of("HTTP/2.0 200 OK\r\n\r\n") == with_reason(R::bad_version));
  CHECK(error_of("HTTP/1.x 200 OK\r\n\r\n") == with_reason(R::bad_version));
  CHECK(error_of("HTTP/1 200 OK\r\n\r\n") == with_reason(R::bad_version));
  CHECK(error_of("http/1.1 200 OK\r\n\r\n") == with_reason(R::bad_status_line));
  CHECK(error_of("ICY 200 OK\r\n\r\n") == with_reason(R::bad_status_line));
  CHECK(error_of("\r\nHTTP/1.1 200 OK\r\n\r\n") == with_reason(R::bad_status_line));
  CHECK(error_of("HTTP/1.1  200 OK\r\n\r\n") == with_reason(R::bad_status_code));
  CHECK(error_of("HTTP/1.1 2000 OK\r\n\r\n") == with_reason(R::bad_status_code));
  CHECK(error_of("HTTP/1.1 20 OK\r\n\r\n") == with_reason(R::bad_status_code));
  CHECK(error_of("HTTP/1.1 099 OK\r\n\r\n") == with_reason(R::bad_status_code));
  CHECK(error_of("HTTP/1.1 600 OK\r\n\r\n") == with_reason(R::bad_status_code));
  CHECK(error_of("HTTP/1.1 200\tOK\r\n\r\n") == with_reason(R::bad_status_line));
  CHECK(error_of(std::string("HTTP/1.1 200 O\0K\r\n\r\n", 20)) == with_reason(R::bad_status_line));
  CHECK(error_of("HTTP/1.1 200 O\x7fK\r\n\r\n") == with_reason(R::bad_status_line));
  CHECK(error_of("HTTP/1.1 200 OK\r\n\r\n").empty());  // the baseline
}

TEST_CASE("bare CR and bare LF line endings are refused") {
  CHECK(error_of("HTTP/1.1 200 OK\n\r\n") == with_reason(R::bare_lf));
  CHECK(error_of(ok_head + "Content-Length: 0\n\r\n") == with_reason(R::bare_lf));
  CHECK(error_of(ok_head + "Content-Length: 0\r\n\n") == with_reason(R::bare_lf));
  CHECK(error_of("HTTP/1.1 200 O\rK\r\n\r\n") == with_reason(R::bare_cr));
  CHECK(error_of(ok_head + "X: a\rb\r\nContent-Length: 0\r\n\r\n") == with_reason(R::bare_cr));
  CHECK(error_of(ok_head + "X: a\r\r\n\r\n") == with_reason(R::bare_cr));
  CHECK(error_of(ok_head + "Transfer-Encoding: chunked\r\n\r\n1\n") == with_reason(R::bare_lf));
  CHECK(error_of(ok_head + "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nT: 1\n\r\n") ==
        with_reason(R::bare_lf));
}

TEST_CASE("field lines: whitespace, colon, name and value rules") {
  CHECK(error_of(ok_head + " X: folded-first\r\n\r\n") ==
        with_reason(R::whitespace_before_first_field));
  CHECK(error_of(ok_head + "X : v\r\n\r\n") == with_reason(R::whitespace_before_colon));
  CHECK(error_of(ok_head + "X\t: v\r\n\r\n") == with_reason(R::whitespace_before_colon));
  CHECK(error_of(ok_head + "No colon here\r\n\r\n") == with_reason(R::missing_colon));
  CHECK(error_of(ok_head + ": empty name\r\n\r\n") == with_reason(R::bad_field_name));
  CHECK(error_of(ok_head + "Bad(name): v\r\n\r\n") == with_reason(R::bad_field_name));
  CHECK(error_of(ok_head + "B\xc3\xa4"
                           "d: v\r\n\r\n") == with_reason(R::bad_field_name));
  CHECK(error_of(ok_head + std::string("X: a\0b\r\n\r\n", 10)) == with_reason(R::bad_field_value));
  CHECK(error_of(ok_head + "X: a\x01"
                           "b\r\n\r\n") == with_reason(R::bad_field_value));
  CHECK(error_of(ok_head + "X: a\x7f\r\n\r\n") == with_reason(R::bad_field_value));
  CHECK(error_of(ok_head + "X: a\r\n b\x1f\r\n\r\n") == with_reason(R::bad_field_value));
  CHECK(error_of(ok_head + "X: a\tb\r\nContent-Length: 0\r\n\r\n").empty());  // HTAB is fine
}

TEST_CASE("Content-Length: sign, garbage, overflow and conflicts are refused") {
  auto cl = [](const std::string& fields) { return error_of(ok_head + fields + "\r\n"); };
  CHECK(cl("Content-Length: +5\r\n") == with_reason(R::bad_content_length));
  CHECK(cl("Content-Length: -5\r\n") == with_reason(R::bad_content_length));
  CHECK(cl("Content-Length: 5x\r\n") == with_reason(R::bad_content_length));
  CHECK(cl("Content-Length: 0x10\r\n") == with_reason(R::bad_content_length));
  CHECK(cl("Content-Length: 1 2\r\n") == with_reason(R::bad_content_length));
  CHECK(cl("Content-Length:\r\n") == with_reason(R::bad_content_length));
  CHECK(cl("Content-Length: 5,\r\n") == with_reason(R::bad_content_length));
  CHECK(cl("Content-Length: 9223372036854775808\r\n") == with_reason(R::content_length_overflow));
  CHECK(cl("Content-Length: 99999999999999999999999\r\n") ==
        with_reason(R::content_length_overflow));
  CHECK(cl("Content-Length: 5\r\nContent-Length: 6\r\n") ==
        with_reason(R::conflicting_content_length));
  CHECK(cl("Content-Length: 5, 6\r\n") == with_reason(R::conflicting_content_length));
  // The largest accepted value, and leading zeros, are fine (the body is then truncated).
  CHECK(cl("Content-Length: 9223372036854775807\r\n") == with_reason(R::truncated_body));
  CHECK(parse_all_ways(ok_head + "Content-Length: 007\r\n\r\n1234567").body == "1234567");
}

TEST_CASE("Transfer-Encoding: only a single chunked, never with Content-Length or on 1.0") {
  auto te = [](const std::string& fields) { return error_of(ok_head + fields + "\r\n"); };
  CHECK(te("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n") ==
        with_reason(R::content_length_with_transfer_encoding));
  CHECK(te("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n") ==
        with_reason(R::content_length_with_transfer_encoding));
  CHECK(te("Transfer-Encoding: gzip\r\n") == with_reason(R::unsupported_transfer_coding));
  CHECK(te("Transfer-Encoding: gzip, chunked\r\n") == with_reason(R::unsupported_transfer_coding));
  CHECK(te("Transfer-Encoding: chunked, chunked\r\n") ==
        with_reason(R::unsupported_transfer_coding));
  CHECK(te("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n") ==
        with_reason(R::unsupported_transfer_coding));
  CHECK(te("Transfer-Encoding: identity\r\n") == with_reason(R::unsupported_transfer_coding));
  CHECK(te("Transfer-Encoding:\r\n") == with_reason(R::unsupported_transfer_coding));
  CHECK(te("Transfer-Encoding: chunked;q=1\r\n") == with_reason(R::unsupported_transfer_coding));
  CHECK(error_of("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n") ==
        with_reason(R::transfer_encoding_in_http10));
  // CL+TE is refused even where the response has no body.
  CHECK(error_of(
            "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n") ==
        with_reason(R::content_length_with_transfer_encoding));
}

TEST_CASE("chunk sizes: empty, non-hex and overflowing sizes are refused") {
  auto chunks = [](const std::string& body) {
    return error_of(ok_head + "Transfer-Encoding: chunked\r\n\r\n" + body);
  };
  CHECK(chunks("\r\n") == with_reason(R::bad_chunk_size));
  CHECK(chunks(";ext\r\n") == with_reason(R::bad_chunk_size));
  CHECK(chunks("g\r\n") == with_reason(R::bad_chunk_size));
  CHECK(chunks("0x5\r\n") == with_reason(R::bad_chunk_size));
  CHECK(chunks("-5\r\n") == with_reason(R::bad_chunk_size));
  CHECK(chunks("+5\r\n") == with_reason(R::bad_chunk_size));
  CHECK(chunks(" 5\r\n") == with_reason(R::bad_chunk_size));
  CHECK(chunks("8000000000000000\r\n") == with_reason(R::chunk_size_overflow));
  CHECK(chunks("ffffffffffffffffff\r\n") == with_reason(R::chunk_size_overflow));
  CHECK(chunks("7fffffffffffffff\r\n") == with_reason(R::truncated_body));  // largest allowed
  CHECK(chunks("5\r\nabcdeXY") == with_reason(R::bad_chunk_terminator));
  CHECK(chunks("5\r\nabcde\rX") == with_reason(R::bad_chunk_terminator));
  CHECK(chunks("5\r\nabcde\n0\r\n\r\n") == with_reason(R::bad_chunk_terminator));
  CHECK(chunks("5\r\nabcdef\r\n") == with_reason(R::bad_chunk_terminator));
}

TEST_CASE("chunk extensions must be well formed") {
  auto chunks = [](const std::string& line) {
    return error_of(ok_head + "Transfer-Encoding: chunked\r\n\r\n" + line + "\r\nx\r\n0\r\n\r\n");
  };
  CHECK(chunks("1;a=b;c;d=\"e f\"").empty());
  CHECK(chunks("1 ; a = b").empty());
  CHECK(chunks("1;").find("chunk extension") != std::string::npos);
  CHECK(chunks("1 ").find("chunk extension") != std::string::npos);
  CHECK(chunks("1;a ") == with_reason(R::bad_chunk_extension));
  CHECK(chunks("1;a=") == with_reason(R::bad_chunk_extension));
  CHECK(chunks("1;a=\"open") == with_reason(R::bad_chunk_extension));
  CHECK(chunks("1;a=\"bad\\") == with_reason(R::bad_chunk_extension));
  CHECK(chunks("1;a=b c") == with_reason(R::bad_chunk_extension));
  CHECK(chunks("1;(a)") == with_reason(R::bad_chunk_extension));
  CHECK(chunks("1 x") == with_reason(R::bad_chunk_extension));
  CHECK(chunks("1x") == with_reason(R::bad_chunk_size));
  CHECK(chunks(std::string("1;a=\"\0\"", 7)) == with_reason(R::bad_chunk_extension));
}

TEST_CASE("chunk lines over 4096 bytes and excessive extension overhead are refused") {
  const std::string head = ok_head + "Transfer-Encoding: chunked\r\n\r\n";
  const std::string long_ext = "1;x=" + std::string(4093 - 4, 'a');  // 4093 + CRLF = 4095
  CHECK(error_of(head + long_ext + "\r\nx\r\n0\r\n\r\n").empty());
  CHECK(error_of(head + long_ext + "a\r\nx\r\n0\r\n\r\n").empty());  // exactly 4096
  CHECK(error_of(head + long_ext + "aa\r\nx\r\n0\r\n\r\n") == with_reason(R::chunk_line_too_long));
  CHECK(error_of(head + std::string(5000, '0') + "1\r\n") == with_reason(R::chunk_line_too_long));

  // One byte per chunk with a 1000-byte extension: overhead grows ~1000 per byte.
  std::string attack = head;
  for (int i = 0; i < 20; ++i)
    attack += "1;" + std::string(1000, 'e') + "\r\nx\r\n";
  attack += "0\r\n\r\n";
  CHECK(error_of(attack) == with_reason(R::excessive_chunk_overhead));
  // The same extensions on chunks of real data are fine.
  std::string fair = head;
  for (int i = 0; i < 20; ++i)
    fair += "200;" + std::string(1000, 'e') + "\r\n" + std::string(512, 'd') + "\r\n";
  fair += "0\r\n\r\n";
  CHECK(error_of(fair).empty());
  // Byte-at-a-time chunks without extensions are fine too.
  std::string tiny = head;
  for (int i = 0; i < 5000; ++i)
    tiny += "1\r\nx\r\n";
  tiny += "0\r\n\r\n";
  CHECK(http_test::parse_whole(tiny).body.size() == 5000);
}

TEST_CASE("header limits: bytes and field count raise limit_exceeded") {
  parser_limits small;
  small.max_header_bytes = 64;
  small.max_header_fields = 3;
  // 17 (status) + 20 (field) + 2 (end) = 39 bytes: fits.
  const std::string fits = ok_head + "X-Field: 0123456789\r\n\r\n";
  CHECK(parse_all_ways(fits, "GET", true, small).error == "");
  // Exactly 64 bytes fits, 65 does not.
  const std::string exact = ok_head + "X: " + std::string(64 - 17 - 5 - 2, 'v') + "\r\n\r\n";
  REQUIRE(exact.size() == 64);
  CHECK(parse_all_ways(exact, "GET", true, small).error == "");
  const std::string over = ok_head + "X: " + std::string(64 - 17 - 5 - 1, 'v') + "\r\n\r\n";
  CHECK(error_of(over, "GET", small) == "limit_exceeded: response header bytes");
  // A head that never ends is refused once it is too long, not buffered forever.
  CHECK(error_of(ok_head + std::string(100, 'x'), "GET", small) ==
        "limit_exceeded: response header bytes");
  CHECK(error_of(ok_head + "A: 1\r\nB: 2\r\nC: 3\r\n\r\n", "GET", small) == "");
  CHECK(error_of(ok_head + "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", "GET", small) ==
        "limit_exceeded: response header fields");
  // Folds do not count as fields.
  CHECK(error_of(ok_head + "A: 1\r\n 2\r\n 3\r\nB: 2\r\nC: 3\r\n\r\n", "GET", small) == "");
  // Trailers have the same limits, with their own budget.
  CHECK(error_of(
            ok_head + "Transfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
            "GET", small) == "limit_exceeded: response header fields");
  CHECK(error_of(ok_head + "Transfer-Encoding: chunked\r\n\r\n0\r\nT: " + std::string(70, 't') +
                     "\r\n\r\n",
                 "GET", small) == "limit_exceeded: response header bytes");
}

TEST_CASE("default limits: 64 KiB of header and 100 fields") {
  const parser_limits defaults;
  CHECK(defaults.max_header_bytes == 64 * 1024);
  CHECK(defaults.max_header_fields == 100);
  CHECK(defaults.max_interim_responses == 5);
  std::string hundred = ok_head;
  for (int i = 0; i < 100; ++i)
    hundred += "X-" + std::to_string(i) + ": v\r\n";
  CHECK(http_test::parse_whole(hundred + "\r\n").error == "");
  CHECK(http_test::parse_whole(hundred + "X-Last: v\r\n\r\n").error ==
        "limit_exceeded: response header fields");
  const std::string big = ok_head + "X: " + std::string(64 * 1024, 'v') + "\r\n\r\n";
  CHECK(http_test::parse_whole(big).error == "limit_exceeded: response header bytes");
  CHECK(http_test::parse_bytewise(big).error == "limit_exceeded: response header bytes");
}

TEST_CASE("errors are typed, carry their reason and name the component") {
  response_parser p;
  p.reset();
  try {
    (void)p.feed(std::string_view(
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"));
    FAIL("no throw");
  } catch (const leash::http::protocol_error& e) {
    CHECK(e.reason() == R::content_length_with_transfer_encoding);
    CHECK(std::string(e.what()).rfind("leash::http: ", 0) == 0);
    const leash::error& base = e;  // catchable as any leash error
    CHECK(base.what() == std::string(e.what()));
  }
  CHECK(p.failed());
  CHECK_FALSE(p.head_complete());
}

TEST_CASE("the word-at-a-time field value check agrees with the byte table") {
  // Every byte value at every position of values up to 24 bytes long.
  for (std::size_t len = 1; len <= 24; ++len) {
    for (std::size_t pos = 0; pos < len; ++pos) {
      for (int b = 0; b < 256; ++b) {
        std::string v(len, 'a');
        v[pos] = static_cast<char>(b);
        const bool expected = b == '\t' || (b >= 0x20 && b != 0x7f);
        if (leash::http::detail::valid_field_value(v) != expected) {
          FAIL("len ", len, " pos ", pos, " byte ", b);
        }
      }
    }
  }
  CHECK(leash::http::detail::valid_field_value(std::string(40, '\xff')));
  CHECK(leash::http::detail::valid_field_value(std::string(40, '\x80')));
  CHECK(leash::http::detail::valid_field_value(std::string(40, ' ')));
  CHECK_FALSE(leash::http::detail::valid_field_value(std::string(40, '\x1f')));
}

// ---------------------------------------------------------------------------
// The server's request-head parser (detail/request_parser.hpp).

namespace {

// The reason parse_request_head refuses `head` with, or nullopt when it parses.
std::optional<R> request_refusal(const std::string& head) {
  leash::http::detail::parsed_request out;
  try {
    leash::http::detail::parse_request_head(head, 100, out);
  } catch (const leash::http::protocol_error& e) {
    return e.reason();
  }
  return std::nullopt;
}

std::string get_with_host(std::string_view host) {
  return "GET / HTTP/1.1\r\nHost: " + std::string(host) + "\r\n\r\n";
}

}  // namespace

TEST_CASE("request heads: Transfer-Encoding on HTTP/1.0 is refused, whatever Connection says") {
  CHECK(request_refusal("POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n"
                        "Connection: keep-alive\r\n\r\n") == R::transfer_encoding_in_http10);
  CHECK(request_refusal("POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n") ==
        R::transfer_encoding_in_http10);
  CHECK(request_refusal("POST /a HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n") ==
        R::transfer_encoding_in_http10);
  CHECK(request_refusal("POST /a HTTP/1.0\r\nContent-Length: 0\r\n\r\n") == std::nullopt);
  CHECK(request_refusal("POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n") ==
        std::nullopt);
}

TEST_CASE("request heads: HTTP/1.1 needs exactly one valid Host, HTTP/1.0 at most one") {
  CHECK(request_refusal("GET / HTTP/1.1\r\n\r\n") == R::bad_host);
  CHECK(request_refusal("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n") == R::duplicate_host);
  CHECK(request_refusal("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n") == R::duplicate_host);
  CHECK(request_refusal("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n") == R::duplicate_host);
  CHECK(request_refusal("GET / HTTP/1.0\r\n\r\n") == std::nullopt);
  for (const char* bad : {"a b", "a/b", "user@a", "a:80x", "[::1", "[::1]x", "a?b", "a#b", "%zz",
                          ":80", "a\"b", "a:8:0", "[]"}) {
    CAPTURE(bad);
    CHECK(request_refusal(get_with_host(bad)) == R::bad_host);
  }
  for (const char* good : {"", "example.com", "example.com:8080", "127.0.0.1:1", "[::1]:80",
                           "[::1]", "a:", "xn--bcher-kva.example", "a%41b", "a_b~c"}) {
    CAPTURE(good);
    CHECK(request_refusal(get_with_host(good)) == std::nullopt);
  }
}

TEST_CASE("request heads: absolute-form targets need an http(s) scheme and a valid authority") {
  CHECK(request_refusal("GET http://other.example/x HTTP/1.1\r\nHost: a\r\n\r\n") == std::nullopt);
  CHECK(request_refusal("GET HTTPS://o.example:8443 HTTP/1.1\r\nHost: a\r\n\r\n") == std::nullopt);
  for (const char* bad :
       {"http://u@h/x", "http:///x", "http://h:8x/", "ftp://h/x", "http://:80/", "http://[::1/"}) {
    CAPTURE(bad);
    CHECK(request_refusal("GET " + std::string(bad) + " HTTP/1.1\r\nHost: a\r\n\r\n") ==
          R::bad_target);
  }
  using leash::http::detail::split_absolute_form;
  const auto t = split_absolute_form("http://other.example:81/x?q=1");
  REQUIRE(t);
  CHECK(t->authority == "other.example:81");
  CHECK(t->origin == "/x?q=1");
  const auto bare = split_absolute_form("HTTP://h");
  REQUIRE(bare);
  CHECK(bare->authority == "h");
  CHECK(bare->origin == "/");
  const auto query = split_absolute_form("http://h?q");
  REQUIRE(query);
  CHECK(query->origin == "/?q");
  CHECK(!split_absolute_form("/x"));
  CHECK(!split_absolute_form("*"));
  CHECK(!split_absolute_form("h:443"));
}
