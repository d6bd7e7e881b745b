// Tests for leash/http/client.hpp: URL parsing and requests by URL.
#include <doctest/doctest.h>

#include <chrono>
#include <leash/http/client.hpp>
#include <leash/http/server.hpp>
#include <leash/nursery.hpp>
#include <string>

using namespace std::chrono_literals;
namespace http = leash::http;

TEST_CASE("http URLs split into host, port and target") {
  auto u = http::url::parse("http://example.com");
  CHECK(u.host == "example.com");
  CHECK(u.port == 80);
  CHECK(u.target == "/");
  u = http::url::parse("HTTP://127.0.0.1:8080/a/b?x=1#frag");
  CHECK(u.host == "127.0.0.1");
  CHECK(u.port == 8080);
  CHECK(u.target == "/a/b?x=1");
  u = http::url::parse("http://h?q");
  CHECK(u.target == "/?q");
  u = http::url::parse("http://[::1]:9000/x");
  CHECK(u.host == "::1");
  CHECK(u.port == 9000);
}

TEST_CASE("other schemes and malformed authorities are refused before any dial") {
  for (const char* bad :
       {"https://example.com/", "ftp://x", "http://", "http://:80/", "http://h:0/",
        "http://h:65536/", "http://h:8x/", "http://u@h/", "http://[::1/", "example.com/"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(http::url::parse(bad), http::invalid_request);
  }
}

TEST_CASE("get and post by URL through a transport") {
  leash::nursery n;
  http::server srv(n, [](http::server_request& req, http::response_writer& w) {
    w.write(std::string(req.method()) + " " + std::string(req.target()) + " " + req.read_body() +
            " " + std::string(req.headers().get("content-type").value_or("-")));
  });
  http::transport t;
  http::client c(t);
  const std::string base = "http://127.0.0.1:" + std::to_string(srv.port());
  CHECK(c.get(base + "/hello?x=1").body.read_all(100) == "GET /hello?x=1  -");
  CHECK(c.post(base + "/up", "text/plain", "data").body.read_all(100) ==
        "POST /up data text/plain");
  CHECK(t.stats().dials == 1);
  CHECK_THROWS_AS(c.get("https://127.0.0.1/"), http::invalid_request);
  CHECK(t.stats().dials == 1);
}
