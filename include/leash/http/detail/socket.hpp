// SPDX-License-Identifier: BSL-1.0
// leash/http/detail/socket.hpp: RAII sockets, dialing, and stop-aware waits
// (the reads and writes that use them are in stream_io.hpp).
//
// Every wait here is a poll() on one non-blocking fd, bounded by a deadline
// and cancelled by a stop token; called from a coroutine task, it hands the
// task's worker to another thread while it blocks. Cancellation is a std::stop_callback that
// only calls ::shutdown() on the fd: that wakes the poll (or the connect) at
// once, and the callback is destroyed when the operation returns, before the
// caller can close or pool the fd, so it can never touch a recycled fd. After
// a stop the connection is dead: callers check the token and throw cancelled.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <stop_token>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "../../detail/registry.hpp"
#include "../../detail/scheduler.hpp"
#include "../errors.hpp"

namespace leash::inline v0::http::detail {

using clock = std::chrono::steady_clock;

// Owns one file descriptor; closes it on destruction.
class socket {
 public:
  socket() = default;
  explicit socket(int fd) noexcept : fd_(fd) {}
  socket(socket&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  socket& operator=(socket&& o) noexcept {
    if (this != &o) {
      close();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~socket() { close(); }

  int fd() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  void close() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }
  // Gives up ownership: the fd is the caller's.
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

[[noreturn]] inline void throw_errno(const std::string& what, int err) {
  throw io_error(what, std::error_code(err, std::generic_category()));
}

// The stop callback of every socket wait: shutdown() only. No fd (-1: a
// connection with no socket) has nothing to shut down; its stream's own wait
// sees the stop.
struct shutdown_fd {
  int fd;
  void operator()() const noexcept {
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
  }
};

// While alive, a stop of `token` shuts `fd` down. Destroy it before closing
// or pooling the fd.
class stop_guard {
 public:
  stop_guard(const std::stop_token& token, int fd) : cb_(token, shutdown_fd{fd}) {}
  stop_guard(const stop_guard&) = delete;
  stop_guard& operator=(const stop_guard&) = delete;

 private:
  std::stop_callback<shutdown_fd> cb_;
};

// poll() for `events` until `deadline`; false on timeout. EINTR is retried.
inline bool poll_until(int fd, short events, clock::time_point deadline) {
  for (;;) {
    int ms = -1;
    if (deadline != clock::time_point::max()) {
      const auto left = deadline - clock::now();
      if (left <= clock::duration::zero()) return false;
      ms = static_cast<int>(std::min<std::int64_t>(
          std::chrono::ceil<std::chrono::milliseconds>(left).count(), 60 * 60 * 1000));
    }
    pollfd p{fd, events, 0};
    const leash::detail::blocking_region blocking;  // a coroutine task's worker goes on elsewhere
    const int r = ::poll(&p, 1, ms);
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) throw_errno("poll", errno);
  }
}

// True when an idle connection is still usable: no EOF, no error, no unread
// byte (a pooled connection must be silent).
inline bool idle_alive(int fd) noexcept {
  pollfd p{fd, POLLIN, 0};
  const int r = ::poll(&p, 1, 0);
  return r == 0;
}

// One address to connect to, as getaddrinfo gives it.
struct endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
};

// The error a failed getaddrinfo stands for. Out of file descriptors, the
// resolver fails with a misleading code (it cannot open /etc/hosts or a DNS
// socket), so a failing probe for one more fd names the real cause.
inline std::error_code resolve_error(int rc, int err) {
  if (rc == EAI_SYSTEM && err != 0) return {err, std::generic_category()};
  if (rc == EAI_MEMORY) return std::make_error_code(std::errc::not_enough_memory);
  const int probe = ::fcntl(0, F_DUPFD_CLOEXEC, 0);  // any fd number will do
  if (probe >= 0) {
    ::close(probe);
  } else if (errno == EMFILE || errno == ENFILE) {
    return {errno, std::generic_category()};
  }
  return std::make_error_code(std::errc::host_unreachable);
}

// Every address of host:port, in getaddrinfo's order. Numeric addresses never
// block; names use getaddrinfo, which is not cancellable. Throws io_error.
inline std::vector<endpoint> resolve(const std::string& host, std::uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  errno = 0;
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &list); rc != 0) {
    const std::error_code ec = resolve_error(rc, errno);
    const std::string cause = ec.value() == EHOSTUNREACH ? ::gai_strerror(rc) : ec.message();
    throw io_error("resolve " + host + ": " + cause, ec);
  }
  std::vector<endpoint> out;
  for (const addrinfo* a = list; a != nullptr; a = a->ai_next) {
    if (a->ai_addrlen > sizeof(sockaddr_storage)) continue;
    endpoint e;
    std::memcpy(&e.addr, a->ai_addr, a->ai_addrlen);
    e.len = a->ai_addrlen;
    out.push_back(e);
  }
  ::freeaddrinfo(list);
  return out;
}

// Connects to one address before `deadline`. Throws timeout, io_error, or
// cancelled when `token` stops.
inline socket connect_to(const endpoint& e, const std::string& where, clock::time_point deadline,
                         const std::stop_token& token) {
  socket s(::socket(e.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.valid()) throw_errno("socket", errno);
  const int one = 1;
  ::setsockopt(s.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(s.fd(), reinterpret_cast<const sockaddr*>(&e.addr), e.len) == 0) return s;
  if (errno != EINPROGRESS) throw_errno(where, errno);
  bool ready;
  {
    stop_guard guard(token, s.fd());
    ready = poll_until(s.fd(), POLLOUT, deadline);
  }
  leash::detail::throw_if_stopped(token);
  if (!ready) throw timeout(where);
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) throw_errno(where, err);
  return s;
}

// Each address but the last may use at least this much of the dial deadline
// (Go's dialSerial), so that one black-holed address cannot use it all.
inline constexpr std::chrono::seconds min_dial_share{2};

// The deadline of one attempt among `left` addresses still to try: an equal
// share of the time remaining, at least min_dial_share, never past `deadline`.
inline clock::time_point attempt_deadline(clock::time_point deadline, std::size_t left) {
  if (left <= 1 || deadline == clock::time_point::max()) return deadline;
  const auto now = clock::now();
  const auto share =
      std::max<clock::duration>((deadline - now) / static_cast<long>(left), min_dial_share);
  return share >= deadline - now ? deadline : now + share;
}

// Tries every address in order until one connects (Go's dialSerial). Throws
// the first address's error when all fail, cancelled at once when `token`
// stops, and io_error for an empty list.
inline socket dial_any(const std::vector<endpoint>& addrs, const std::string& where,
                       clock::time_point deadline, const std::stop_token& token) {
  std::exception_ptr first;
  for (std::size_t i = 0; i < addrs.size(); ++i) {
    try {
      return connect_to(addrs[i], where, attempt_deadline(deadline, addrs.size() - i), token);
    } catch (const http::error&) {  // cancelled is not one: it leaves at once
      if (!first) first = std::current_exception();
      if (clock::now() >= deadline) break;
    }
  }
  if (first) std::rethrow_exception(first);
  throw io_error(where + ": no address", std::make_error_code(std::errc::host_unreachable));
}

// Resolves host:port and connects to the first of its addresses that accepts,
// before `deadline`. Throws timeout, io_error, or cancelled when `token` stops.
inline socket dial(const std::string& host, std::uint16_t port, clock::time_point deadline,
                   const std::stop_token& token) {
  leash::detail::throw_if_stopped(token);
  const std::vector<endpoint> addrs = resolve(host, port);
  return dial_any(addrs, "dial " + host + ":" + std::to_string(port), deadline, token);
}

// The kernel's cap on a listen backlog (net.core.somaxconn), or SOMAXCONN
// when it cannot be read: the backlog Go's net.Listen uses.
inline int system_somaxconn() noexcept {
  const int fd = ::open("/proc/sys/net/core/somaxconn", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return SOMAXCONN;
  char text[32] = {};
  const ssize_t n = ::read(fd, text, sizeof text - 1);
  ::close(fd);
  int value = 0;
  for (ssize_t i = 0; i < n && text[i] >= '0' && text[i] <= '9'; ++i) {
    value = value * 10 + (text[i] - '0');
    if (value > (1 << 24)) break;  // nonsense: use the fallback
  }
  return value > 0 && value <= (1 << 24) ? value : SOMAXCONN;
}

// How a read before a deadline ended (stream_io.hpp's read_some).
enum class read_status { data, eof, timed_out };

}  // namespace leash::inline v0::http::detail
