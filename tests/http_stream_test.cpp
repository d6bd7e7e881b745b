// Tests for leash/http/stream.hpp: a user's stream under the server
// (server_options::wrap_connection) and the transport
// (transport_options::wrap_connection). The test streams XOR every byte, so
// only a peer with the same stream understands them; the stuttering one also
// takes one byte per step every other call and, every other read, moves the
// socket's bytes into a buffer of its own and says want::read (leash must
// read again, not wait: the socket has nothing more to say).
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <leash/http/client.hpp>
#include <leash/http/server.hpp>
#include <leash/http/stream.hpp>
#include <leash/http/transport.hpp>
#include <leash/nursery.hpp>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>

#include "support/http_fixture.hpp"

using namespace std::chrono_literals;
namespace http = leash::http;
using http_test::eventually;

namespace {

constexpr char key = 0x5a;  // every byte on the wire is XORed with it

// A response big enough that a small send buffer makes the server wait for
// the client (want::write).
constexpr std::size_t big_size = 1 << 20;
// The server's send buffer: far below big_size.
constexpr int small_sndbuf = 4096;

// What the streams of one side did.
struct stream_counts {
  std::atomic<int> made{0};
  std::atomic<int> shutdowns{0};
  std::atomic<int> read_waits{0};        // reads that said want::read on an empty socket
  std::atomic<int> write_waits{0};       // writes that said want::write on a full socket
  std::atomic<int> buffered_retries{0};  // reads that said want::read with bytes buffered
};

// XORs every byte; `stutter` as the header comment says. Says a want only
// after the socket said EAGAIN, or with has_buffered() true.
class xor_stream final : public http::stream {
 public:
  xor_stream(int fd, stream_counts& counts, bool stutter)
      : fd_(fd), counts_(counts), stutter_(stutter) {
    ++counts_.made;
  }

  http::step read(std::span<char> into) override {
    const std::lock_guard lock(mutex_);  // read and write may come from two threads
    const bool odd = (++reads_ % 2) == 1;
    if (stutter_ && odd && take_from_socket()) {
      ++counts_.buffered_retries;
      return {0, http::want::read};
    }
    const std::size_t room = stutter_ && odd ? std::min<std::size_t>(1, into.size()) : into.size();
    if (!pending_.empty()) {
      const std::size_t n = std::min(room, pending_.size());
      pending_.copy(into.data(), n);
      pending_.erase(0, n);
      return {n, http::want::nothing};
    }
    const ssize_t n = ::recv(fd_, into.data(), room, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      ++counts_.read_waits;
      return {0, http::want::read};
    }
    if (n < 0) throw http::io_error("xor read", std::error_code(errno, std::generic_category()));
    for (ssize_t i = 0; i < n; ++i)
      into[static_cast<std::size_t>(i)] ^= key;
    return {static_cast<std::size_t>(n), http::want::nothing};
  }

  http::step write(std::string_view data) override {
    const std::lock_guard lock(mutex_);
    const bool odd = (++writes_ % 2) == 1;
    std::string out(data.substr(0, stutter_ && odd ? 1 : data.size()));
    for (char& c : out)
      c ^= key;
    const ssize_t n = ::send(fd_, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      ++counts_.write_waits;
      return {0, http::want::write};
    }
    if (n < 0) throw http::io_error("xor write", std::error_code(errno, std::generic_category()));
    return {static_cast<std::size_t>(n), http::want::nothing};
  }

  http::want shutdown() override {
    ++counts_.shutdowns;
    return http::want::nothing;
  }

  bool has_buffered() const override {
    const std::lock_guard lock(mutex_);
    return !pending_.empty();
  }

 private:
  // Moves what the socket has into pending_; true when that is something.
  bool take_from_socket() {
    char tmp[4096];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, MSG_DONTWAIT);
    if (n <= 0) return false;
    for (ssize_t i = 0; i < n; ++i)
      pending_.push_back(static_cast<char>(tmp[i] ^ key));
    return true;
  }

  int fd_;
  stream_counts& counts_;
  bool stutter_;
  mutable std::mutex mutex_;  // guards the fields below
  int reads_ = 0;
  int writes_ = 0;
  std::string pending_;  // bytes taken from the socket, decoded, not yet read
};

http::server_options xor_server_options(stream_counts& counts, bool stutter) {
  http::server_options o;
  o.wrap_connection = [&counts, stutter](int fd) {
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small_sndbuf, sizeof small_sndbuf);
    return std::make_unique<xor_stream>(fd, counts, stutter);
  };
  return o;
}

http::transport_options xor_transport_options(stream_counts& counts, bool stutter) {
  http::transport_options o;
  o.wrap_connection = [&counts, stutter](int fd, const std::string& host) {
    if (host != "127.0.0.1") throw std::logic_error("wrap_connection: wrong host " + host);
    return std::make_unique<xor_stream>(fd, counts, stutter);
  };
  return o;
}

// GET /big: big_size bytes of 'x'; anything else: "<method> <target> <body
// size>", the body read in pieces.
void plain_handler(http::server_request& req, http::response_writer& w) {
  if (req.target() == "/big") {
    w.write(std::string(big_size, 'x'));
    return;
  }
  std::size_t size = 0;
  char buf[1000];
  while (std::size_t n = req.body().read(std::span<char>(buf)))
    size += n;
  w.write(std::string(req.method()) + " " + std::string(req.target()) + " " + std::to_string(size));
}

leash::coro<void> coro_handler(http::server_request& req, http::response_writer& w) {
  if (req.target() == "/big") {
    co_await w.async_write(std::string(big_size, 'x'));
    co_return;
  }
  std::size_t size = 0;
  char buf[1000];
  while (std::size_t n = co_await req.body().async_read(std::span<char>(buf)))
    size += n;
  co_await w.async_write(std::string(req.method()) + " " + std::string(req.target()) + " " +
                         std::to_string(size));
}

// A server in a nursery of its own.
struct backend {
  template <class H>
  backend(H h, http::server_options o) : srv(n, std::move(h), std::move(o)) {}
  std::string url(const std::string& target) const {
    return "http://127.0.0.1:" + std::to_string(srv.port()) + target;
  }
  leash::nursery n;
  http::server srv;
};

// A POST of `size` bytes sent as a chunked stream.
http::request streamed_post(std::uint16_t port, std::size_t size) {
  http::request r = http_test::get(port, "/up", "POST");
  r.stream = leash::memory_body(std::string(size, 'p'), 3000);
  return r;
}

constexpr std::size_t post_size = 100'000;  // several socket reads' worth

// GET, a streamed POST and a big GET on one pooled connection, blocking.
void exchange_blocking(backend& b, http::transport& t) {
  const std::uint16_t port = b.srv.port();
  http::response r = t.round_trip(http_test::get(port, "/a"));
  CHECK(r.body.read_all(100) == "GET /a 0");
  r = t.round_trip(streamed_post(port, post_size));
  CHECK(r.body.read_all(100) == "POST /up " + std::to_string(post_size));
  http::client c(t);
  r = c.get(b.url("/big"));
  CHECK(r.body.read_all(big_size) == std::string(big_size, 'x'));
  CHECK(t.stats().dials == 1);
  CHECK(t.stats().reuses == 2);
}

// exchange_blocking() from a coroutine task.
void exchange_async(backend& b, http::transport& t) {
  const std::uint16_t port = b.srv.port();
  std::string got_get, got_post, got_big;
  leash::nursery n;
  n.spawn([&]() -> leash::coro<> {
    http::response r = co_await t.async_round_trip(http_test::get(port, "/a"));
    got_get = co_await r.body.async_read_all(100);
    r = co_await t.async_round_trip(streamed_post(port, post_size));
    got_post = co_await r.body.async_read_all(100);
    http::client c(t);
    r = co_await c.async_get(b.url("/big"));
    got_big = co_await r.body.async_read_all(big_size);
  });
  n.wait();
  CHECK(got_get == "GET /a 0");
  CHECK(got_post == "POST /up " + std::to_string(post_size));
  CHECK(got_big == std::string(big_size, 'x'));
  CHECK(t.stats().dials == 1);
  CHECK(t.stats().reuses == 2);
}

template <class H>
void serve_through_streams(H handler, bool stutter) {
  stream_counts server_side, client_side;
  backend b(handler, xor_server_options(server_side, stutter));
  {
    http::transport t(xor_transport_options(client_side, stutter));
    exchange_blocking(b, t);
  }
  {
    http::transport t(xor_transport_options(client_side, stutter));
    exchange_async(b, t);
  }
  CHECK(client_side.made == 2);
  CHECK(eventually([&] { return server_side.made == 2; }));
  // A big response to a small send buffer waits for the client.
  CHECK(server_side.write_waits > 0);
  CHECK(client_side.read_waits > 0);
  if (stutter) {
    CHECK(server_side.buffered_retries > 0);
    CHECK(client_side.buffered_retries > 0);
  }
}

struct wrap_refused : std::runtime_error {
  wrap_refused() : std::runtime_error("test: wrap refused") {}
};

}  // namespace

TEST_CASE("a plain handler serves GET and a streamed POST through a XOR stream") {
  serve_through_streams(plain_handler, false);
}

TEST_CASE("a coroutine handler serves GET and a streamed POST through a XOR stream") {
  serve_through_streams(coro_handler, false);
}

TEST_CASE("a stuttering stream: short steps and want::read with bytes buffered, plain handler") {
  serve_through_streams(plain_handler, true);
}

TEST_CASE(
    "a stuttering stream: short steps and want::read with bytes buffered, coroutine "
    "handler") {
  serve_through_streams(coro_handler, true);
}

TEST_CASE("a plain client gets an error, not an answer, from a XOR server") {
  stream_counts server_side;
  http::server_options o = xor_server_options(server_side, false);
  o.header_timeout = 100ms;  // the garbled head never ends: the server answers 408 (garbled)
  backend b(plain_handler, o);
  http::transport t;
  CHECK_THROWS_AS((void)t.round_trip(http_test::get(b.srv.port(), "/a")), http::error);
}

TEST_CASE("a server whose wrap_connection throws counts it and serves the next connection") {
  stream_counts server_side;
  std::atomic<int> calls{0};
  http::server_options o;
  o.wrap_connection = [&](int fd) -> std::unique_ptr<http::stream> {
    if (++calls == 1) throw wrap_refused();
    return std::make_unique<xor_stream>(fd, server_side, false);
  };
  backend b(plain_handler, o);
  stream_counts client_side;
  http::transport t(xor_transport_options(client_side, false));
  CHECK_THROWS_AS((void)t.round_trip(http_test::get(b.srv.port(), "/a")), http::error);
  http::response r = t.round_trip(http_test::get(b.srv.port(), "/b"));
  CHECK(r.body.read_all(100) == "GET /b 0");
  CHECK(b.srv.stats().wrap_failures == 1);
}

TEST_CASE("a transport whose wrap_connection throws fails the round trip with that exception") {
  backend b(plain_handler, {});
  http::transport_options o;
  o.wrap_connection = [](int, const std::string&) -> std::unique_ptr<http::stream> {
    throw wrap_refused();
  };
  http::transport t(o);
  CHECK_THROWS_AS((void)t.round_trip(http_test::get(b.srv.port(), "/a")), wrap_refused);
  bool async_refused = false;
  leash::nursery n;
  n.spawn([&]() -> leash::coro<> {
    try {
      (void)co_await t.async_round_trip(http_test::get(b.srv.port(), "/a"));
    } catch (const wrap_refused&) {
      async_refused = true;
    }
  });
  n.wait();
  CHECK(async_refused);
  CHECK(t.stats().open == 0);
  CHECK(t.stats().dials == 0);
}

TEST_CASE("the streams' shutdown() is called when their connections close") {
  stream_counts server_side, client_side;
  backend b(plain_handler, xor_server_options(server_side, false));
  http::transport t(xor_transport_options(client_side, false));
  http::request req = http_test::get(b.srv.port(), "/a");
  req.head.headers.add("Connection", "close");  // the server ends the connection after it
  http::response r = t.round_trip(req);
  CHECK(r.body.read_all(100) == "GET /a 0");
  CHECK(eventually([&] { return server_side.shutdowns == 1; }));
  CHECK(client_side.shutdowns == 1);  // not reusable: closed when its body was
  r = t.round_trip(http_test::get(b.srv.port(), "/b"));
  CHECK(r.body.read_all(100) == "GET /b 0");
  CHECK(t.stats().idle == 1);
  t.close_idle();  // a pooled connection's end is orderly too
  CHECK(client_side.shutdowns == 2);
  CHECK(eventually([&] { return server_side.shutdowns == 2; }));  // the client left
}
