// bench_memory_http: keep-alive GET round trips through leash::http::transport
// over in-memory connections (memory_listener's dialer()), beside Go's
// http.Client over net.Pipe (tests/bench/go/memory_http.go).
//
//   mem_roundtrip    one client, sequential round trips     ns per round trip
//   mem_roundtrip_8  8 clients at once, each on its own     ns per round trip
//                    pooled connection                      (wall / all round trips)
//
// The server is a stub on the other end of each connection: it reads until a
// request head's "\r\n\r\n" and writes a fixed 5-byte response, which the
// client reads to its end each time. Go's "go" row runs the same stub, so
// both sides do the same work. Row "leash" runs clients and stub as thread
// tasks (blocking round_trip, read_some, write_all); "leash_coro" runs them
// as coroutine tasks (co_await async_round_trip, async_read_some,
// async_write_all). Every connection is dialed and has carried a few round
// trips before the clock starts.
//
// Prints wall ns and CPU (user+sys of the process: client and server) ns per
// round trip, median of -runs runs. Flags: -n round trips per run (20000),
// -runs (5), -pinned 1 (only tags the scenario names: run.sh runs the binary
// under `taskset -c 0` for that).
#include <cstdint>
#include <leash.hpp>
#include <leash/http/memory.hpp>
#include <leash/http/transport.hpp>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "bench_util.hpp"

namespace {

namespace http = leash::http;
using bench::report;
using bench::result;

constexpr std::string_view response_bytes = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
constexpr std::string_view head_end = "\r\n\r\n";
constexpr std::size_t body_size = 5;       // "hello"
constexpr std::size_t body_limit = 64;     // the body is 5 bytes; more is a bug
constexpr long warm_round_trips = 100;     // per client: dialed, pooled, caches warm
constexpr std::size_t read_chunk = 1024;   // a request head usually arrives in one read
constexpr long concurrent_clients = 8;     // mem_roundtrip_8
constexpr std::size_t idle_per_host = 16;  // every client's connection stays pooled

const http::request get_request{"mem.test", 80, {"GET", "/"}};

// Removes each complete request head from the front of `pending` (the bytes
// read so far); returns how many it removed: the responses owed.
std::size_t complete_heads(std::string& pending) {
  std::size_t heads = 0;
  for (std::size_t end; (end = pending.find(head_end)) != std::string::npos; ++heads) {
    pending.erase(0, end + head_end.size());
  }
  return heads;
}

// The stub on one connection: a response per request head, until the client
// closes.
void serve_blocking(http::memory_end& c) {
  std::string pending;
  char buf[read_chunk];
  while (const std::size_t n = c.read_some(buf)) {
    pending.append(buf, n);
    for (std::size_t k = complete_heads(pending); k > 0; --k)
      c.write_all(response_bytes);
  }
}

leash::coro<void> serve_coro(std::unique_ptr<http::memory_end> c) {
  std::string pending;
  char buf[read_chunk];
  while (const std::size_t n = co_await c->async_read_some(std::span<char>(buf))) {
    pending.append(buf, n);
    for (std::size_t k = complete_heads(pending); k > 0; --k)
      co_await c->async_write_all(response_bytes);
  }
}

// Accepts until the listener closes; a stub task per connection.
void accept_blocking(http::memory_listener& server, leash::nursery& n) {
  while (std::shared_ptr<http::memory_end> c = server.accept()) {
    n.spawn([c] { serve_blocking(*c); });
  }
}

leash::coro<void> accept_coro(http::memory_listener& server, leash::nursery& n) {
  while (std::unique_ptr<http::memory_end> c = co_await server.async_accept()) {
    n.spawn([conn = std::make_shared<std::unique_ptr<http::memory_end>>(std::move(c))] {
      return serve_coro(std::move(*conn));
    });
  }
}

void client_blocking(http::transport& t, long k) {
  for (long i = 0; i < k; ++i) {
    http::response r = t.round_trip(get_request);
    if (r.body.read_all(body_limit).size() != body_size)
      throw std::runtime_error("bench: short body");
  }
}

leash::coro<void> client_coro(http::transport& t, long k) {
  for (long i = 0; i < k; ++i) {
    http::response r = co_await t.async_round_trip(get_request);
    if ((co_await r.body.async_read_all(body_limit)).size() != body_size) {
      throw std::runtime_error("bench: short body");
    }
  }
}

// Runs `clients` clients of k round trips each to completion.
void clients_round(http::transport& t, long clients, long k, bool coro) {
  leash::nursery inner;
  for (long c = 0; c < clients; ++c) {
    if (coro) {
      inner.spawn([&t, k] { return client_coro(t, k); });
    } else {
      inner.spawn([&t, k] { client_blocking(t, k); });
    }
  }
  inner.wait();
}

// One run: a fresh listener, transport and stub server; warm round trips,
// then n round trips split over `clients` clients, timed; per round trip.
result timed_run(long clients, long n, bool coro) {
  http::memory_listener server;
  http::transport t({.max_idle_per_host = idle_per_host, .dial = server.dialer()});
  result out{};
  leash::run_nursery([&](leash::nursery& ns) {
    if (coro) {
      ns.spawn([&server, &ns] { return accept_coro(server, ns); });
    } else {
      ns.spawn([&server, &ns] { accept_blocking(server, ns); });
    }
    clients_round(t, clients, warm_round_trips, coro);
    const long per_client = n / clients;
    const double total = static_cast<double>(per_client * clients);
    const double c0 = bench::cpu_seconds();
    const double wall = bench::seconds([&] { clients_round(t, clients, per_client, coro); });
    out = {wall * 1e9 / total, (bench::cpu_seconds() - c0) * 1e9 / total};
    if (t.stats().dials > static_cast<std::uint64_t>(clients)) {
      throw std::runtime_error("bench_memory_http: a connection was not reused");
    }
    server.close();  // the acceptor ends
    t.close_idle();  // each stub reads the end of its stream and ends
  });
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const long n = bench::flag(argc, argv, "-n", 20'000);
  const long runs = bench::flag(argc, argv, "-runs", 5);
  const std::string tag = bench::flag(argc, argv, "-pinned", 0) != 0 ? "_pinned" : "";
  for (const long clients : {1L, concurrent_clients}) {
    const std::string scenario =
        (clients == 1 ? std::string("mem_roundtrip") : "mem_roundtrip_" + std::to_string(clients)) +
        tag;
    report(scenario, "leash", runs, [&] { return timed_run(clients, n, false); });
    report(scenario, "leash_coro", runs, [&] { return timed_run(clients, n, true); });
  }
  return 0;
}
