// Idle connections against an echo server of coroutine tasks (leash/io):
// what holding them costs the server, how fast connections open one after
// another, and the latency of a burst of simultaneous connects.
//
//   io_idle_1k / io_idle_10k  N idle connections held open; server RSS and
//                             threads with them (and before), the time to open
//                             them one after another, and the median
//                             connect + one echo of fresh requests meanwhile
//   io_burst_2k               2 000 connects at once, each followed by one
//                             echo: p50 / p99 of connect + echo
//
// The server runs in a child process (forked before any thread exists) so its
// figures are its own; the client is coroutine tasks in this process.
// RLIMIT_NOFILE is raised soft to hard; the limit is reported.
//
//   bench_io_idle [-burst 2000] [-fresh 200]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <leash.hpp>
#include <leash/io/socket.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"

namespace io = leash::io;
using leash::coro;
using clock_type = std::chrono::steady_clock;

namespace {

// A field of /proc/<pid>/status (VmRSS in KiB, Threads).
long status_of(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, field.size() + 1, field + ":") == 0)
      return std::atol(line.c_str() + field.size() + 1);
  }
  return -1;
}

rlim_t raise_fd_limit() {
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &limit);
  ::getrlimit(RLIMIT_NOFILE, &limit);
  return limit.rlim_cur;
}

// A listening socket on 127.0.0.1, made before fork with plain calls.
int plain_listener(std::uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 65535) != 0) {
    std::perror("bench_io_idle: listen");
    std::exit(1);
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

coro<void> echo(io::socket conn) {
  std::vector<std::byte> buf(4096);
  for (;;) {
    const std::size_t n = co_await conn.async_read_some(buf);
    if (n == 0) co_return;
    co_await conn.async_write_all(std::span(buf.data(), n));
  }
}

coro<void> serve(io::socket& listener, leash::nursery& n) {
  for (;;) {
    auto conn = co_await io::async_accept(listener);
    n.spawn([c = std::move(conn)]() mutable { return echo(std::move(c)); });
  }
}

[[noreturn]] void run_server(int fd) {
  io::socket listener(fd);
  leash::nursery_options o;
  o.name = "io_idle server";
  leash::nursery server(o);
  server.spawn([&]() { return serve(listener, server); });
  server.wait();  // until killed
  std::_Exit(0);
}

// Connect + one 64-byte echo; returns microseconds.
coro<double> fresh_request(std::uint16_t port) {
  static const std::string text(64, 'x');
  const auto t0 = clock_type::now();
  auto s = co_await io::async_connect("127.0.0.1", port);
  co_await s.async_write_all(std::as_bytes(std::span(text.data(), text.size())));
  std::string back(text.size(), '\0');
  std::span<std::byte> rest = std::as_writable_bytes(std::span(back.data(), back.size()));
  while (!rest.empty()) {
    const std::size_t n = co_await s.async_read_some(rest);
    if (n == 0) throw std::runtime_error("bench_io_idle: echo ended early");
    rest = rest.subspan(n);
  }
  co_return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

void idle_row(pid_t server, std::uint16_t port, std::size_t count, const char* scenario,
              long fresh) {
  const long rss_base = status_of(server, "VmRSS");
  leash::nursery n;
  n.spawn([&]() -> coro<void> {
    std::vector<io::socket> idle;
    idle.reserve(count);
    const auto t0 = clock_type::now();
    for (std::size_t i = 0; i < count; ++i)
      idle.push_back(co_await io::async_connect("127.0.0.1", port));
    const double open_ms =
        std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
    std::vector<double> us;
    for (long i = 0; i < fresh; ++i)
      us.push_back(co_await fresh_request(port));
    std::printf(
        "BENCH %s leash_coro open_ms=%.1f fresh_p50_us=%.1f server_rss_kb=%ld "
        "server_rss_base_kb=%ld server_threads=%ld\n",
        scenario, open_ms, percentile(us, 0.5), status_of(server, "VmRSS"), rss_base,
        status_of(server, "Threads"));
    std::fflush(stdout);
  });
  n.wait();
}

void burst_row(std::uint16_t port, long count) {
  std::vector<double> us(static_cast<std::size_t>(count));
  leash::nursery n;
  for (long i = 0; i < count; ++i) {
    n.spawn([&us, i, port]() -> coro<void> {
      us[static_cast<std::size_t>(i)] = co_await fresh_request(port);
    });
  }
  n.wait();
  std::printf("BENCH io_burst_2k leash_coro p50_us=%.0f p99_us=%.0f\n", percentile(us, 0.5),
              percentile(us, 0.99));
}

}  // namespace

int main(int argc, char** argv) {
  const long burst = bench::flag(argc, argv, "-burst", 2000);
  const long fresh = bench::flag(argc, argv, "-fresh", 200);
  const rlim_t limit = raise_fd_limit();
  std::uint16_t port = 0;
  const int listen_fd = plain_listener(port);
  const pid_t server = ::fork();
  if (server == 0) run_server(listen_fd);
  ::close(listen_fd);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the server starts
  std::printf("BENCH io_idle_1k leash_coro fd_limit=%lu\n", static_cast<unsigned long>(limit));
  // Each idle connection takes an fd here and one in the server.
  const std::size_t big = limit > 10100 ? 10000 : static_cast<std::size_t>(limit) - 100;
  idle_row(server, port, 1000, "io_idle_1k", fresh);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the server drops them
  idle_row(server, port, big, "io_idle_10k", fresh);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  burst_row(port, burst);
  ::kill(server, SIGKILL);
  ::waitpid(server, nullptr, 0);
}
