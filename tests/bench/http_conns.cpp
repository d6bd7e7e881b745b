// bench_http_conns: what many connections cost an HTTP server. leash's
// http::server beside Go's net/http (go/http_conns.go), both answering every
// GET with the same 128-byte body, each in its own process, measured by the
// same client (this program) in the same run.
//
//   http_conns_idle_1k / _10k  N keep-alive connections that each made one
//       request and stay open: server RSS and threads before and with them,
//       p50 / p99 of a fresh connect + request + answer meanwhile, and how
//       many of a sample of the idle connections answer a second request
//   http_conns_seq_10k    10 000 connections opened one after another, one
//       request each, closed after the answer: total time, p50 / p99 of one
//   http_conns_burst_2k   2 000 connects issued at once, one request each:
//       p50 / p99 of connect + answer
//   http_conns_wrk_256c / _1000c  wrk -t2 keep-alive GETs for a few seconds:
//       req/s, and the server's threads and RSS halfway through
//   http_conns_slowloris_2k  2 000 connections each send a partial request
//       head, then one more header byte every -slow_pace_ms, until the server
//       closes them (its header timeout, -header_timeout_ms for both servers);
//       meanwhile a fresh connect + GET + answer every ~10 ms: how many slow
//       connections the server closed and when (p50 / max after their
//       connect), fresh p50 / p99, and the server's peak threads and RSS
//
// Every scenario starts a fresh server process and kills it afterwards.
// leash's server is forked from this process (which has no thread then); Go's
// is the binary named by LEASH_BENCH_GO_HTTP_CONNS (run.sh builds it; without
// it the Go rows are skipped). Both die with this process: the leash child by
// PR_SET_PDEATHSIG, the Go one when its stdin (a pipe from here) closes.
//
// The client is one thread. Sequential parts use blocking sockets with
// send/receive (and connect) timeouts. The burst is one epoll loop of
// non-blocking sockets: it issues the 2 000 connect() calls back to back, then
// sends each request as its connection becomes writable and reads each answer
// as it arrives; a connection is timed from its own connect() call to the last
// byte of its answer, so the order of issue does not count against it. The
// BENCH line gives the time to issue all connects and the client's CPU time.
//
// The slowloris row is one epoll loop too: the partial heads go out as the
// connections become writable, the paced bytes on a timer, a close is seen as
// the end of stream (or a reset) on a slow connection, and the fresh requests
// are blocking calls made between two looks at the events. It ends when every
// slow connection was closed or after the header timeout plus one pace plus a
// margin, whichever comes first; connections still open then are reported.
//
// RLIMIT_NOFILE is raised soft to hard and reported; the idle rows are clamped
// to what it allows. The leash server's threads are capped so that a share of
// the machine's PIDs stays free; beyond the cap it answers 503, which counts as
// failed connections. A failed row prints "FAILED ..." and the next row runs.
//
//   bench_http_conns [-conns 10000] [-fresh 200] [-burst 2000] [-wrk_seconds 3]
//                    [-slow_conns 2000] [-slow_pace_ms 5000] [-header_timeout_ms 10000]
//                    [-leash_max_threads N]  (default: one per connection, PIDs allowing)
//                    [-coro_handler 1]  (leash answers from a coroutine handler, not a plain one)
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <leash/http/server.hpp>
#include <leash/nursery.hpp>
#include <leash/runtime.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"

extern char** environ;

namespace {

using clock_type = std::chrono::steady_clock;

// The answer both servers give: 128 bytes, like run.sh's nginx small.txt.
const std::string answer_body = std::string(127, 'x') + "\n";
constexpr std::string_view request_text = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
// A blocking client call (connect, send, receive) that takes longer fails.
constexpr int io_timeout_s = 5;
// How long a burst may take in all before its unfinished connections fail.
constexpr auto burst_budget = std::chrono::seconds(60);
// A sequential open stops after this many failures in a row (the server refuses).
constexpr int max_failures_in_row = 20;
// Idle connections asked for a second request after the fresh ones.
constexpr std::size_t idle_sample = 100;
// fds this process and each server keep for themselves beyond the connections.
constexpr rlim_t fd_headroom = 100;
// PIDs left free for other processes when capping the leash server's threads.
constexpr long pid_reserve = 4096;
// The most connections a wrk row opens.
constexpr int max_wrk_conns = 1000;
// Threads of the leash server beyond one per connection (accept loop, timer, cache).
constexpr long thread_headroom = 256;

double us_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

// " <prefix>p50_us=... <prefix>p99_us=..." of `us`; empty without samples, so
// that a row whose requests all failed shows no figure (nor a ratio).
std::string latency_fields(const std::vector<double>& us, const char* prefix) {
  if (us.empty()) return "";
  char out[128];
  std::snprintf(out, sizeof out, " %sp50_us=%.0f %sp99_us=%.0f", prefix, percentile(us, 0.5),
                prefix, percentile(us, 0.99));
  return out;
}

// A field of /proc/<pid>/status (VmRSS in KiB, Threads); -1 when gone.
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

long read_long(const char* path) {
  std::ifstream in(path);
  long v = -1;
  in >> v;
  return v;
}

// PIDs (threads) the machine has left: kernel.pid_max less the tasks that exist.
long free_pids() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c, running_total;
  in >> a >> b >> c >> running_total;
  const long total = std::atol(running_total.substr(running_total.find('/') + 1).c_str());
  return read_long("/proc/sys/kernel/pid_max") - total;
}

std::string errno_text(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

// ---- client ----------------------------------------------------------------

// How much of `buf` one complete response takes, 0 while incomplete. Sets
// `status`. Throws on a response this benchmark cannot read.
std::size_t response_size(const std::string& buf, int& status) {
  const std::size_t head_end = buf.find("\r\n\r\n");
  if (head_end == std::string::npos) return 0;
  status = buf.size() > 12 ? std::atoi(buf.c_str() + 9) : 0;
  std::size_t length = 0;
  bool found = false;
  for (std::size_t at = buf.find("\r\n"); at < head_end; at = buf.find("\r\n", at + 2)) {
    static constexpr std::string_view name = "content-length:";
    if (buf.size() < at + 2 + name.size()) break;
    if (::strncasecmp(buf.c_str() + at + 2, name.data(), name.size()) == 0) {
      length = std::strtoul(buf.c_str() + at + 2 + name.size(), nullptr, 10);
      found = true;
    }
  }
  if (!found) throw std::runtime_error("response without Content-Length");
  const std::size_t total = head_end + 4 + length;
  return buf.size() >= total ? total : 0;
}

struct fd_guard {
  int fd = -1;
  explicit fd_guard(int f) : fd(f) {}
  fd_guard(fd_guard&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  fd_guard& operator=(fd_guard&& o) noexcept {
    if (this != &o) {
      reset();
      fd = std::exchange(o.fd, -1);
    }
    return *this;
  }
  ~fd_guard() { reset(); }
  void reset() {
    if (fd >= 0) ::close(std::exchange(fd, -1));
  }
};

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return a;
}

// A blocking connection to 127.0.0.1:port whose connect, sends and receives
// give up after io_timeout_s. Throws std::runtime_error.
fd_guard dial(std::uint16_t port) {
  fd_guard s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (s.fd < 0) throw std::runtime_error(errno_text("socket", errno));
  const timeval tv{io_timeout_s, 0};
  ::setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(s.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // connect too
  const int one = 1;
  ::setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const sockaddr_in a = loopback(port);
  if (::connect(s.fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error(errno_text("connect", errno));
  return s;
}

// One request on `fd` and its whole answer; throws unless it is a 200.
void round_trip(int fd) {
  if (::send(fd, request_text.data(), request_text.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request_text.size()))
    throw std::runtime_error(errno_text("send", errno));
  std::string buf;
  char tmp[4096];
  int status = 0;
  while (response_size(buf, status) == 0) {
    const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n == 0) throw std::runtime_error("connection closed before the answer");
    if (n < 0) throw std::runtime_error(errno_text("recv", errno));
    buf.append(tmp, static_cast<std::size_t>(n));
  }
  if (status != 200) throw std::runtime_error("answer " + std::to_string(status));
}

// Connect + request + answer + close, in microseconds.
double fresh_request(std::uint16_t port) {
  const auto t0 = clock_type::now();
  fd_guard s = dial(port);
  round_trip(s.fd);
  return us_since(t0);
}

// ---- servers ---------------------------------------------------------------

struct server_process {
  pid_t pid = -1;
  std::uint16_t port = 0;
  fd_guard lifeline{-1};  // the Go server's stdin: it exits when this closes

  server_process() = default;
  server_process(server_process&& o) noexcept
      : pid(std::exchange(o.pid, -1)), port(o.port), lifeline(std::move(o.lifeline)) {}
  server_process& operator=(server_process&&) = delete;
  ~server_process() { stop(); }
  void stop() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      pid = -1;
    }
    lifeline.reset();
  }
  // Throws when the server is gone (it crashed or was killed).
  void check_alive() {
    int st = 0;
    if (pid > 0 && ::waitpid(pid, &st, WNOHANG) == pid) {
      pid = -1;
      throw std::runtime_error(
          WIFSIGNALED(st) ? "server killed by signal " + std::to_string(WTERMSIG(st))
                          : "server exited with status " + std::to_string(WEXITSTATUS(st)));
    }
  }
};

// Reads the port the server writes as a line to `fd`; 0 on timeout or EOF.
std::uint16_t read_port(int fd) {
  constexpr int startup_timeout_ms = 10'000;
  std::string line;
  const auto until = clock_type::now() + std::chrono::milliseconds(startup_timeout_ms);
  while (line.find('\n') == std::string::npos && clock_type::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char c[32];
    const ssize_t n = ::read(fd, c, sizeof c);
    if (n <= 0) break;
    line.append(c, static_cast<std::size_t>(n));
  }
  return static_cast<std::uint16_t>(std::atoi(line.c_str()));
}

// What both servers are started with.
struct server_settings {
  std::size_t leash_max_threads = 0;
  long header_timeout_ms = 10'000;  // leash's header_timeout, Go's ReadHeaderTimeout
  bool coro_handler = false;        // leash: a coroutine handler instead of a plain one
};

// The 128-byte answer, from a plain handler (run after a hand-off of the
// connection's worker) or a coroutine handler (awaited on the connection's task).
void answer_plain(leash::http::server_request&, leash::http::response_writer& w) {
  w.headers().set("Content-Type", "text/plain");
  w.write(answer_body);
}
leash::coro<> answer_coro(leash::http::server_request&, leash::http::response_writer& w) {
  w.headers().set("Content-Type", "text/plain");
  co_await w.async_write(answer_body);
}

[[noreturn]] void run_leash_server(int report_fd, const server_settings& settings) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  leash::runtime::configure({.max_threads = settings.leash_max_threads});
  leash::nursery n;
  const leash::http::server_options options{
      .header_timeout = std::chrono::milliseconds(settings.header_timeout_ms)};
  std::optional<leash::http::server> srv;
  if (settings.coro_handler) {
    srv.emplace(n, answer_coro, options);
  } else {
    srv.emplace(n, answer_plain, options);
  }
  const std::string port = std::to_string(srv->port()) + "\n";
  (void)!::write(report_fd, port.data(), port.size());
  ::close(report_fd);
  n.wait();  // serves until killed
  std::_Exit(0);
}

server_process start_leash(const server_settings& settings) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error(errno_text("pipe", errno));
  std::fflush(stdout);
  server_process s;
  s.pid = ::fork();
  if (s.pid < 0) throw std::runtime_error(errno_text("fork", errno));
  if (s.pid == 0) {
    ::close(p[0]);
    run_leash_server(p[1], settings);
  }
  ::close(p[1]);
  fd_guard out(p[0]);
  s.port = read_port(out.fd);
  if (s.port == 0) throw std::runtime_error("the leash server did not start");
  return s;
}

server_process start_go(const std::string& binary, const server_settings& settings) {
  int out[2], in[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(in, O_CLOEXEC) != 0)
    throw std::runtime_error(errno_text("pipe", errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  std::string timeout_flag =
      "-read_header_timeout_ms=" + std::to_string(settings.header_timeout_ms);
  char* argv[] = {const_cast<char*>(binary.c_str()), timeout_flag.data(), nullptr};
  server_process s;
  const int err = ::posix_spawn(&s.pid, binary.c_str(), &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  s.lifeline = fd_guard(in[1]);
  fd_guard port_fd(out[0]);
  if (err != 0) {
    s.pid = -1;
    throw std::runtime_error(errno_text("posix_spawn go server", err));
  }
  s.port = read_port(port_fd.fd);
  if (s.port == 0) throw std::runtime_error("the Go server did not start");
  return s;
}

// ---- scenarios -------------------------------------------------------------

struct config {
  std::size_t big = 10000;  // idle connections of the large row (clamped)
  std::size_t seq = 10000;  // connections opened one after another
  server_settings servers;
  long fresh = 200;
  long slow = 2000;          // slowloris connections
  long slow_pace_ms = 5000;  // between two header bytes of one slow connection
  long burst = 2000;
  long wrk_seconds = 3;
  bool have_wrk = false;
};

// Failed attempts of one row, with the first error for its NOTE line.
struct failures {
  std::size_t count = 0;
  int in_row = 0;
  std::string first;

  // Runs fn(); false (and counted) when it throws.
  template <class F>
  bool attempt(F&& fn) {
    try {
      fn();
      in_row = 0;
      return true;
    } catch (const std::exception& e) {
      if (first.empty()) first = e.what();
      ++count;
      ++in_row;
      return false;
    }
  }
  // The server refuses: a sequence stops here.
  bool refusing() const { return in_row >= max_failures_in_row; }
  // "N of M failed (first: ...)", for NOTE lines.
  std::string describe(std::size_t wanted) const {
    return std::to_string(count) + " of " + std::to_string(wanted) + " failed" +
           (refusing() ? ", the rest not tried" : "") +
           (first.empty() ? "" : " (first: " + first + ")");
  }
};

// Opens `count` connections, one GET each, and keeps them open.
std::vector<fd_guard> open_idle(std::uint16_t port, std::size_t count, failures& failed) {
  std::vector<fd_guard> idle;
  idle.reserve(count);
  while (idle.size() + failed.count < count && !failed.refusing()) {
    failed.attempt([&] {
      fd_guard s = dial(port);
      round_trip(s.fd);
      idle.push_back(std::move(s));
    });
  }
  return idle;
}

// Asks every step-th idle connection for a second answer; how many gave it.
std::size_t sample_idle(const std::vector<fd_guard>& idle, std::size_t& sampled) {
  std::size_t ok = 0;
  const std::size_t step = std::max<std::size_t>(1, (idle.size() + idle_sample - 1) / idle_sample);
  failures ignored;
  for (std::size_t i = 0; i < idle.size(); i += step, ++sampled)
    ok += ignored.attempt([&] { round_trip(idle[i].fd); }) ? 1 : 0;
  return ok;
}

// `count` fresh connect + GET + close, one after another; their microseconds.
std::vector<double> fresh_requests(std::uint16_t port, std::size_t count, failures& failed) {
  std::vector<double> us;
  us.reserve(count);
  while (us.size() + failed.count < count && !failed.refusing())
    failed.attempt([&] { us.push_back(fresh_request(port)); });
  return us;
}

void idle_row(server_process& srv, const char* scenario, const char* impl, std::size_t count,
              const config& cfg) {
  const long rss_base = status_of(srv.pid, "VmRSS");
  const long threads_base = status_of(srv.pid, "Threads");
  failures failed, fresh_failed;
  const auto t0 = clock_type::now();
  const std::vector<fd_guard> idle = open_idle(srv.port, count, failed);
  const double open_ms = us_since(t0) / 1000;
  srv.check_alive();
  const std::vector<double> us =
      fresh_requests(srv.port, static_cast<std::size_t>(cfg.fresh), fresh_failed);
  const long rss = status_of(srv.pid, "VmRSS");
  const long threads = status_of(srv.pid, "Threads");
  std::size_t sampled = 0;
  const std::size_t sample_ok = sample_idle(idle, sampled);
  srv.check_alive();
  if (failed.count > 0)
    std::printf("NOTE %s %s: idle connections: %s\n", scenario, impl,
                failed.describe(count).c_str());
  if (fresh_failed.count > 0)
    std::printf("NOTE %s %s: fresh requests: %s\n", scenario, impl,
                fresh_failed.describe(static_cast<std::size_t>(cfg.fresh)).c_str());
  std::printf(
      "BENCH %s %s conns=%zu failed=%zu open_ms=%.0f server_rss_kb=%ld server_rss_base_kb=%ld "
      "server_threads=%ld server_threads_base=%ld%s fresh_failed=%zu idle_sample_ok=%zu "
      "idle_sampled=%zu\n",
      scenario, impl, idle.size(), failed.count, open_ms, rss, rss_base, threads, threads_base,
      latency_fields(us, "fresh_").c_str(), fresh_failed.count, sample_ok, sampled);
}

void seq_row(server_process& srv, const char* impl, std::size_t count) {
  failures failed;
  const auto t0 = clock_type::now();
  const std::vector<double> us = fresh_requests(srv.port, count, failed);
  const double total_ms = us_since(t0) / 1000;
  srv.check_alive();
  if (failed.count > 0)
    std::printf("NOTE http_conns_seq_10k %s: %s\n", impl, failed.describe(count).c_str());
  std::printf("BENCH http_conns_seq_10k %s conns=%zu failed=%zu total_ms=%.0f%s\n", impl, us.size(),
              failed.count, total_ms, latency_fields(us, "").c_str());
}

// The burst: non-blocking connections in one epoll set. Each connection sends
// its request once writable and is done when its whole answer has arrived.
class burst_client {
 public:
  explicit burst_client(std::size_t count) : ep_(::epoll_create1(EPOLL_CLOEXEC)), conns_(count) {
    if (ep_.fd < 0) throw std::runtime_error(errno_text("epoll_create1", errno));
  }

  // Starts connection i: its clock starts just before its connect() call.
  void issue(std::size_t i, const sockaddr_in& a) {
    conn& c = conns_[i];
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) return note_failure(errno_text("socket", errno));
    ++open_;
    const int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c.t0 = clock_type::now();
    if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 &&
        errno != EINPROGRESS)
      return fail(c, errno_text("connect", errno));
    watch(i, EPOLLOUT, EPOLL_CTL_ADD);
  }

  // Serves the events that arrive within timeout_ms.
  void poll(int timeout_ms) {
    epoll_event events[batch];
    const int n = ::epoll_wait(ep_.fd, events, batch, timeout_ms);
    for (int k = 0; k < n; ++k)
      on_event(events[k].data.u64);
  }

  std::size_t open() const { return open_; }

  // Fails every connection still open.
  void give_up(const std::string& why) {
    for (conn& c : conns_)
      if (c.fd >= 0) fail(c, why);
  }

  std::vector<double> us;  // connect + answer of each answered connection
  std::size_t failed = 0;
  std::string first_error;

 private:
  static constexpr int batch = 256;  // events taken per epoll_wait

  struct conn {
    int fd = -1;
    clock_type::time_point t0;
    bool connected = false;
    std::string buf;
  };

  void watch(std::size_t i, std::uint32_t events, int op) {
    epoll_event e{};
    e.events = events;
    e.data.u64 = i;
    ::epoll_ctl(ep_.fd, op, conns_[i].fd, &e);
  }

  void note_failure(const std::string& why) {
    if (first_error.empty()) first_error = why;
    ++failed;
  }

  void fail(conn& c, const std::string& why) {
    note_failure(why);
    finish(c);
  }

  void finish(conn& c) {
    ::close(std::exchange(c.fd, -1));
    --open_;
  }

  void on_event(std::size_t i) {
    conn& c = conns_[i];
    if (c.fd < 0) return;
    if (c.connected) return on_readable(c);
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return fail(c, errno_text("connect", err));
    c.connected = true;
    if (::send(c.fd, request_text.data(), request_text.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request_text.size()))
      return fail(c, errno_text("send", errno));
    watch(i, EPOLLIN, EPOLL_CTL_MOD);
  }

  void on_readable(conn& c) {
    char tmp[4096];
    ssize_t got = 0;
    while ((got = ::recv(c.fd, tmp, sizeof tmp, 0)) > 0)
      c.buf.append(tmp, static_cast<std::size_t>(got));
    const int recv_errno = errno;
    int status = 0;
    std::size_t size = 0;
    try {
      size = response_size(c.buf, status);
    } catch (const std::exception& e) {
      return fail(c, e.what());
    }
    if (size > 0 && status == 200) {
      us.push_back(us_since(c.t0));
      return finish(c);
    }
    if (size > 0) return fail(c, "answer " + std::to_string(status));
    if (got == 0) return fail(c, "connection closed before the answer");
    if (recv_errno != EAGAIN) fail(c, errno_text("recv", recv_errno));
  }

  fd_guard ep_;
  std::vector<conn> conns_;
  std::size_t open_ = 0;
};

// Connections started between two looks at the events while issuing, so that
// an early connection's request goes out while later ones are still issued.
constexpr std::size_t issue_stride = 32;

void burst_row(server_process& srv, const char* impl, const config& cfg) {
  const auto count = static_cast<std::size_t>(cfg.burst);
  burst_client client(count);
  const sockaddr_in a = loopback(srv.port);
  const double cpu0 = bench::cpu_seconds();
  const auto t0 = clock_type::now();
  for (std::size_t i = 0; i < count; ++i) {
    client.issue(i, a);
    if ((i + 1) % issue_stride == 0) client.poll(0);
  }
  const double issue_ms = us_since(t0) / 1000;
  while (client.open() > 0 && clock_type::now() < t0 + burst_budget)
    client.poll(100);
  client.give_up("no answer within the burst budget");
  const double wall_ms = us_since(t0) / 1000;
  const double cpu_ms = (bench::cpu_seconds() - cpu0) * 1000;
  srv.check_alive();
  if (client.failed > 0)
    std::printf("NOTE http_conns_burst_2k %s: %zu of %zu failed (first: %s)\n", impl, client.failed,
                count, client.first_error.c_str());
  const std::vector<double>& us = client.us;
  std::printf(
      "BENCH http_conns_burst_2k %s conns=%zu failed=%zu%s max_us=%.0f issue_ms=%.1f "
      "wall_ms=%.0f client_cpu_ms=%.0f\n",
      impl, us.size(), client.failed, latency_fields(us, "").c_str(), percentile(us, 1.0), issue_ms,
      wall_ms, cpu_ms);
}

// ---- slowloris ---------------------------------------------------------------

// A slow connection's head: complete up to an open header line that each
// paced byte lengthens, so it never ends.
constexpr std::string_view slow_head = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
// Between two fresh requests while the slow connections are held.
constexpr auto fresh_interval = std::chrono::milliseconds(10);
// Between two looks at the server's threads and RSS.
constexpr auto sample_interval = std::chrono::milliseconds(100);
// How long past the header timeout and one pace the row waits for the last closes.
constexpr auto slowloris_margin = std::chrono::seconds(5);

// The slow connections, in one epoll set: each sends its partial head once
// connected, one more byte on every pace(), and is done when the server
// closes it (end of stream or reset).
class slowloris_client {
 public:
  explicit slowloris_client(std::size_t count)
      : ep_(::epoll_create1(EPOLL_CLOEXEC)), conns_(count) {
    if (ep_.fd < 0) throw std::runtime_error(errno_text("epoll_create1", errno));
  }

  // Starts connection i; its clock starts just before its connect() call.
  void issue(std::size_t i, const sockaddr_in& a) {
    conn& c = conns_[i];
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) return note_failure(errno_text("socket", errno));
    ++open_;
    c.t0 = clock_type::now();
    if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 &&
        errno != EINPROGRESS)
      return fail(c, errno_text("connect", errno));
    watch(i, EPOLLOUT, EPOLL_CTL_ADD);
  }

  // Serves the events that arrive within timeout_ms.
  void poll(int timeout_ms) {
    epoll_event events[batch];
    const int n = ::epoll_wait(ep_.fd, events, batch, timeout_ms);
    for (int k = 0; k < n; ++k)
      on_event(events[k].data.u64);
  }

  // One more header byte on every connected slow connection.
  void pace() {
    for (conn& c : conns_) {
      if (c.fd < 0 || !c.connected) continue;
      if (::send(c.fd, "a", 1, MSG_NOSIGNAL) < 0 && errno != EAGAIN) closed_by_server(c);
    }
  }

  std::size_t open() const { return open_; }

  std::vector<double> closed_ms;  // connect to the server's close, per closed connection
  std::size_t failed = 0;         // connects or sends that failed before the head was out
  std::string first_error;

 private:
  static constexpr int batch = 256;  // events taken per epoll_wait

  struct conn {
    int fd = -1;
    clock_type::time_point t0;
    bool connected = false;
  };

  void watch(std::size_t i, std::uint32_t events, int op) {
    epoll_event e{};
    e.events = events;
    e.data.u64 = i;
    ::epoll_ctl(ep_.fd, op, conns_[i].fd, &e);
  }

  void note_failure(const std::string& why) {
    if (first_error.empty()) first_error = why;
    ++failed;
  }

  void fail(conn& c, const std::string& why) {
    note_failure(why);
    finish(c);
  }

  void finish(conn& c) {
    ::close(std::exchange(c.fd, -1));
    --open_;
  }

  void closed_by_server(conn& c) {
    closed_ms.push_back(us_since(c.t0) / 1000);
    finish(c);
  }

  void on_event(std::size_t i) {
    conn& c = conns_[i];
    if (c.fd < 0) return;
    if (c.connected) return on_readable(c);
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return fail(c, errno_text("connect", err));
    if (::send(c.fd, slow_head.data(), slow_head.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(slow_head.size()))
      return fail(c, errno_text("send", errno));
    c.connected = true;
    watch(i, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
  }

  // What the server sends (a 408 or nothing) is dropped; its close ends the connection.
  void on_readable(conn& c) {
    char tmp[1024];
    ssize_t got = 0;
    while ((got = ::recv(c.fd, tmp, sizeof tmp, 0)) > 0) {
    }
    if (got == 0 || errno != EAGAIN) closed_by_server(c);
  }

  fd_guard ep_;
  std::vector<conn> conns_;
  std::size_t open_ = 0;
};

// The server's peak threads and RSS over the samples taken.
struct server_peaks {
  long threads = -1;
  long rss_kb = -1;
  void sample(pid_t pid) {
    threads = std::max(threads, status_of(pid, "Threads"));
    rss_kb = std::max(rss_kb, status_of(pid, "VmRSS"));
  }
};

void slowloris_row(server_process& srv, const char* impl, const config& cfg) {
  constexpr const char* scenario = "http_conns_slowloris_2k";
  const auto count = static_cast<std::size_t>(cfg.slow);
  const auto pace = std::chrono::milliseconds(cfg.slow_pace_ms);
  const long threads_base = status_of(srv.pid, "Threads");
  const long rss_base = status_of(srv.pid, "VmRSS");
  slowloris_client slow(count);
  const sockaddr_in a = loopback(srv.port);
  const auto t0 = clock_type::now();
  for (std::size_t i = 0; i < count; ++i) {
    slow.issue(i, a);
    if ((i + 1) % issue_stride == 0) slow.poll(0);
  }
  const auto end =
      t0 + std::chrono::milliseconds(cfg.servers.header_timeout_ms) + pace + slowloris_margin;
  auto next_pace = t0 + pace, next_fresh = t0, next_sample = t0;
  server_peaks peaks;
  failures fresh_failed;
  std::vector<double> fresh_us;
  while (slow.open() > 0 && clock_type::now() < end) {
    const auto now = clock_type::now();
    if (now >= next_pace) {
      slow.pace();
      next_pace += pace;
    }
    if (now >= next_fresh) {
      fresh_failed.attempt([&] { fresh_us.push_back(fresh_request(srv.port)); });
      next_fresh = now + fresh_interval;
    }
    if (now >= next_sample) {
      peaks.sample(srv.pid);
      next_sample = now + sample_interval;
    }
    const auto wake = std::min({next_pace, next_fresh, next_sample});
    const auto wait = std::chrono::ceil<std::chrono::milliseconds>(wake - clock_type::now());
    slow.poll(static_cast<int>(std::max<long>(0, wait.count())));
  }
  const double wall_ms = us_since(t0) / 1000;
  srv.check_alive();
  const std::vector<double>& closed = slow.closed_ms;
  if (slow.failed > 0)
    std::printf("NOTE %s %s: %zu of %zu slow connections failed before their head (first: %s)\n",
                scenario, impl, slow.failed, count, slow.first_error.c_str());
  if (fresh_failed.count > 0)
    std::printf("NOTE %s %s: fresh requests: %s\n", scenario, impl,
                fresh_failed.describe(fresh_us.size() + fresh_failed.count).c_str());
  std::printf(
      "BENCH %s %s slow=%zu closed=%zu still_open=%zu close_p50_ms=%.0f close_max_ms=%.0f "
      "pace_ms=%ld header_timeout_ms=%ld fresh=%zu fresh_failed=%zu%s server_threads=%ld "
      "server_threads_base=%ld server_rss_kb=%ld server_rss_base_kb=%ld wall_ms=%.0f\n",
      scenario, impl, count, closed.size(), slow.open(), percentile(closed, 0.5),
      percentile(closed, 1.0), cfg.slow_pace_ms, cfg.servers.header_timeout_ms, fresh_us.size(),
      fresh_failed.count, latency_fields(fresh_us, "fresh_").c_str(), peaks.threads, threads_base,
      peaks.rss_kb, rss_base, wall_ms);
}

// The number after `key` on the first line of `text` that has it, or -1.
double number_after(const std::string& text, const std::string& key) {
  const std::size_t at = text.find(key);
  return at == std::string::npos ? -1 : std::atof(text.c_str() + at + key.size());
}

// wrk's latency "99%    1.23ms" in milliseconds.
double wrk_p99_ms(const std::string& text) {
  const std::size_t at = text.find(" 99%");
  if (at == std::string::npos) return -1;
  char* end = nullptr;
  const double v = std::strtod(text.c_str() + at + 4, &end);
  const std::string unit(end, std::min<std::size_t>(2, std::strlen(end)));
  if (unit == "us") return v / 1000;
  if (unit == "ms") return v;
  return unit[0] == 's' ? v * 1000 : (unit == "m" ? v * 60000 : -1);
}

void wrk_row(server_process& srv, const char* impl, int conns, const config& cfg) {
  const std::string scenario = "http_conns_wrk_" + std::to_string(conns) + "c";
  const std::string cmd = "timeout " + std::to_string(cfg.wrk_seconds + 30) + " wrk -t2 -c" +
                          std::to_string(conns) + " -d" + std::to_string(cfg.wrk_seconds) +
                          "s --latency http://127.0.0.1:" + std::to_string(srv.port) + "/ 2>&1";
  std::fflush(stdout);
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) throw std::runtime_error(errno_text("popen wrk", errno));
  std::this_thread::sleep_for(std::chrono::milliseconds(cfg.wrk_seconds * 1000 / 2));
  const long threads = status_of(srv.pid, "Threads");
  const long rss = status_of(srv.pid, "VmRSS");
  std::string out;
  char tmp[4096];
  while (std::size_t n = std::fread(tmp, 1, sizeof tmp, p))
    out.append(tmp, n);
  const int rc = ::pclose(p);
  srv.check_alive();
  const double rps = number_after(out, "Requests/sec:");
  if (rps < 0) {
    std::printf("FAILED %s %s: wrk (status %d) printed no Requests/sec:\n%s\n", scenario.c_str(),
                impl, rc, out.c_str());
    return;
  }
  long errors = 0;
  if (const std::size_t at = out.find("Socket errors:"); at != std::string::npos) {
    for (const char* k : {"connect ", "read ", "write ", "timeout "}) {
      const std::size_t kat = out.find(k, at);
      if (kat != std::string::npos) errors += std::atol(out.c_str() + kat + std::strlen(k));
    }
  }
  const double non2xx = std::max(0.0, number_after(out, "Non-2xx or 3xx responses:"));
  if (errors > 0 || non2xx > 0)
    std::printf("NOTE %s %s: wrk saw %ld socket errors and %.0f non-2xx answers\n",
                scenario.c_str(), impl, errors, non2xx);
  std::printf(
      "BENCH %s %s req_per_s=%.0f p99_ms=%.2f socket_errors=%ld non2xx=%.0f server_threads=%ld "
      "server_rss_kb=%ld\n",
      scenario.c_str(), impl, rps, wrk_p99_ms(out), errors, non2xx, threads, rss);
}

// Runs `body` against a fresh server of `impl`; a failure prints one FAILED line.
void with_server(const char* scenario, const char* impl, const config& cfg,
                 const std::optional<std::string>& go_binary,
                 const std::function<void(server_process&)>& body) {
  try {
    server_process srv = std::string_view(impl) == "leash" ? start_leash(cfg.servers)
                                                           : start_go(*go_binary, cfg.servers);
    body(srv);
  } catch (const std::exception& e) {
    std::printf("FAILED %s %s: %s\n", scenario, impl, e.what());
  }
  std::fflush(stdout);
  // Let the closed connections' server side finish before the next server.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
}

config make_config(int argc, char** argv, rlim_t fd_limit) {
  config cfg;
  cfg.fresh = bench::flag(argc, argv, "-fresh", 200);
  cfg.burst = bench::flag(argc, argv, "-burst", 2000);
  cfg.wrk_seconds = bench::flag(argc, argv, "-wrk_seconds", 3);
  cfg.big = static_cast<std::size_t>(bench::flag(argc, argv, "-conns", 10000));
  cfg.seq = cfg.big;
  cfg.slow = bench::flag(argc, argv, "-slow_conns", 2000);
  cfg.slow_pace_ms = std::max(1L, bench::flag(argc, argv, "-slow_pace_ms", 5000));
  cfg.servers.header_timeout_ms =
      std::max(1L, bench::flag(argc, argv, "-header_timeout_ms", 10000));
  cfg.servers.coro_handler = bench::flag(argc, argv, "-coro_handler", 0) != 0;
  if (fd_limit < static_cast<rlim_t>(cfg.slow) + fd_headroom)
    cfg.slow = fd_limit > 2 * fd_headroom ? static_cast<long>(fd_limit - fd_headroom) : 100;
  cfg.have_wrk = std::system("command -v wrk >/dev/null 2>&1") == 0;
  if (fd_limit < cfg.big + fd_headroom) {
    cfg.big = fd_limit > 2 * fd_headroom ? static_cast<std::size_t>(fd_limit - fd_headroom) : 100;
    std::printf("NOTE http_conns: RLIMIT_NOFILE is %lu: the 10 000-connection rows use %zu\n",
                static_cast<unsigned long>(fd_limit), cfg.big);
  }
  const long pids = free_pids();
  // One thread per connection of the largest row.
  const long wanted =
      std::max({static_cast<long>(cfg.big), cfg.burst, long{max_wrk_conns}}) + thread_headroom;
  const long allowed = std::max(64L, pids - pid_reserve);
  cfg.servers.leash_max_threads = static_cast<std::size_t>(
      bench::flag(argc, argv, "-leash_max_threads", std::min(wanted, allowed)));
  if (allowed < wanted) {
    std::printf(
        "NOTE http_conns: %ld PIDs free: the leash server is capped at %zu threads "
        "(beyond: 503, counted as failed)\n",
        pids, cfg.servers.leash_max_threads);
  }
  return cfg;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  const rlim_t fd_limit = raise_fd_limit();
  const config cfg = make_config(argc, argv, fd_limit);
  std::optional<std::string> go_binary;
  if (const char* g = std::getenv("LEASH_BENCH_GO_HTTP_CONNS"); g != nullptr && *g != '\0')
    go_binary = g;
  else
    std::puts("SKIP http_conns go rows: set LEASH_BENCH_GO_HTTP_CONNS=<built go/http_conns.go>");
  std::vector<const char*> impls{"leash"};
  if (go_binary) impls.push_back("go");
  std::printf("BENCH http_conns_idle_1k leash fd_limit=%lu max_threads=%zu free_pids=%ld\n",
              static_cast<unsigned long>(fd_limit), cfg.servers.leash_max_threads, free_pids());
  const std::size_t small = std::min<std::size_t>(1000, cfg.big);
  for (const char* impl : impls) {
    with_server("http_conns_idle_1k", impl, cfg, go_binary,
                [&](server_process& s) { idle_row(s, "http_conns_idle_1k", impl, small, cfg); });
  }
  for (const char* impl : impls) {
    with_server("http_conns_idle_10k", impl, cfg, go_binary,
                [&](server_process& s) { idle_row(s, "http_conns_idle_10k", impl, cfg.big, cfg); });
  }
  for (const char* impl : impls) {
    with_server("http_conns_seq_10k", impl, cfg, go_binary,
                [&](server_process& s) { seq_row(s, impl, cfg.seq); });
  }
  for (const char* impl : impls) {
    with_server("http_conns_burst_2k", impl, cfg, go_binary,
                [&](server_process& s) { burst_row(s, impl, cfg); });
  }
  for (const char* impl : impls) {
    with_server("http_conns_slowloris_2k", impl, cfg, go_binary,
                [&](server_process& s) { slowloris_row(s, impl, cfg); });
  }
  if (!cfg.have_wrk) {
    std::puts("SKIP http_conns_wrk rows: wrk not installed (apt-get install wrk)");
    return 0;
  }
  for (int conns : {256, max_wrk_conns}) {
    for (const char* impl : impls) {
      const std::string scenario = "http_conns_wrk_" + std::to_string(conns) + "c";
      with_server(scenario.c_str(), impl, cfg, go_binary,
                  [&](server_process& s) { wrk_row(s, impl, conns, cfg); });
    }
  }
}
