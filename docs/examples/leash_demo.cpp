// leash-demo: the Go leaks that leash prevents, written correctly, on loopback.
//
// 1. A fan-out with a deadline through the HTTP transport: three backends,
//    one hangs; the deadline cancels it and the two answers are kept.
// 2. Keep-alive: the same transport serves many more requests on the
//    connections it already dialled.
// 3. Streaming through the reverse proxy: server-sent events arrive as they
//    are produced; the proxy is a coroutine handler whose flushes end with it.
// 4. Idle keep-alive connections: 10 000 clients (coroutine tasks) each ask
//    once and stay connected while fresh requests are still answered; the
//    process's threads and memory before, while and after.
// 5. Graceful shutdown, and a leak check that finds nothing left running.
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <leash.hpp>
#include <leash/http/reverse_proxy.hpp>
#include <leash/http/server.hpp>
#include <leash/http/transport.hpp>
#include <leash/io/socket.hpp>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
namespace http = leash::http;
namespace io = leash::io;

namespace {

double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

struct backend {
  const char* name;
  std::chrono::milliseconds latency;  // 1h: hangs
};

const std::vector<backend> backends = {{"eu-west", 40ms}, {"us-east", 90ms}, {"ap-south", 1h}};

// The backends' server: /<name> answers after that backend's latency (a
// cancellable sleep, so the hanging one ends at shutdown); /events streams;
// anything else answers at once.
void serve_backend(http::server_request& req, http::response_writer& w) {
  for (const backend& b : backends) {
    if (req.target() == std::string("/") + b.name) {
      leash::this_task::sleep_for(b.latency);
      w.write(std::string("price from ") + b.name);
      return;
    }
  }
  if (req.target() != "/events") {
    w.write("hello");
    return;
  }
  w.headers().set("Content-Type", "text/event-stream");
  for (int i = 1; i <= 3; ++i) {
    w.write("data: tick " + std::to_string(i) + "\n\n");
    w.flush();
    leash::this_task::sleep_for(100ms);
  }
}

void section(const std::string& title) {
  std::printf("\n%s\n", title.c_str());
}

// Step 4's figures.
#if defined(__has_feature)
#define LEASH_DEMO_HAS_FEATURE(x) __has_feature(x)
#else
#define LEASH_DEMO_HAS_FEATURE(x) 0
#endif
#if defined(__SANITIZE_THREAD__) || LEASH_DEMO_HAS_FEATURE(thread_sanitizer)
// TSan's shadow state per thread and per socket operation: 10 000 connections took
// more memory than the machine had.
constexpr std::size_t idle_wanted = 1'000;
#else
constexpr std::size_t idle_wanted = 10'000;
#endif
// Fds for everything else in this process (servers, transports, epoll sets, stdio), with headroom.
constexpr rlim_t fd_margin = 300;
// Connects in flight at once: well under the listen backlog (net.core.somaxconn), so
// that no handshake is dropped and retried a second later.
constexpr std::size_t connect_batch = 500;
constexpr int fresh_requests = 5;
// Closing is done when the server is back to its connections and the thread count
// has stopped falling (threads exit after the work they served); polled this often,
// for at most this long.
constexpr auto settle_poll = 50ms;
constexpr auto settle_limit = 5s;
const std::string hello_request = "GET /hello HTTP/1.1\r\nHost: demo\r\n\r\n";

// This process's OS threads and resident memory.
struct process_cost {
  std::size_t threads = 0;
  double rss_mb = 0;
};

process_cost cost_now() {
  process_cost c;
  for (const auto& t : std::filesystem::directory_iterator("/proc/self/task")) {
    (void)t;
    ++c.threads;
  }
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmRSS:")) c.rss_mb = std::stod(line.substr(6)) / 1024;  // in kB
  }
  return c;
}

// How many idle connections step 4 opens, and why.
struct idle_plan {
  std::size_t count = 0;  // what the fd limit allows of idle_wanted
  rlim_t fd_limit = 0;    // the soft limit, raised to the hard one
};

idle_plan plan_idle() {
  idle_plan p;
  rlimit fds{};
  ::getrlimit(RLIMIT_NOFILE, &fds);
  fds.rlim_cur = fds.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &fds);  // may refuse an unlimited hard value: the old one stays
  ::getrlimit(RLIMIT_NOFILE, &fds);
  p.fd_limit = fds.rlim_cur;
  const std::size_t allowed = p.fd_limit > fd_margin ? (p.fd_limit - fd_margin) / 2 : 0;
  p.count = std::min(idle_wanted, allowed);
  return p;
}

// Sends GET /hello on `s` and reads the whole answer (a head, then the body
// "hello"); true for a 200.
leash::coro<bool> ask_hello(io::socket& s) {
  co_await s.async_write_all(std::as_bytes(std::span(hello_request)));
  std::string answer;
  std::array<std::byte, 512> buf;
  while (!answer.ends_with("\r\n\r\nhello")) {
    const std::size_t n = co_await s.async_read_some(buf);
    if (n == 0) break;  // closed: a 503 ends the connection
    answer.append(reinterpret_cast<const char*>(buf.data()), n);
  }
  co_return answer.starts_with("HTTP/1.1 200");
}

// One idle client: connects, asks once, tells `answered` whether it got a 200,
// then waits on its connection until its nursery is cancelled (the socket
// closes) or the server closes it.
leash::coro<void> hold_idle(std::uint16_t port, leash::channel<bool>& answered) {
  io::socket s;
  bool ok = false;
  try {
    s = co_await io::async_connect("127.0.0.1", port);
    ok = co_await ask_hello(s);
  } catch (const io::io_error&) {  // reset by a server that found no thread for it
  }
  co_await answered.async_send(ok);
  std::array<std::byte, 1> byte;
  if (ok) (void)co_await s.async_read_some(byte);
}

// Opens `count` idle clients of `port` in `clients`, a batch at a time, each
// batch answered before the next connects. Returns how many got a 200.
std::size_t open_idle(leash::nursery& clients, std::uint16_t port, std::size_t count) {
  leash::channel<bool> answered;  // each client sends once, before it idles
  std::size_t ok = 0;
  for (std::size_t opened = 0; opened < count; opened += connect_batch) {
    const std::size_t batch = std::min(connect_batch, count - opened);
    for (std::size_t i = 0; i < batch; ++i) {
      clients.spawn("idle client", [&] { return hold_idle(port, answered); });
    }
    for (std::size_t i = 0; i < batch; ++i) {
      ok += *answered.recv() ? 1u : 0u;
    }
  }
  return ok;
}

// Latencies of fresh_requests requests to `port`, each on a new connection; -1: refused.
leash::coro<std::vector<double>> fresh_latencies(std::uint16_t port) {
  std::vector<double> ms;
  for (int i = 0; i < fresh_requests; ++i) {
    const auto t0 = clock_type::now();
    io::socket s = co_await io::async_connect("127.0.0.1", port);
    const bool ok = co_await ask_hello(s);
    ms.push_back(ok ? ms_since(t0) : -1);
  }
  co_return ms;
}

std::vector<double> time_fresh_requests(std::uint16_t port) {
  std::vector<double> ms;
  leash::run_nursery(
      [&](leash::nursery& n) { ms = n.spawn([port] { return fresh_latencies(port); }).get(); });
  return ms;
}

// One row of step 4's table: this process's threads and resident memory now,
// the server's open connections, and `fresh` requests' latencies.
void print_row(const char* when, const http::server& origin, const std::vector<double>& fresh) {
  const process_cost c = cost_now();
  std::printf("   %-14s %7zu %8.1f MB %6zu", when, c.threads, c.rss_mb, origin.stats().connections);
  if (!fresh.empty()) std::printf("  ");
  for (double ms : fresh) {
    if (ms < 0) {
      std::printf(" refused");
    } else {
      std::printf(" %.2f", ms);
    }
  }
  std::printf("\n");
}

// Waits until `origin` is back to `conns` connections and the thread count
// stopped falling, for at most settle_limit.
void settle(const http::server& origin, std::size_t conns) {
  const auto t0 = clock_type::now();
  std::size_t last = 0;
  while (clock_type::now() - t0 < settle_limit) {
    const std::size_t threads = cost_now().threads;
    if (origin.stats().connections <= conns && threads == last) return;
    last = threads;
    leash::this_task::sleep_for(settle_poll);
  }
}

// Step 4: holds idle keep-alive connections to `origin` while it answers fresh
// requests, and shows what they cost this process. True when each connection
// was answered, or refused because the server found no thread for it.
bool hold_idle_connections(http::server& origin) {
  const idle_plan plan = plan_idle();
  const std::size_t count = plan.count;
  section("4. " + std::to_string(count) +
          " idle keep-alive connections, each answered once, while fresh requests go on");
  if (count < idle_wanted) {
    std::printf(
        "   not %zu: the fd limit is %llu, and each connection takes two fds here (clients\n"
        "   and server share this process), %llu kept for the rest\n",
        idle_wanted, static_cast<unsigned long long>(plan.fd_limit),
        static_cast<unsigned long long>(fd_margin));
  }
  const http::server_stats at_start = origin.stats();
  // First, as they also start the coroutine workers that "before" should count.
  const std::vector<double> fresh_before = time_fresh_requests(origin.port());
  settle(origin, at_start.connections);
  std::printf("   %-14s %7s %11s %6s   %s\n", "", "threads", "resident", "conns",
              "fresh requests (each on a new connection), ms");
  print_row("before", origin, fresh_before);
  std::size_t ok = 0;
  std::uint64_t refused = 0;
  auto t0 = clock_type::now();
  {
    leash::nursery clients({.name = "idle clients"});
    ok = open_idle(clients, origin.port(), count);
    const double took = ms_since(t0);
    refused = origin.stats().connections_refused - at_start.connections_refused;
    print_row("while held", origin, time_fresh_requests(origin.port()));
    std::printf(
        "   (%zu clients, coroutine tasks with no thread each, opened in %.0f ms,\n"
        "   %zu at a time: %zu answered 200",
        count, took, connect_batch, ok);
    if (refused > 0) {
      std::printf(", %llu refused: 503, no thread", static_cast<unsigned long long>(refused));
    }
    std::printf(")\n");
    t0 = clock_type::now();
    clients.cancel();  // every client's wait ends at once and its socket closes
  }
  settle(origin, at_start.connections);
  print_row("after closing", origin, {});
  std::printf("   (closed in %.0f ms by cancelling the clients' nursery, threads settled)\n",
              ms_since(t0));
  return ok + refused == count;
}

}  // namespace

int main() {
  leash::leak_check leaks;
  int failures = 0;
  {
    leash::nursery servers({.name = "servers"});
    http::server origin(servers, serve_backend, {.name = "origin"});
    http::transport upstream;  // the proxy's
    http::reverse_proxy proxy(upstream, {.port = origin.port(), .flush_interval = 50ms});
    http::server front(servers, std::cref(proxy), {.name = "proxy"});
    http::transport client({.max_conns_per_host = 4});

    // 1. Fan-out with a deadline.
    const auto deadline = 250ms;
    section("1. fan-out to 3 backends through the transport, deadline 250 ms");
    std::printf("   %-10s %-9s %s\n", "backend", "latency", "outcome");
    const auto t0 = clock_type::now();
    std::vector<leash::task<double>> answers;
    bool deadline_hit = false;
    try {
      leash::run_nursery({.timeout = deadline, .name = "fan-out"}, [&](leash::nursery& n) {
        for (const backend& b : backends) {
          answers.push_back(n.spawn(b.name, [&, b] {
            http::response r = client.round_trip(
                {"127.0.0.1", origin.port(), {"GET", std::string("/") + b.name}, {}});
            (void)r.body.read_all(1 << 10);
            return ms_since(t0);
          }));
        }
      });
    } catch (const leash::deadline_exceeded&) {
      deadline_hit = true;
    }
    int answered = 0;
    for (std::size_t i = 0; i < backends.size(); ++i) {
      const std::string latency =
          backends[i].latency >= 1h ? "hangs" : std::to_string(backends[i].latency.count()) + " ms";
      try {
        const double at = answers[i].get();
        std::printf("   %-10s %-9s answered after %.0f ms\n", backends[i].name, latency.c_str(),
                    at);
        ++answered;
      } catch (const leash::cancelled&) {
        std::printf("   %-10s %-9s cancelled at the deadline: its connection was closed\n",
                    backends[i].name, latency.c_str());
      }
    }
    std::printf("   => %d of 3 answers in %.0f ms; deadline %s\n", answered, ms_since(t0),
                deadline_hit ? "HIT (the hanging backend was cancelled)" : "not hit");
    failures += answered == 2 && deadline_hit ? 0 : 1;

    // 2. Keep-alive reuse.
    section("2. 2000 more requests from 4 workers on the same transport");
    const auto t3 = clock_type::now();
    leash::run_nursery([&](leash::nursery& n) {
      for (int w = 0; w < 4; ++w) {
        n.spawn([&] {
          for (int i = 0; i < 500; ++i) {
            http::response r =
                client.round_trip({"127.0.0.1", origin.port(), {"GET", "/hello"}, {}});
            (void)r.body.read_all(1 << 10);
          }
        });
      }
    });
    const double took3 = ms_since(t3);
    std::printf("   %-24s %.0f ms (%.0f requests/s, client and server in one process)\n", "took",
                took3, 2000 / took3 * 1000);
    std::printf("   pool, all requests so far:\n");
    const http::transport_stats s = client.stats();
    std::printf("   %-24s %llu\n", "connections dialled", static_cast<unsigned long long>(s.dials));
    std::printf("   %-24s %llu\n", "requests on reused conns",
                static_cast<unsigned long long>(s.reuses));
    std::printf("   %-24s %llu (the cancelled one among them)\n", "connections discarded",
                static_cast<unsigned long long>(s.discarded));
    std::printf("   %-24s %zu\n", "idle in the pool now", s.idle);

    // 3. Streaming through the proxy.
    section("3. server-sent events through the reverse proxy");
    const auto t1 = clock_type::now();
    http::response events = client.round_trip({"127.0.0.1", front.port(), {"GET", "/events"}, {}});
    std::printf("   %7.0f ms  head: %d, %s\n", ms_since(t1), events.status(),
                std::string(events.head.headers.get("content-type").value_or("?")).c_str());
    char buf[256];
    while (std::size_t n = events.body.read(std::span<char>(buf))) {
      std::string piece(buf, n);
      while (!piece.empty() && piece.back() == '\n')
        piece.pop_back();
      std::printf("   %7.0f ms  %s\n", ms_since(t1), piece.c_str());
    }

    // 4. Idle keep-alive connections.
    failures += hold_idle_connections(origin) ? 0 : 1;

    // 5. Shutdown.
    section("5. graceful shutdown");
    auto t2 = clock_type::now();
    front.shutdown(1s);
    std::printf("   %-24s stopped in %.0f ms (nothing in flight)\n", "proxy", ms_since(t2));
    t2 = clock_type::now();
    const auto in_flight = origin.stats().connections;
    origin.shutdown(200ms);
    std::printf(
        "   %-24s stopped in %.0f ms: %zu connection(s) open, the hanging handler\n"
        "   %-24s cancelled at the 200 ms grace deadline\n",
        "origin", ms_since(t2), in_flight, "");
    client.close_idle();
    upstream.close_idle();
  }
  const std::string report = leaks.verify();
  const auto rt = leash::runtime::stats();
  std::printf("\nruntime: %zu threads alive (%zu idle, cached for reuse)\n", rt.threads_alive,
              rt.threads_idle);
  std::printf("leak check: %s\n", report.empty() ? "clean, nothing left running" : report.c_str());
  return report.empty() && failures == 0 ? 0 : 1;
}
