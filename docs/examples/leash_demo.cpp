// leash-demo: the Go leaks that leash prevents, written correctly, on loopback.
//
// 1. A fan-out with a deadline through the HTTP transport: three backends,
//    one hangs; the deadline cancels it and the two answers are kept.
// 2. Keep-alive: the same transport serves many more requests on the
//    connections it already dialled.
// 3. Streaming through the reverse proxy: server-sent events arrive as they
//    are produced; the proxy's flusher is a scoped ticker.
// 4. Graceful shutdown, and a leak check that finds nothing left running.
#include <chrono>
#include <cstdio>
#include <leash.hpp>
#include <leash/http/reverse_proxy.hpp>
#include <leash/http/server.hpp>
#include <leash/http/transport.hpp>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
namespace http = leash::http;

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

void section(const char* title) {
  std::printf("\n%s\n", title);
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

    // 4. Shutdown.
    section("4. graceful shutdown");
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
