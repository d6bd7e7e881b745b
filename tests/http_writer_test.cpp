// Tests for leash/http/request_writer.hpp: what is written, and what is
// refused before a single byte is written; and for the server's response
// writer: the framing fields and status codes it puts on the wire.
#include <doctest/doctest.h>

#include <cstdint>
#include <leash/errors.hpp>
#include <leash/http/request_writer.hpp>
#include <leash/http/response_parser.hpp>
#include <leash/http/server.hpp>
#include <leash/nursery.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "support/http_fixture.hpp"

using leash::http::request_body;
using leash::http::request_head;
using R = leash::http::reason;

namespace {

// Writes req into a buffer that already holds bytes of an earlier request;
// on refusal, checks that not one byte was appended and returns the reason.
std::optional<R> refusal(const request_head& req, std::string_view host = "example.com",
                         std::string_view body = {}) {
  const std::string before = "EARLIER REQUEST BYTES";
  std::string out = before;
  try {
    leash::http::write_request(out, req, host, body);
  } catch (const leash::http::invalid_request& e) {
    CHECK(out == before);
    CHECK(std::string(e.what()).rfind("leash::http: invalid request: ", 0) == 0);
    CHECK_THROWS_AS(
        leash::http::validate_request(
            req, host, body.empty() ? request_body::none() : request_body::of_length(body.size())),
        leash::http::invalid_request);
    return e.reason();
  }
  return std::nullopt;
}

std::optional<R> refusal_head(const request_head& req, request_body body) {
  std::string out;
  try {
    leash::http::write_request_head(out, req, "h", body);
  } catch (const leash::http::invalid_request& e) {
    CHECK(out.empty());
    return e.reason();
  }
  return std::nullopt;
}

request_head with_field(std::string_view name, std::string_view value) {
  request_head req;
  req.headers.add(name, value);
  return req;
}

}  // namespace

TEST_CASE("a GET is written with Host first and no Content-Length") {
  request_head req{"GET", "/path?q=1"};
  req.headers.add("Accept", "*/*");
  req.headers.add("X-Two", "a");
  req.headers.add("X-Two", "b");
  std::string out;
  leash::http::write_request(out, req, "example.com:8080");
  CHECK(out ==
        "GET /path?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n"
        "X-Two: a\r\nX-Two: b\r\n\r\n");
}

TEST_CASE("a user Host field is kept and no second one is added") {
  request_head req = with_field("host", "other.example");
  std::string out;
  leash::http::write_request(out, req, "example.com");
  CHECK(out == "GET / HTTP/1.1\r\nhost: other.example\r\n\r\n");
}

TEST_CASE("a body gets Content-Length; POST, PUT and PATCH announce an empty one") {
  request_head req{"POST", "/upload"};
  req.headers.add("Content-Type", "text/plain");
  std::string out;
  leash::http::write_request(out, req, "h", "hello");
  CHECK(out ==
        "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
        "Content-Length: 5\r\n\r\nhello");
  out.clear();
  leash::http::write_request(out, request_head{"PUT", "/"}, "h");
  CHECK(out == "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
  out.clear();
  leash::http::write_request(out, request_head{"DELETE", "/"}, "h");
  CHECK(out == "DELETE / HTTP/1.1\r\nHost: h\r\n\r\n");
}

TEST_CASE("a user Content-Length that matches the body is kept as is") {
  request_head req = with_field("Content-Length", "3");
  req.method = "POST";
  std::string out;
  leash::http::write_request(out, req, "h", "abc");
  CHECK(out == "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
}

TEST_CASE("chunked bodies: a streamed head, chunks and the last chunk") {
  request_head req{"POST", "/stream"};
  std::string out;
  leash::http::write_request_head(out, req, "h", request_body::chunked());
  leash::http::write_chunk(out, "hello");
  leash::http::write_chunk(out, "");  // writes nothing: it would end the body
  leash::http::write_chunk(out, std::string(300, 'x'));
  leash::http::write_last_chunk(out);
  CHECK(out ==
        "POST /stream HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n12c\r\n" +
            std::string(300, 'x') + "\r\n0\r\n\r\n");

  // A user "Transfer-Encoding: chunked" makes write_request send the body chunked.
  request_head te = with_field("Transfer-Encoding", "chunked");
  te.method = "POST";
  out.clear();
  leash::http::write_request(out, te, "h", "abc");
  CHECK(out ==
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
}

TEST_CASE("what the writer writes, the strict parser's rules accept") {
  // Round trip of the head's field syntax through a response parser: the
  // fields the writer emits are valid field lines.
  request_head req{"GET", "/"};
  req.headers.add("X-Tab", "a\tb");
  req.headers.add("X-Obs", "caf\xc3\xa9");
  req.headers.add("X-Empty", "");
  std::string out;
  leash::http::write_request(out, req, "h");
  const std::string as_response = "HTTP/1.1 200 OK" + out.substr(out.find("\r\n"));
  leash::http::response_parser p;
  p.reset("HEAD");
  CHECK(p.feed(as_response).event == leash::http::parse_event::head);
  CHECK(p.head().headers.get("x-tab") == "a\tb");
  CHECK(p.head().headers.size() == 4);
}

TEST_CASE("methods that are not tokens are refused before writing") {
  for (const char* m : {"", "GET POST", "GE\rT", "GET\n", "G(ET)", "GET/", "G\xc3\x89T"}) {
    CAPTURE(m);
    request_head req{m, "/"};
    CHECK(refusal(req) == R::bad_method);
  }
  CHECK(refusal(request_head{"M-SEARCH", "*"}) == std::nullopt);
}

TEST_CASE("targets that are empty or hold SP, CTL or non-ASCII are refused") {
  for (std::string t :
       {std::string(""), std::string("/a b"), std::string("/a\r\nX: y"), std::string("/a\tb"),
        std::string("/a\x7f"), std::string("/caf\xc3\xa9"), std::string("/a\0b", 4)}) {
    CAPTURE(t);
    CHECK(refusal(request_head{"GET", t}) == R::bad_target);
  }
  CHECK(refusal(request_head{"GET", "/a%20b?x=1&y=[2]#frag"}) == std::nullopt);
}

TEST_CASE("field names that are not tokens are refused") {
  for (std::string n : {std::string(""), std::string("X Y"), std::string("X:Y"),
                        std::string("X\r\nY"), std::string("X\0", 2), std::string("X(y)")}) {
    CAPTURE(n);
    CHECK(refusal(with_field(n, "v")) == R::bad_field_name);
  }
}

TEST_CASE("field values with CR, LF, NUL or other CTLs are refused (header injection)") {
  for (std::string v : {std::string("a\r\nInjected: yes"), std::string("a\nb"), std::string("a\rb"),
                        std::string("a\0b", 3), std::string("a\x01"), std::string("a\x7f")}) {
    CAPTURE(v);
    CHECK(refusal(with_field("X-Value", v)) == R::bad_field_value);
  }
  CHECK(refusal(with_field("X-Value", "tab\tand space and caf\xc3\xa9")) == std::nullopt);
}

TEST_CASE("a user Content-Length with Transfer-Encoding is refused") {
  request_head req = with_field("Content-Length", "3");
  req.headers.add("Transfer-Encoding", "chunked");
  req.method = "POST";
  CHECK(refusal(req, "h", "abc") == R::content_length_with_transfer_encoding);
  // Also when the caller asks for a chunked body and set Content-Length.
  CHECK(refusal_head(with_field("Content-Length", "3"), request_body::chunked()) ==
        R::content_length_with_transfer_encoding);
}

TEST_CASE("framing fields that disagree with the body are refused") {
  CHECK(refusal(with_field("Content-Length", "4"), "h", "abc") == R::body_length_mismatch);
  CHECK(refusal(with_field("Content-Length", "3"), "h", "") == R::body_length_mismatch);
  CHECK(refusal(with_field("Content-Length", "0"), "h", "") == std::nullopt);
  CHECK(refusal(with_field("Content-Length", "+3"), "h", "abc") == R::bad_content_length);
  CHECK(refusal(with_field("Content-Length", "3, 3"), "h", "abc") == R::bad_content_length);
  request_head two = with_field("Content-Length", "3");
  two.headers.add("Content-Length", "4");
  CHECK(refusal(two, "h", "abc") == R::conflicting_content_length);
  CHECK(refusal(with_field("Transfer-Encoding", "gzip"), "h", "abc") ==
        R::unsupported_transfer_coding);
  CHECK(refusal(with_field("Transfer-Encoding", "gzip, chunked"), "h", "abc") ==
        R::unsupported_transfer_coding);
  request_head te2 = with_field("Transfer-Encoding", "chunked");
  te2.headers.add("Transfer-Encoding", "chunked");
  CHECK(refusal(te2, "h", "abc") == R::unsupported_transfer_coding);
  CHECK(refusal_head(with_field("Transfer-Encoding", "chunked"), request_body::of_length(3)) ==
        R::body_length_mismatch);
  CHECK(refusal_head(with_field("Transfer-Encoding", "chunked"), request_body::none()) ==
        R::body_length_mismatch);
  CHECK(refusal_head(with_field("Content-Length", "3"), request_body::of_length(4)) ==
        R::body_length_mismatch);
}

TEST_CASE("bad or duplicate Host values are refused") {
  CHECK(refusal(request_head{}, "exa mple.com") == R::bad_host);
  CHECK(refusal(request_head{}, "example.com\r\nX: y") == R::bad_host);
  CHECK(refusal(request_head{}, "user@example.com") == R::bad_host);
  CHECK(refusal(request_head{}, "example.com/path") == R::bad_host);
  CHECK(refusal(with_field("Host", "a b")) == R::bad_host);
  request_head two = with_field("Host", "a");
  two.headers.add("HOST", "b");
  CHECK(refusal(two) == R::duplicate_host);
  CHECK(refusal(request_head{}, "[::1]:8080") == std::nullopt);
  CHECK(refusal(request_head{}, "") == std::nullopt);  // Host: (empty) is allowed
}

TEST_CASE("random requests are either refused or written with exactly their own lines") {
  // A property test against injection: whatever bytes the method, target,
  // names and values hold, an accepted request's head has exactly one line
  // per field (plus the request line, Host and framing), each ending in CRLF,
  // and no CR or LF anywhere else.
  std::uint32_t seed = 2024;
  auto next = [&seed] {
    seed = seed * 1664525u + 1013904223u;
    return seed >> 8;
  };
  const std::string alphabet = std::string("aZ09-_/:; \t\r\n\x01\x7f\xc3\xa9@?#\"", 20) + '\0';
  auto random_text = [&](std::size_t max) {
    std::string s;
    const std::size_t n = next() % (max + 1);
    for (std::size_t i = 0; i < n; ++i) {
      // Mostly letters, sometimes a dangerous byte.
      s += next() % 4 == 0 ? alphabet[next() % alphabet.size()]
                           : static_cast<char>('a' + next() % 26);
    }
    return s;
  };
  int accepted = 0, refused = 0;
  for (int round = 0; round < 20000; ++round) {
    request_head req{random_text(6), "/" + random_text(10)};
    const std::size_t nfields = next() % 4;
    for (std::size_t i = 0; i < nfields; ++i)
      req.headers.add(random_text(6), random_text(10));
    const std::string body = next() % 2 == 0 ? "" : "xyz";
    std::string out;
    try {
      leash::http::write_request(out, req, "host", body);
    } catch (const leash::http::invalid_request&) {
      CHECK(out.empty());
      ++refused;
      continue;
    }
    ++accepted;
    const std::size_t head_end = out.find("\r\n\r\n");
    REQUIRE(head_end != std::string::npos);
    const std::string head = out.substr(0, head_end + 2);
    std::size_t lines = 0;
    for (std::size_t i = 0; i < head.size(); ++i) {
      if (head[i] == '\n') {
        CHECK(i > 0);
        CHECK(head[i - 1] == '\r');
        ++lines;
      } else if (head[i] == '\r') {
        CHECK(i + 1 < head.size());
        CHECK(head[i + 1] == '\n');
      }
    }
    // Random methods are lower-case, so none is POST/PUT/PATCH; random names
    // are at most 6 bytes, so none is Content-Length or Transfer-Encoding.
    const std::size_t expected =
        1 + (req.headers.contains("host") ? 0 : 1) + nfields + (body.empty() ? 0 : 1);
    CHECK(lines == expected);
    CHECK(out.substr(head_end + 4) == body);
  }
  CHECK(accepted > 1000);
  CHECK(refused > 1000);
}

// ---------------------------------------------------------------------------
// The server's response writer (response_writer.hpp): framing fields and
// status codes, seen on the wire.

namespace {

// How many times `needle` occurs in `hay`.
std::size_t occurrences(std::string_view hay, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t at = hay.find(needle); at != std::string_view::npos;
       at = hay.find(needle, at + 1))
    ++n;
  return n;
}

// The raw reply of a leash server running `h` to one `request`.
std::string reply_of(leash::http::server::handler h, std::string_view request =
                                                         "GET / HTTP/1.1\r\nHost: x\r\n"
                                                         "Connection: close\r\n\r\n") {
  leash::nursery n;
  leash::http::server srv(n, std::move(h));
  return http_test::exchange_raw(srv.port(), request);
}

using leash::http::response_writer;
using leash::http::server_request;

}  // namespace

TEST_CASE("a handler's Transfer-Encoding: chunked is the writer's: one framing field on the wire") {
  const auto handler = [](server_request&, response_writer& w) {
    w.headers().set("Transfer-Encoding", "chunked");
    w.write("abc");
  };
  const std::string reply = reply_of(handler);
  CHECK(reply.find("HTTP/1.1 200 ") == 0);
  CHECK(occurrences(reply, "Transfer-Encoding: chunked\r\n") == 1);
  CHECK(reply.find("Content-Length") == std::string::npos);
  CHECK(reply.substr(reply.find("\r\n\r\n") + 4) == "3\r\nabc\r\n0\r\n\r\n");
  // HTTP/1.0 has no chunked coding: the body is delimited by the close.
  const std::string old = reply_of(handler, "GET / HTTP/1.0\r\n\r\n");
  CHECK(old.find("HTTP/1.1 200 ") == 0);
  CHECK(old.find("Transfer-Encoding") == std::string::npos);
  CHECK(old.find("Content-Length") == std::string::npos);
  CHECK(old.substr(old.find("\r\n\r\n") + 4) == "abc");
}

TEST_CASE("framing fields a response cannot carry are refused: 500, never sent") {
  struct sample {
    const char* name;
    std::vector<std::pair<const char*, const char*>> fields;
    R reason;
  };
  const sample samples[] = {
      {"two different Content-Lengths",
       {{"Content-Length", "3"}, {"Content-Length", "4"}},
       R::conflicting_content_length},
      {"Content-Length with Transfer-Encoding",
       {{"Content-Length", "3"}, {"Transfer-Encoding", "chunked"}},
       R::content_length_with_transfer_encoding},
      {"a coding the writer does not apply",
       {{"Transfer-Encoding", "gzip"}},
       R::unsupported_transfer_coding},
      {"two Transfer-Encoding fields",
       {{"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}},
       R::unsupported_transfer_coding},
      {"a Content-Length list", {{"Content-Length", "3, 3"}}, R::bad_content_length},
  };
  for (const sample& s : samples) {
    CAPTURE(s.name);
    std::optional<R> refused;
    std::string what;
    const std::string reply = reply_of([&](server_request&, response_writer& w) {
      for (auto [name, value] : s.fields)
        w.headers().add(name, value);
      w.write("abc");
      try {
        w.flush();
      } catch (const leash::http::invalid_request& e) {
        refused = e.reason();
        what = e.what();
        throw;
      }
    });
    CHECK(refused == s.reason);
    CHECK(what.rfind("leash::http: invalid request: ", 0) == 0);
    CHECK(reply.find("HTTP/1.1 500 ") == 0);
    CHECK(reply.find("abc") == std::string::npos);
  }
}

TEST_CASE("identical Content-Length fields set by a handler go out as one") {
  const std::string reply = reply_of([](server_request&, response_writer& w) {
    w.headers().add("Content-Length", "3");
    w.headers().add("content-length", "3");
    w.write("abc");
  });
  CHECK(reply.find("HTTP/1.1 200 ") == 0);
  CHECK(occurrences(reply, "Content-Length: 3\r\n") == 1);
  CHECK(occurrences(reply, "ontent-") == 1);
  CHECK(reply.substr(reply.size() - 3) == "abc");
}

TEST_CASE("set_status refuses anything but a final status 200..599") {
  std::vector<std::string> refused;
  const std::string reply = reply_of([&](server_request&, response_writer& w) {
    for (int s : {100, 101, 199, 0, 99, 600, 1000, -200}) {
      try {
        w.set_status(s);
      } catch (const leash::usage_error& e) {
        refused.push_back(e.what());
      }
    }
    w.set_status(599);
    w.set_status(200);
    w.write("body");
  });
  CHECK(refused.size() == 8);
  for (const std::string& what : refused)
    CHECK(what.rfind("leash::http::response_writer: status ", 0) == 0);
  CHECK(reply.find("HTTP/1.1 200 OK\r\n") == 0);
  CHECK(reply.substr(reply.size() - 4) == "body");
}
