// Tests for leash/http/reverse_proxy.hpp: client -> leash server running the
// proxy -> upstream.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <latch>
#include <leash/channel.hpp>
#include <leash/http/reverse_proxy.hpp>
#include <leash/nursery.hpp>
#include <string>
#include <vector>

#include "support/http_fixture.hpp"
#include "support/paced_source.hpp"
#include "support/raw_server.hpp"

using namespace std::chrono_literals;
namespace http = leash::http;
using http_test::eventually;
using http_test::get;
using http_test::ms_since;

namespace {

// An upstream (the leash server), a proxy in front of it, and a client.
struct chain {
  chain(http::server::handler upstream_handler, std::chrono::milliseconds flush = 100ms,
        bool trust_forwarded_for = false)
      : upstream(n, std::move(upstream_handler)),
        proxy(to_upstream, {.port = upstream.port(),
                            .flush_interval = flush,
                            .trust_forwarded_for = trust_forwarded_for}),
        front(n, std::cref(proxy)) {}
  std::uint16_t port() const { return front.port(); }

  leash::nursery n;
  http::server upstream;
  http::transport to_upstream;
  http::reverse_proxy proxy;
  http::server front;
};

}  // namespace

TEST_CASE("hop-by-hop fields are dropped both ways; end-to-end ones pass") {
  chain c([](http::server_request& req, http::response_writer& w) {
    CHECK(!req.headers().contains("x-hop"));
    CHECK(!req.headers().contains("keep-alive"));
    CHECK(req.headers().get("x-end") == "1");
    w.headers().set("Connection", "x-secret");
    w.headers().set("X-Secret", "hidden");
    w.headers().set("X-Visible", "yes");
    w.write("proxied");
  });
  http::transport t;
  http::request req = get(c.port());
  req.head.headers.add("Connection", "x-hop");
  req.head.headers.add("X-Hop", "1");
  req.head.headers.add("Keep-Alive", "timeout=5");
  req.head.headers.add("X-End", "1");
  http::response r = t.round_trip(req);
  CHECK(r.head.headers.get("x-visible") == "yes");
  CHECK(!r.head.headers.contains("x-secret"));
  CHECK(r.body.read_all(100) == "proxied");
}

TEST_CASE("headers reach the client while the upstream still blocks") {
  http_test::gate gate(100);
  chain c([&](http::server_request&, http::response_writer& w) {
    w.headers().set("X-Early", "yes");
    w.flush();
    gate.arrive_and_wait();
    w.write("late");
  });
  http::transport t;
  leash::cancel_scope guard(5s);  // a head held back fails the test instead of hanging it
  http::response r = t.round_trip(get(c.port()));  // returns while the gate is still shut
  CHECK(r.head.headers.get("x-early") == "yes");
  gate.wait_arrived(1);
  gate.open();
  CHECK(r.body.read_all(100) == "late");
}

TEST_CASE("text/event-stream is flushed at once, whatever the flush interval") {
  http_test::gate gate(100);
  chain c(
      [&](http::server_request&, http::response_writer& w) {
        w.headers().set("Content-Type", "text/event-stream");
        w.write("data: one\n\n");
        w.flush();
        gate.arrive_and_wait();
        w.write("data: two\n\n");
      },
      10s);
  http::transport t;
  leash::cancel_scope guard(5s);  // a missing flush fails the test instead of hanging it
  http::response r = t.round_trip(get(c.port()));
  char buf[64];
  const std::size_t n = r.body.read(std::span<char>(buf));
  CHECK(std::string(buf, n) == "data: one\n\n");
  gate.open();
  CHECK(r.body.read_all(100) == "data: two\n\n");
}

TEST_CASE("a slow stream of known length arrives in pieces about one flush interval apart") {
  constexpr int pieces = 8;
  chain c(
      [](http::server_request&, http::response_writer& w) {
        w.headers().set("Content-Length", std::to_string(pieces));
        for (int i = 0; i < pieces; ++i) {
          w.write("x");
          w.flush();
          leash::this_task::sleep_for(25ms);
        }
      },
      100ms);
  http::transport t;
  http::response r = t.round_trip(get(c.port()));
  std::vector<long long> arrivals;
  const auto start = std::chrono::steady_clock::now();
  char buf[64];
  std::size_t total = 0;
  while (std::size_t n = r.body.read(std::span<char>(buf))) {
    total += n;
    arrivals.push_back(ms_since(start));
  }
  CHECK(total == pieces);
  // 8 bytes over ~200 ms, flushed every 100 ms: a few reads, not one per byte.
  CHECK(arrivals.size() >= 2);
  CHECK(arrivals.size() < pieces);
  CHECK(arrivals.front() >= 50);  // nothing before the first tick
}

TEST_CASE("an upstream that dies mid-body aborts the downstream connection") {
  http_test::raw_server upstream([](http_test::conn& c) {
    if (c.read_request()) c.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..");
  });
  leash::nursery n;
  http::transport to_upstream;
  http::reverse_proxy proxy(to_upstream, {.port = upstream.port()});
  http::server front(n, std::cref(proxy));
  http::transport t;
  http::response r = t.round_trip(get(front.port()));
  CHECK(r.status() == 200);
  CHECK_THROWS_AS(r.body.read_all(1000), http::protocol_error);  // truncated, not a clean end
  r.body.close();
  CHECK(t.stats().open == 0);
  CHECK(t.stats().idle == 0);
}

TEST_CASE("an upstream that cannot be reached is answered 502") {
  std::uint16_t dead_port;
  { dead_port = http_test::raw_server({}).port(); }  // listened, then closed
  leash::nursery n;
  http::transport to_upstream;
  http::reverse_proxy proxy(to_upstream, {.port = dead_port});
  http::server front(n, std::cref(proxy));
  http::transport t;
  http::response r = t.round_trip(get(front.port()));
  CHECK(r.status() == 502);
  r.body.close();
}

TEST_CASE("a client that goes away cancels the upstream request") {
  http_test::gate gate(100);
  std::atomic<int> proxied{0};
  leash::nursery n;
  http::server upstream(n, [&](http::server_request&, http::response_writer& w) {
    gate.arrive_and_wait();
    w.write("too late");
  });
  http::transport to_upstream;
  http::reverse_proxy proxy(to_upstream, {.port = upstream.port()});
  http::server front(n, [&](http::server_request& req, http::response_writer& w) -> leash::coro<> {
    // Counted however the call ends: the server cancels the handler's scope
    // when its client leaves, and the proxy's await throws cancelled.
    struct count_on_exit {
      std::atomic<int>& count;
      ~count_on_exit() { ++count; }
    } counted{proxied};
    co_await proxy(req, w);
  });
  {
    namespace net = http::detail;
    net::socket s = net::dial("127.0.0.1", front.port(), net::clock::time_point::max(), {});
    net::write_all(s.fd(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n", net::clock::time_point::max(), {});
    gate.wait_arrived(1);
  }  // the client goes away
  const auto start = std::chrono::steady_clock::now();
  CHECK(eventually([&] { return proxied == 1; }));
  CHECK(ms_since(start) < 500);
  CHECK(eventually([&] { return to_upstream.stats().open == 0; }));
  gate.open();
}

TEST_CASE("many proxied responses leave no connection or task behind") {
  const std::size_t tasks = http_test::tasks_running();
  chain c([](http::server_request& req, http::response_writer& w) {
    w.write(std::string(req.target()));
  });
  http::transport t;
  const int n = http_test::scaled(300);
  for (int i = 0; i < n; ++i) {
    const std::string target = "/" + std::to_string(i);
    REQUIRE(t.round_trip(get(c.port(), target)).body.read_all(100) == target);
  }
  CHECK(t.stats().dials == 1);
  CHECK(c.to_upstream.stats().dials == 1);
  t.close_idle();
  c.to_upstream.close_idle();
  // The front and upstream connections end once their clients closed; what
  // remains is two servers' accept tasks and watchers of clients that left
  // (a transport's idle timer is no task).
  CHECK(eventually(
      [&] { return c.front.stats().connections == 0 && c.upstream.stats().connections == 0; }));
  CHECK(eventually([&] { return http_test::tasks_running() == tasks + 4; }));
}

TEST_CASE("a chunked upload through the proxy reaches the upstream handler intact and in pieces") {
  constexpr std::size_t piece = 16 * 1024;
  constexpr std::size_t pieces = 20;
  http_test::progress upstream_got;
  std::atomic<int> reads{0};
  chain c([&](http::server_request& req, http::response_writer& w) {
    CHECK(req.headers().get("transfer-encoding") == "chunked");  // forwarded as it came
    std::string all;
    char buf[64 * 1024];
    while (std::size_t n = req.body().read(std::span<char>(buf))) {
      ++reads;
      all.append(buf, n);
      upstream_got.add(n);
    }
    w.write(all);
  });
  http::transport t;
  http::request up{"127.0.0.1", c.port(), {"POST", "/upload"}, {}};
  // Piece k is made only once the upstream handler holds every byte before
  // it: a proxy that buffered the body whole would never finish (the wait
  // throws after 20 s).
  up.stream = leash::body(std::make_unique<http_test::paced_source>(
      pieces, piece, [&](std::size_t k) { upstream_got.wait_for(k * piece); }));
  http::response r = t.round_trip(up);
  CHECK(r.status() == 200);
  CHECK(r.body.read_all(1 << 22) == http_test::paced_content(pieces, piece));
  CHECK(reads >= static_cast<int>(pieces));
}

TEST_CASE("a client body that breaks chunked framing is answered 400 by the proxy, not 502") {
  chain c([](http::server_request& req, http::response_writer& w) { w.write(req.read_body()); });
  const std::string reply = http_test::exchange_raw(
      c.port(),
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n\r\n");
  CHECK(reply.find("HTTP/1.1 400 ") == 0);
}

TEST_CASE(
    "Expect: 100-continue through the proxy: 100 from the proxy's first read, then the body") {
  chain c([](http::server_request& req, http::response_writer& w) {
    CHECK_FALSE(req.headers().contains("expect"));  // answered by the proxy, not forwarded
    w.write("got " + req.read_body());
  });
  namespace net = http::detail;
  net::socket s = net::dial("127.0.0.1", c.port(), net::clock::time_point::max(), {});
  net::write_all(s.fd(),
                 "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
                 net::clock::time_point::max(), {});
  std::string got;
  char ch;
  std::size_t n = 0;
  const auto deadline = leash::detail::deadline_after(5s);
  while (got.find("\r\n\r\n") == std::string::npos &&
         net::read_some(s.fd(), &ch, 1, n, deadline, {}) == net::read_status::data)
    got.push_back(ch);
  CHECK(got == "HTTP/1.1 100 Continue\r\n\r\n");  // the body is sent only after it
  net::write_all(s.fd(), "hello", net::clock::time_point::max(), {});
  got.clear();
  while (got.find("got hello") == std::string::npos &&
         net::read_some(s.fd(), &ch, 1, n, deadline, {}) == net::read_status::data)
    got.push_back(ch);
  CHECK(got.find("HTTP/1.1 200 OK\r\n") == 0);
  CHECK(got.find("got hello") != std::string::npos);
}

TEST_CASE("a smuggling HTTP/1.0 request with Transfer-Encoding never reaches the upstream") {
  std::atomic<int> upstream_calls{0};
  chain c([&](http::server_request&, http::response_writer& w) {
    ++upstream_calls;
    w.write("upstream");
  });
  const std::string reply = http_test::exchange_raw(
      c.port(),
      "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
      "0\r\n\r\nGET /smuggled HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  CHECK(reply.find("HTTP/1.1 400 ") == 0);
  CHECK(reply.find("HTTP/1.1", 1) == std::string::npos);
  CHECK(upstream_calls == 0);
}

TEST_CASE(
    "an absolute-form target goes upstream in origin-form, with the URI's authority as Host") {
  chain c([](http::server_request& req, http::response_writer& w) {
    w.write(std::string(req.target()) + " " + std::string(req.headers().get("host").value_or("")) +
            " " + std::to_string(req.headers().count("host")));
  });
  const std::string reply =
      http_test::exchange_raw(c.port(),
                              "GET http://other.example:81/x?q=1 HTTP/1.1\r\nHost: a\r\n"
                              "Connection: close\r\n\r\n");
  CHECK(reply.find("HTTP/1.1 200 ") == 0);
  CHECK(reply.substr(reply.find("\r\n\r\n") + 4) == "/x?q=1 other.example:81 1");
}

TEST_CASE("every Proxy-* field is dropped both ways") {
  chain c([](http::server_request& req, http::response_writer& w) {
    std::string seen;
    for (auto [name, value] : req.headers()) {
      if (name.size() >= 6 && leash::http::detail::iequals(name.substr(0, 6), "proxy-")) {
        seen += std::string(name) + ";";
      }
    }
    w.headers().add("Proxy-Authenticate", "Basic");
    w.headers().add("Proxy-Status", "upstream");
    w.headers().add("X-Kept", "1");
    w.write(seen.empty() ? "none" : seen);
  });
  http::transport t;
  http::request req = get(c.port());
  req.head.headers.add("Proxy-Authorization", "Basic eDp5");
  req.head.headers.add("Proxy-Connection", "keep-alive");
  req.head.headers.add("PROXY-Custom", "1");
  http::response r = t.round_trip(req);
  CHECK(r.body.read_all(100) == "none");
  CHECK(r.head.headers.get("x-kept") == "1");
  CHECK(!r.head.headers.contains("proxy-authenticate"));
  CHECK(!r.head.headers.contains("proxy-status"));
}

namespace {

// The upstream's view of the X-Forwarded-* fields, as "for|proto|host".
void echo_forwarded(http::server_request& req, http::response_writer& w) {
  auto all = [&](std::string_view name) {
    std::string out;
    for (std::string_view v : req.headers().get_all(name))
      out += (out.empty() ? "" : "+") + std::string(v);
    return out;
  };
  w.write(all("x-forwarded-for") + "|" + all("x-forwarded-proto") + "|" + all("x-forwarded-host"));
}

http::request forwarded_request(std::uint16_t port) {
  http::request req = get(port);
  req.head.headers.add("Host", "front.example");
  req.head.headers.add("X-Forwarded-For", "203.0.113.9");
  req.head.headers.add("X-Forwarded-Proto", "https");
  req.head.headers.add("X-Forwarded-Host", "spoofed.example");
  return req;
}

}  // namespace

TEST_CASE(
    "X-Forwarded-For/-Proto/-Host: set from this hop; an incoming X-Forwarded-For is replaced") {
  chain c(echo_forwarded);
  http::transport t;
  http::response r = t.round_trip(forwarded_request(c.port()));
  CHECK(r.body.read_all(200) == "127.0.0.1|http|front.example");
}

TEST_CASE("trust_forwarded_for appends the client to an incoming X-Forwarded-For") {
  chain c(echo_forwarded, 100ms, true);
  http::transport t;
  http::response r = t.round_trip(forwarded_request(c.port()));
  CHECK(r.body.read_all(200) == "203.0.113.9, 127.0.0.1|http|front.example");
  http::request plain = get(c.port());
  CHECK(t.round_trip(plain).body.read_all(200).rfind("127.0.0.1|http|127.0.0.1:", 0) == 0);
}

TEST_CASE("an upstream's duplicate Content-Length reaches the client as one field") {
  for (const char* framing :
       {"Content-Length: 7, 7\r\n", "Content-Length: 7\r\nContent-Length: 7\r\n"}) {
    CAPTURE(framing);
    http_test::raw_server upstream([&](http_test::conn& k) {
      if (!k.read_request()) return;
      k.write(std::string("HTTP/1.1 200 OK\r\n") + framing + "Connection: close\r\n\r\nproxied");
      k.wait_eof();
    });
    leash::nursery n;
    http::transport to_upstream;
    http::reverse_proxy proxy(to_upstream, {.port = upstream.port()});
    http::server front(n, std::cref(proxy));
    const std::string reply = http_test::exchange_raw(
        front.port(), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    CHECK(reply.find("HTTP/1.1 200 ") == 0);
    CHECK(reply.find("Content-Length: 7\r\n") != std::string::npos);
    CHECK(reply.find("ontent-Length", reply.find("ontent-Length") + 1) == std::string::npos);
    CHECK(reply.substr(reply.size() - 7) == "proxied");
  }
}

namespace {

namespace net = http::detail;

// Threads that may start while proxied requests wait (coroutine workers,
// spare threads of a hand-off, the timer thread), not one per request.
constexpr std::size_t thread_slack = 16;

// Everything `s` receives until the server closes it (or 10 s passed).
std::string read_to_eof(const net::socket& s) {
  std::string out;
  char buf[4096];
  std::size_t got = 0;
  const auto deadline = leash::detail::deadline_after(10s);
  while (net::read_some(s.fd(), buf, sizeof buf, got, deadline, {}) == net::read_status::data)
    out.append(buf, got);
  return out;
}

}  // namespace

TEST_CASE("200 proxied requests waiting on a slow upstream hold no thread each") {
  constexpr int clients = 200;
  const int fds = http_test::fd_count();
  const std::size_t tasks = http_test::tasks_running();
  {
    std::latch arrived(clients);  // every request reached the upstream
    leash::channel<int> release;  // closed: every upstream answer goes
    leash::nursery n;
    // A coroutine upstream: its waiting answers hold no thread either.
    http::server upstream(
        n, [&](http::server_request& req, http::response_writer& w) -> leash::coro<> {
          if (req.target() != "/warm") {
            arrived.count_down();
            (void)co_await release.async_recv();
          }
          co_await w.async_write("released");
        });
    http::transport to_upstream;
    http::reverse_proxy proxy(to_upstream, {.port = upstream.port()});
    http::server front(n, std::cref(proxy));
    // One request first, so that what starts once per process (workers, the
    // reactor, the timer thread) runs before counting.
    REQUIRE(http_test::exchange_raw(front.port(),
                                    "GET /warm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .ends_with("released"));
    const std::size_t threads = http_test::os_threads();
    std::vector<net::socket> socks;
    for (int i = 0; i < clients; ++i) {
      socks.push_back(net::dial("127.0.0.1", front.port(), net::clock::time_point::max(), {}));
      net::write_all(socks.back().fd(), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                     net::clock::time_point::max(), {});
    }
    arrived.wait();
    const std::size_t waiting_threads = http_test::os_threads();
    INFO("threads before: " << threads << ", while " << clients
                            << " requests wait: " << waiting_threads);
    CHECK(waiting_threads <= threads + thread_slack);
    release.close();
    int answered = 0;
    for (const auto& s : socks)
      answered += read_to_eof(s).ends_with("released") ? 1 : 0;
    CHECK(answered == clients);
  }
  CHECK(eventually([&] { return http_test::fd_count() == fds; }));
  CHECK(eventually([&] { return http_test::tasks_running() == tasks; }));
}

TEST_CASE("the proxy's periodic flusher has ended when the proxy's coroutine returns") {
  http_test::gate gate(100);
  leash::nursery n;
  // The second byte is written only once the client holds the first, which
  // only a tick of the flusher can have sent (the length is known).
  http::server upstream(n, [&](http::server_request& req, http::response_writer& w) {
    w.headers().set("Content-Length", "2");
    w.write("a");
    w.flush();
    if (req.target() == "/slow") gate.arrive_and_wait();
    w.write("b");
  });
  http::transport to_upstream;
  http::reverse_proxy proxy(to_upstream, {.port = upstream.port(), .flush_interval = 1ms});
  std::atomic<std::size_t> tasks_before{0};
  std::atomic<std::size_t> tasks_after{0};
  http::server front(n, [&](http::server_request& req, http::response_writer& w) -> leash::coro<> {
    tasks_before = http_test::tasks_running();
    co_await proxy(req, w);
    tasks_after = http_test::tasks_running();  // before the server finishes the response
  });
  http::transport t;
  // The first exchange starts what lives on (pooled connections and their tasks).
  REQUIRE(t.round_trip(get(front.port())).body.read_all(10) == "ab");
  http::response r = t.round_trip(get(front.port(), "/slow"));
  char first = 0;
  CHECK(r.body.read(std::span<char>(&first, 1)) == 1);
  CHECK(first == 'a');
  gate.open();
  CHECK(r.body.read_all(10) == "b");
  CHECK(tasks_after == tasks_before);
}

TEST_CASE("the proxy serves as std::ref, std::cref and by value") {
  leash::nursery n;
  http::server upstream(n, [](http::server_request& req, http::response_writer& w) {
    w.write(std::string(req.target()));
  });
  http::transport to_upstream;
  http::reverse_proxy proxy(to_upstream, {.port = upstream.port()});
  http::server by_ref(n, std::ref(proxy));
  http::server by_cref(n, std::cref(proxy));
  http::server by_value(n, proxy);
  http::transport t;
  for (const http::server* front : {&by_ref, &by_cref, &by_value}) {
    CHECK(t.round_trip(get(front->port(), "/x")).body.read_all(10) == "/x");
  }
}
