// Tests for leash/http/server.hpp under load and abuse: the listen backlog,
// max_connections, header_timeout against a slowloris, handlers cancelled by
// a client that left, accept failures when out of fds, IPv6, and dialing
// every resolved address.
#include <dirent.h>
#include <doctest/doctest.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <future>
#include <leash/http/client.hpp>
#include <leash/http/server.hpp>
#include <leash/http/transport.hpp>
#include <leash/nursery.hpp>
#include <leash/runtime.hpp>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/http_fixture.hpp"
#include "support/sanitizer.hpp"

using namespace std::chrono_literals;
namespace http = leash::http;
namespace net = leash::http::detail;
using http_test::eventually;
using http_test::get;
using http_test::os_threads;

namespace {

// Generous bound of every blocking read a test client makes (a broken server
// fails the test instead of hanging it).
constexpr auto client_read_bound = 10s;

// A blocking TCP client socket, not connected yet.
net::socket client_socket() {
  net::socket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(s.valid());
  const timeval tv{std::chrono::duration_cast<std::chrono::seconds>(client_read_bound).count(), 0};
  ::setsockopt(s.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return s;
}

// Connects `s` to 127.0.0.1:port (needs no new fd).
void connect_to(const net::socket& s, std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(s.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
}

// A blocking TCP client socket connected to 127.0.0.1:port.
net::socket connect_blocking(std::uint16_t port) {
  net::socket s = client_socket();
  connect_to(s, port);
  return s;
}

void send_text(const net::socket& s, std::string_view text) {
  REQUIRE(::send(s.fd(), text.data(), text.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(text.size()));
}

// Reads one response with "Content-Length: N" from `in` (bytes already
// received) and the socket; leaves what follows it in `in`. "" when the
// connection ended or timed out before a complete response.
std::string read_response(const net::socket& s, std::string& in) {
  char buf[4096];
  for (;;) {
    const std::size_t head = in.find("\r\n\r\n");
    if (head != std::string::npos) {
      const std::size_t cl = in.find("Content-Length: ");
      const std::size_t length = cl == std::string::npos ? 0 : std::stoul(in.substr(cl + 16));
      if (in.size() >= head + 4 + length) {
        std::string out = in.substr(0, head + 4 + length);
        in.erase(0, out.size());
        return out;
      }
    }
    const ssize_t n = ::recv(s.fd(), buf, sizeof buf, 0);
    if (n <= 0) return {};
    in.append(buf, static_cast<std::size_t>(n));
  }
}

std::string read_response(const net::socket& s) {
  std::string in;
  return read_response(s, in);
}

// True when the server closed `s` (EOF or reset) before client_read_bound,
// dropping whatever it sent first.
bool closed_by_server(const net::socket& s) {
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(s.fd(), buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
    if (n < 0) return false;  // the receive timeout
  }
}

// The listening socket of this process bound to `port`, or -1.
int find_listener(std::uint16_t port) {
  for (int fd = 0; fd < 4096; ++fd) {
    int listening = 0;
    socklen_t len = sizeof listening;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    sockaddr_storage addr{};
    len = sizeof addr;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) continue;
    const std::uint16_t p = addr.ss_family == AF_INET6
                                ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    if (p == port) return fd;
  }
  return -1;
}

// The backlog a listening socket was given (Linux reports it in TCP_INFO).
int listen_backlog(int fd) {
  tcp_info info{};
  socklen_t len = sizeof info;
  REQUIRE(::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0);
  return static_cast<int>(info.tcpi_sacked);
}

// Sets the soft RLIMIT_NOFILE for its lifetime; restores it on every path.
class fd_limit {
 public:
  explicit fd_limit(rlim_t soft) {
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved_) == 0);
    rlimit lowered = saved_;
    lowered.rlim_cur = std::min(soft, saved_.rlim_max);
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &lowered) == 0);
  }
  fd_limit(const fd_limit&) = delete;
  fd_limit& operator=(const fd_limit&) = delete;
  ~fd_limit() { restore(); }
  void restore() { ::setrlimit(RLIMIT_NOFILE, &saved_); }

 private:
  rlimit saved_{};
};

// The lowest free fd number: with the soft limit there, opening any fd fails
// with EMFILE.
rlim_t lowest_free_fd() {
  const int fd = ::fcntl(0, F_DUPFD_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  ::close(fd);
  return static_cast<rlim_t>(fd);
}

// Raises the soft fd limit to at least `want` (up to the hard limit); the
// count that fits when the hard limit is lower.
int make_fds_available(int want) {
  rlimit r{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &r) == 0);
  if (r.rlim_cur < static_cast<rlim_t>(want)) {
    r.rlim_cur = std::min<rlim_t>(r.rlim_max, static_cast<rlim_t>(want));
    ::setrlimit(RLIMIT_NOFILE, &r);
  }
  return static_cast<int>(std::min<rlim_t>(r.rlim_cur, static_cast<rlim_t>(want)));
}

bool ipv6_loopback_available() {
  net::socket s(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return false;
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_loopback;
  return ::bind(s.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

void hello(http::server_request&, http::response_writer& w) {
  w.write("hello");
}

// UBSan's vptr check (built with ASan in CI) probes memory through a pipe:
// with no fd left it reports the object it cannot check. Cases that use up
// every fd skip themselves there.
constexpr const char* fd_starved_sanitizer =
    "skipped under ASan+UBSan: the sanitizer itself needs fds here";

constexpr std::string_view simple_get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

}  // namespace

TEST_CASE("the listen backlog is the system's somaxconn by default, or server_options::backlog") {
  leash::nursery n;
  http::server by_default(n, hello);
  http::server sixteen(n, hello, {.backlog = 16});
  const int a = find_listener(by_default.port());
  const int b = find_listener(sixteen.port());
  REQUIRE(a >= 0);
  REQUIRE(b >= 0);
  CHECK(listen_backlog(a) == net::system_somaxconn());
  CHECK(listen_backlog(b) == 16);
  CHECK(net::system_somaxconn() > 0);
}

TEST_CASE("a burst of simultaneous connects is all answered") {
  constexpr int wanted = http_test::scaled(1000);
  constexpr int fds_per_connection = 2;  // the client's and the server's end
  constexpr int spare_fds = 100;         // the test binary's own
  const int fds = make_fds_available(wanted * fds_per_connection + spare_fds);
  const int count = std::min(wanted, (fds - spare_fds) / fds_per_connection);
  if (count < wanted) MESSAGE("RLIMIT_NOFILE too low: a burst of " << count << " only");
  leash::nursery n;
  http::server srv(n, hello);
  constexpr int client_threads = 4;
  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < client_threads; ++t) {
    clients.emplace_back([&, t] {
      // Every connect of this thread first (non-blocking: all in flight at
      // once), then one request and its answer on each.
      std::vector<net::socket> socks;
      for (int i = t; i < count; i += client_threads) {
        net::socket s(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(srv.port());
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        (void)::connect(s.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        socks.push_back(std::move(s));
      }
      for (net::socket& s : socks) {
        const auto bound = leash::detail::deadline_after(client_read_bound);
        try {
          net::write_all(s.fd(), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", bound,
                         {});
          std::string in;
          char buf[1024];
          std::size_t got = 0;
          while (net::read_some(s.fd(), buf, sizeof buf, got, bound, {}) == net::read_status::data)
            in.append(buf, got);
          if (in.find("HTTP/1.1 200 OK") == 0) ++answered;
        } catch (const http::error&) {
        }
      }
    });
  }
  for (std::thread& c : clients)
    c.join();
  CHECK(answered == count);
  CHECK(srv.stats().requests == static_cast<std::uint64_t>(count));
}

TEST_CASE("max_connections: a third client is served only after one of the first two closes") {
  leash::nursery n;
  std::mutex log_mutex;
  std::vector<std::string> log;
  auto note = [&](std::string e) {
    std::lock_guard lock(log_mutex);
    log.push_back(std::move(e));
  };
  http::server srv(n,
                   [&](http::server_request& req, http::response_writer& w) {
                     note(std::string(req.target()));
                     w.write("ok");
                   },
                   {.max_connections = 2});
  net::socket a = connect_blocking(srv.port());
  send_text(a, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(read_response(a).find("HTTP/1.1 200") == 0);
  net::socket b = connect_blocking(srv.port());
  send_text(b, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(read_response(b).find("HTTP/1.1 200") == 0);
  net::socket c = connect_blocking(srv.port());  // completes in the kernel's backlog
  send_text(c, "GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
  // The accept loop waits for a free slot; c waits in the listener's queue.
  CHECK(eventually([&] { return srv.stats().accept_paused >= 1; }));
  const int listener = find_listener(srv.port());
  REQUIRE(listener >= 0);
  CHECK(eventually([&] {
    tcp_info info{};
    socklen_t len = sizeof info;
    ::getsockopt(listener, IPPROTO_TCP, TCP_INFO, &info, &len);
    return info.tcpi_unacked == 1;  // the accept queue's length
  }));
  CHECK(srv.stats().accepted == 2);
  note("closing a");
  a.close();
  CHECK(read_response(c).find("HTTP/1.1 200") == 0);
  std::lock_guard lock(log_mutex);
  CHECK(log == std::vector<std::string>{"/a", "/b", "closing a", "/c"});
  CHECK(srv.stats().accepted == 3);
}

TEST_CASE("header_timeout cuts a slowloris; other connections are still served") {
  leash::nursery n;
  http::server srv(n, hello, {.header_timeout = 200ms});
  net::socket slow = connect_blocking(srv.port());
  send_text(slow, "GET / HTTP/1.1\r\nX-Slow: ");
  // One more header byte every 50 ms for as long as the server keeps the
  // connection (the pace is the subject here), within a generous bound.
  std::string reply;
  bool closed = false;
  const auto bound = std::chrono::steady_clock::now() + client_read_bound;
  while (!closed && std::chrono::steady_clock::now() < bound) {
    if (::send(slow.fd(), "a", 1, MSG_NOSIGNAL) != 1) break;
    pollfd p{slow.fd(), POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char buf[512];
    const ssize_t got = ::recv(slow.fd(), buf, sizeof buf, 0);
    if (got > 0) reply.append(buf, static_cast<std::size_t>(got));
    closed = got <= 0;
  }
  CHECK(reply.find("HTTP/1.1 408 ") == 0);
  CHECK(closed_by_server(slow));
  CHECK(srv.stats().header_timeouts == 1);
  http::transport t;
  CHECK(t.round_trip(get(srv.port())).body.read_all(100) == "hello");
}

TEST_CASE("a client that connects and sends nothing is closed after header_timeout") {
  leash::nursery n;
  http::server srv(n, hello, {.header_timeout = 100ms});
  net::socket quiet = connect_blocking(srv.port());
  CHECK(closed_by_server(quiet));
  CHECK(srv.stats().header_timeouts == 1);
}

TEST_CASE("a handler is cancelled with \"client disconnected\" when its client closes") {
  leash::nursery n;
  std::promise<std::pair<leash::stop_reason, std::string>> seen;
  http_test::gate entered(1);
  http::server srv(n, [&](http::server_request& req, http::response_writer&) {
    if (req.method() == "POST") CHECK(req.read_body() == "abc");  // then a close counts
    try {
      entered.arrive_and_wait();
      leash::this_task::sleep_for(1h);
    } catch (const leash::cancelled& e) {
      seen.set_value({e.reason(), e.message()});
      throw;
    }
  });
  SUBCASE("a request without a body") {
    net::socket c = connect_blocking(srv.port());
    send_text(c, simple_get);
    entered.wait_arrived(1);
    c.close();
  }
  SUBCASE("a request whose body the handler read") {
    net::socket c = connect_blocking(srv.port());
    send_text(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    entered.wait_arrived(1);
    c.close();
  }
  auto result = seen.get_future();
  REQUIRE(result.wait_for(client_read_bound) == std::future_status::ready);
  const auto [reason, message] = result.get();
  CHECK(reason == leash::stop_reason::cancelled);
  CHECK(message == "client disconnected");
  CHECK(eventually([&] { return srv.stats().client_disconnects == 1; }));
}

TEST_CASE("a pipelined request is not a disconnect: both requests are answered") {
  leash::nursery n;
  http_test::gate first(2);  // the handler of /1 and the test
  std::atomic<int> cancelled{0};
  http::server srv(n, [&](http::server_request& req, http::response_writer& w) {
    try {
      if (req.target() == "/1") first.arrive_and_wait();
    } catch (const leash::cancelled&) {
      ++cancelled;
      throw;
    }
    w.write(std::string(req.target()));
  });
  net::socket c = connect_blocking(srv.port());
  send_text(c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n");
  first.wait_arrived(1);
  send_text(c, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n");  // while /1's handler runs
  first.arrive_and_wait();
  std::string in;
  const std::string one = read_response(c, in);
  const std::string two = read_response(c, in);
  CHECK(one.find("HTTP/1.1 200") == 0);
  CHECK(one.substr(one.size() - 2) == "/1");
  CHECK(two.substr(two.size() - 2) == "/2");
  CHECK(cancelled == 0);
  CHECK(srv.stats().client_disconnects == 0);
}

TEST_CASE("accept failures for lack of fds are counted, and the waiting client is served after") {
  if (leash_test::under_asan) {
    MESSAGE(fd_starved_sanitizer);
    return;
  }
  leash::nursery n;
  http::server srv(n, hello);
  net::socket c = client_socket();  // before the limit: the client has its fd
  {
    fd_limit lowered(lowest_free_fd());  // no fd left: the server's accept fails with EMFILE
    connect_to(c, srv.port());           // so the connection waits in the backlog
    send_text(c, simple_get);
    CHECK(eventually([&] { return srv.stats().accept_errors >= 1; }));
    CHECK(srv.stats().last_accept_error == EMFILE);
    CHECK(srv.stats().accepted == 0);
  }
  CHECK(read_response(c).find("HTTP/1.1 200") == 0);
  CHECK(srv.stats().accepted == 1);
}

TEST_CASE("a resolve that fails for lack of fds says so, not that the name is unknown") {
  if (leash_test::under_asan) {
    MESSAGE(fd_starved_sanitizer);
    return;
  }
  int code = 0;
  std::string what;
  {
    fd_limit lowered(lowest_free_fd());
    try {
      (void)net::dial("localhost", 1, net::clock::time_point::max(), {});
    } catch (const http::io_error& e) {
      code = e.code().value();
      what = e.what();
    }
  }
  CAPTURE(what);
  CHECK(code == EMFILE);
}

TEST_CASE("a server on ::1 answers a client dialing [::1]") {
  if (!ipv6_loopback_available()) {
    MESSAGE("no IPv6 loopback on this machine: skipped");
    return;
  }
  leash::nursery n;
  http::server srv(n, hello, {.host = "::1"});
  http::transport t;
  http::client c(t);
  CHECK(c.get("http://[::1]:" + std::to_string(srv.port()) + "/").body.read_all(100) == "hello");
  CHECK(t.round_trip({"::1", srv.port(), {"GET", "/"}}).body.read_all(100) == "hello");
}

TEST_CASE("a server on :: answers IPv6 and IPv4 clients") {
  if (!ipv6_loopback_available()) {
    MESSAGE("no IPv6 loopback on this machine: skipped");
    return;
  }
  leash::nursery n;
  http::server srv(n, hello, {.host = "::"});
  http::transport t;
  CHECK(t.round_trip({"::1", srv.port(), {"GET", "/"}}).body.read_all(100) == "hello");
  CHECK(t.round_trip(get(srv.port())).body.read_all(100) == "hello");
}

TEST_CASE("dialing tries every address until one connects") {
  leash::nursery n;
  http::server srv(n, hello);
  // A bound port nobody listens on: connecting to it is refused.
  net::socket closed_port(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(closed_port.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  ::getsockname(closed_port.fd(), reinterpret_cast<sockaddr*>(&addr), &len);
  net::endpoint refusing;
  std::memcpy(&refusing.addr, &addr, sizeof addr);
  refusing.len = sizeof addr;
  net::endpoint listening = refusing;
  reinterpret_cast<sockaddr_in*>(&listening.addr)->sin_port = htons(srv.port());

  net::socket s =
      net::dial_any({refusing, listening}, "dial test", net::clock::time_point::max(), {});
  net::write_all(s.fd(), simple_get, net::clock::time_point::max(), {});
  char buf[64];
  std::size_t got = 0;
  REQUIRE(net::read_some(s.fd(), buf, sizeof buf, got, net::clock::time_point::max(), {}) ==
          net::read_status::data);
  CHECK(std::string(buf, got).find("HTTP/1.1 200") == 0);
  // Every address refusing: the first one's error.
  try {
    (void)net::dial_any({refusing, refusing}, "dial test", net::clock::time_point::max(), {});
    FAIL("connected to a refusing address");
  } catch (const http::io_error& e) {
    CHECK(e.code().value() == ECONNREFUSED);
  }
}

namespace {

// Puts the runtime's defaults back however a test ends.
struct restore_runtime {
  ~restore_runtime() { leash::runtime::configure({}); }
};

// Opens `count` keep-alive connections that each made one request and got
// its answer; the status lines of the answers go to `statuses`.
void hold_answered(std::uint16_t port, std::vector<net::socket>& holders, int count,
                   std::vector<std::string>& statuses) {
  for (int i = 0; i < count; ++i) {
    holders.push_back(connect_blocking(port));
    send_text(holders.back(), simple_get);
    std::string in;
    const std::string r = read_response(holders.back(), in);
    statuses.push_back(r.substr(0, r.find("\r\n")));
  }
}

}  // namespace

TEST_CASE(
    "200 slow clients past the thread cap are all held, none refused, and fresh requests "
    "answered") {
  restore_runtime restore;
  constexpr int slow_clients = 200;
  const int fds = http_test::fd_count();
  leash::runtime::configure({.max_threads = 64});
  {
    leash::nursery n;
    http::server srv(n, hello);
    const std::size_t threads = os_threads();
    std::vector<net::socket> slow;
    for (int i = 0; i < slow_clients; ++i) {
      slow.push_back(connect_blocking(srv.port()));
      send_text(slow.back(), "GET / HTTP/1.1\r\n");  // a head that never ends
    }
    // A connection waiting for its head is a coroutine task holding no
    // thread: every slow client is held, none is refused for lack of one.
    CHECK(eventually(
        [&] { return srv.stats().connections == static_cast<std::size_t>(slow_clients); }));
    CHECK(srv.stats().connections_refused == 0);
    CHECK(os_threads() <= threads + 8);
    {
      auto fresh = connect_blocking(srv.port());
      send_text(fresh, simple_get);
      CHECK(read_response(fresh).rfind("HTTP/1.1 200", 0) == 0);
    }
    slow.clear();  // the slow clients leave
    CHECK(eventually([&] { return srv.stats().connections == 0; }));
    srv.shutdown(1s);
  }
  CHECK(eventually([&] { return http_test::fd_count() == fds; }));
}

TEST_CASE("with every thread the cap allows in use, new connections are still answered 200") {
  restore_runtime restore;
  leash::nursery n;
  http::server srv(n, hello);
  leash::runtime::configure({.max_threads = leash::runtime::stats().threads_alive});
  std::vector<net::socket> holders;
  std::vector<std::string> statuses;
  hold_answered(srv.port(), holders, 300, statuses);
  CHECK(statuses == std::vector<std::string>(300, "HTTP/1.1 200 OK"));
  CHECK(srv.stats().connections_refused == 0);
  leash::runtime::configure({});
  holders.clear();
  srv.shutdown(1s);
}

TEST_CASE("shutdown and the destructor end many held keep-alive connections") {
  restore_runtime restore;
  leash::nursery n;
  {
    http::server srv(n, hello);
    leash::runtime::configure({.max_threads = leash::runtime::stats().threads_alive});
    std::vector<net::socket> clients;
    std::vector<std::string> statuses;
    hold_answered(srv.port(), clients, 300, statuses);
    leash::runtime::configure({});
    srv.shutdown(100ms);
    CHECK(srv.stats().connections == 0);
    for (auto& c : clients)
      CHECK(closed_by_server(c));
  }  // ~server after shutdown: nothing dangles (ASan)
  http::server again(n, hello);
  again.shutdown(0ms);
}
