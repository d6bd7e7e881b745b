// SPDX-License-Identifier: BSL-1.0
// leash/io/socket.hpp: non-blocking TCP sockets whose waits cost no thread.
// Prevents: a thread per connection. A coroutine task that waits for a peer
// is a suspended frame; the reactor (reactor.hpp) resumes it when the socket
// is ready.
//
//   leash::io::socket listener = leash::io::listen("127.0.0.1", 0);
//   n.spawn([&]() -> leash::coro<> {
//     for (;;) {
//       auto conn = co_await leash::io::async_accept(listener);
//       n.spawn([c = std::move(conn)]() mutable -> leash::coro<> { ... });
//     }
//   });
//   auto s = co_await leash::io::async_connect("localhost", 8080);
//   co_await s.async_write_all(std::as_bytes(std::span(text)));
//   std::size_t got = co_await s.async_read_some(buffer);   // 0: end of stream
//
// Every async_ operation is usable only inside a coroutine task (usage_error
// elsewhere, thrown when it is awaited) and shows in live_tasks() as blocked
// in its name ("io::async_read_some") while it waits.
//
// Guarantees. Blocks: never (listen() binds and listens, which does not
// wait; resolving a name runs on a thread of leash's thread cache).
// Cancelled: each wait, at once, by the task's ambient scope (nursery cancel,
// a sibling's failure, a cancel_scope or nursery deadline): the registration
// is removed and the operation throws cancelled / deadline_exceeded. A
// readiness that won the race is used: the operation completes. Throws
// io_error (errno and the operation in the message). Thread-safe: a socket
// has one owner; one task at a time may read and one may write it.
// Allocates: one frame per operation, from the frame cache.
#pragma once

#include "../detail/config.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "../coro.hpp"
#include "../detail/thread_cache.hpp"
#include "reactor.hpp"

namespace leash::inline v0::io {

// One address to connect to or listen on.
struct endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;

  int family() const noexcept { return addr.ss_family; }
  std::uint16_t port() const noexcept {
    if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(addr).sin6_port);
    return ntohs(reinterpret_cast<const sockaddr_in&>(addr).sin_port);
  }
  // "127.0.0.1:80", "[::1]:80".
  std::string to_string() const {
    char text[INET6_ADDRSTRLEN] = "?";
    if (family() == AF_INET6) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(addr).sin6_addr, text,
                  sizeof text);
      return "[" + std::string(text) + "]:" + std::to_string(port());
    }
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(addr).sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(port());
  }
};

// An open, non-blocking socket registered with the reactor. Move-only; the
// destructor closes it.
class socket {
 public:
  // No socket.
  socket() noexcept = default;

  // Adopts `fd` (any stream socket): makes it non-blocking and registers it.
  // On failure closes fd and throws io_error.
  explicit socket(int fd) : fd_(fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
      const int err = errno;
      ::close(fd);
      fd_ = -1;
      throw io_error("fcntl O_NONBLOCK", err);
    }
    try {
      desc_ = detail::reactor::instance().open(fd);
    } catch (...) {
      ::close(fd);
      fd_ = -1;
      throw;
    }
  }

  socket(socket&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)), desc_(std::exchange(other.desc_, nullptr)) {}
  socket& operator=(socket&& other) noexcept {
    if (this != &other) {
      close();
      fd_ = std::exchange(other.fd_, -1);
      desc_ = std::exchange(other.desc_, nullptr);
    }
    return *this;
  }
  socket(const socket&) = delete;
  socket& operator=(const socket&) = delete;
  ~socket() { close(); }

  bool is_open() const noexcept { return fd_ >= 0; }
  int native_handle() const noexcept { return fd_; }

  // Deregisters and closes. A task still waiting on this socket (another
  // task's operation) is resumed with io_error. Idempotent.
  void close() noexcept {
    if (fd_ < 0) return;
    detail::reactor::instance().close(fd_, desc_);
    ::close(std::exchange(fd_, -1));
    desc_ = nullptr;
  }

  // Ends the sending direction (the peer reads end of stream); reading goes on.
  void shutdown_write() {
    if (::shutdown(fd_, SHUT_WR) != 0) throw io_error("shutdown", errno);
  }

  // The address this socket is bound to (for a listener on port 0: its port).
  endpoint local_endpoint() const {
    endpoint e;
    e.len = sizeof e.addr;
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&e.addr), &e.len) != 0) {
      throw io_error("getsockname", errno);
    }
    return e;
  }

  // co_await: reads what is available, up to buf.size() bytes, waiting until
  // at least one byte or the end of stream arrives. Returns the count; 0 is
  // the end of stream (or an empty buf).
  coro<std::size_t> async_read_some(std::span<std::byte> buf);

  // co_await: writes all of buf, waiting for room as often as needed. If it
  // is cancelled or fails part way, a prefix of buf may have been sent.
  coro<void> async_write_all(std::span<const std::byte> buf);

 private:
  friend struct socket_access;
  int fd_ = -1;
  detail::poll_desc* desc_ = nullptr;
};

// Binds to address:port (a numeric address or a name resolved right here,
// blocking; port 0 picks a free port, see local_endpoint()) and listens.
// Throws io_error.
socket listen(const std::string& address, std::uint16_t port, int backlog = SOMAXCONN);

// co_await: the next connection on `listener`, non-blocking and registered.
coro<socket> async_accept(socket& listener);

// co_await: every address of host:port (IPv4 and IPv6, in the resolver's
// order). A numeric host is converted at once; a name is resolved on a
// thread of leash's thread cache while the task waits with no thread. A
// cancel resumes the task at once; the resolving thread finishes alone and
// its result is dropped.
coro<std::vector<endpoint>> async_resolve(std::string host, std::uint16_t port);

// co_await: a socket connected to the first of `addresses` that accepts,
// trying each in turn. Throws io_error naming what every attempt got.
coro<socket> async_connect(std::vector<endpoint> addresses);

// co_await: async_resolve(host, port), then async_connect of the addresses.
coro<socket> async_connect(std::string host, std::uint16_t port);

// ---------------------------------------------------------------------------
// Machinery.

namespace detail {

// Closes an fd not yet adopted by a socket.
class unique_fd {
 public:
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
  unique_fd& operator=(unique_fd&&) = delete;
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

using resolve_function = std::vector<endpoint> (*)(const std::string& host, std::uint16_t port);

// Every address of host:port by getaddrinfo; `flags` are added to its hints.
// Throws io_error; with AI_NUMERICHOST, a name gives an empty list instead.
inline std::vector<endpoint> getaddrinfo_all(const std::string& host, std::uint16_t port,
                                             int flags) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | flags;
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  errno = 0;
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &list); rc != 0) {
    if ((flags & AI_NUMERICHOST) != 0 && rc == EAI_NONAME) return {};
    const int err = rc == EAI_SYSTEM && errno != 0 ? errno : EHOSTUNREACH;
    throw io_error(
        "resolve " + host + ": " + (rc == EAI_SYSTEM ? std::strerror(err) : ::gai_strerror(rc)),
        std::error_code(err, std::generic_category()));
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

inline std::vector<endpoint> system_resolve(const std::string& host, std::uint16_t port) {
  return getaddrinfo_all(host, port, 0);
}

// What resolves a name on the cache's thread; tests may replace it.
inline std::atomic<resolve_function> resolver{&system_resolve};

// What a resolving thread and the awaiting task share: the thread writes the
// result, then marks `done`; the task may have left already.
struct resolve_state {
  std::string host;
  std::uint16_t port = 0;
  std::vector<endpoint> result;
  std::exception_ptr error;
  ready_slot done;
};

class resolve_job final : public leash::detail::job {
 public:
  explicit resolve_job(std::shared_ptr<resolve_state> s) noexcept : state_(std::move(s)) {}

  void run() noexcept override {
    std::shared_ptr<resolve_state> s = std::move(state_);
    delete this;
    try {
      s->result = resolver.load(std::memory_order_acquire)(s->host, s->port);
    } catch (...) {
      s->error = std::current_exception();
    }
    s->done.set_ready();
  }

 private:
  std::shared_ptr<resolve_state> state_;
};

// How a connect attempt ended, for the error that lists them all.
inline std::string describe_attempt(const endpoint& e, int err) {
  return e.to_string() + ": " + std::generic_category().message(err);
}

}  // namespace detail

struct socket_access {
  static int fd(const socket& s) noexcept { return s.fd_; }
  static detail::poll_desc& desc(const socket& s) noexcept { return *s.desc_; }
};

namespace detail {

// Throws io_error unless `s` is open.
inline void require_open(const socket& s, const char* what) {
  if (!s.is_open()) throw io_error(std::string(what) + ": the socket is not open", EBADF);
}

// After a wait: a socket closed meanwhile is an error.
inline void check_woken(wake_reason why, const char* what) {
  if (why == wake_reason::closed) {
    throw io_error(std::string(what) + ": the socket was closed while waiting", EBADF);
  }
}

// Connects a new socket to `e`. Returns the errno of a failed attempt (the
// socket stays closed), or 0 with `out` connected.
LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER inline coro<int> connect_one(const endpoint& e,
                                                                     socket& out) {
  unique_fd fd(::socket(e.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) co_return errno;
  int rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&e.addr), e.len);
  if (rc != 0 && errno != EINPROGRESS) co_return errno;
  // Registered after connect(): a socket that has not started connecting
  // reports hang-up, which would look like a finished attempt.
  socket s(fd.release());
  poll_desc& d = socket_access::desc(s);
  while (rc != 0) {
    check_woken(co_await slot_awaiter(d.write, "io::async_connect"), "io::async_connect");
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(socket_access::fd(s), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == EINPROGRESS || err == EALREADY || err == EINTR) continue;
    if (err != 0) co_return err;
    // No error but no peer yet: a stale readiness; wait again.
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof peer;
    rc = ::getpeername(socket_access::fd(s), reinterpret_cast<sockaddr*>(&peer), &peer_len);
    if (rc != 0 && errno != ENOTCONN) co_return errno;
  }
  out = std::move(s);
  co_return 0;
}

LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER inline coro<socket> connect_any(
    std::vector<endpoint> addresses, std::string label) {
  require_coroutine_task("io::async_connect");
  std::string failures;
  int last = EHOSTUNREACH;
  for (const endpoint& e : addresses) {
    socket s;
    const int err = co_await connect_one(e, s);
    if (err == 0) co_return s;
    last = err;
    failures += (failures.empty() ? "" : "; ") + describe_attempt(e, err);
  }
  if (addresses.empty()) failures = "no address to try";
  throw io_error("connect to " + label + ": " + failures,
                 std::error_code(last, std::generic_category()));
}

}  // namespace detail

LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER inline coro<std::size_t> socket::async_read_some(
    std::span<std::byte> buf) {
  constexpr const char* what = "io::async_read_some";
  detail::require_coroutine_task(what);
  detail::require_open(*this, what);
  if (buf.empty()) co_return 0;
  for (;;) {
    const ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
    if (n >= 0) co_return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) throw io_error("read", errno);
    detail::check_woken(co_await detail::slot_awaiter(desc_->read, what), what);
  }
}

LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER inline coro<void> socket::async_write_all(
    std::span<const std::byte> buf) {
  constexpr const char* what = "io::async_write_all";
  detail::require_coroutine_task(what);
  detail::require_open(*this, what);
  while (!buf.empty()) {
    const ssize_t n = ::send(fd_, buf.data(), buf.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      buf = buf.subspan(static_cast<std::size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) throw io_error("write", errno);
    detail::check_woken(co_await detail::slot_awaiter(desc_->write, what), what);
  }
}

inline socket listen(const std::string& address, std::uint16_t port, int backlog) {
  const std::vector<endpoint> addresses = detail::getaddrinfo_all(address, port, AI_PASSIVE);
  int last = EADDRNOTAVAIL;
  for (const endpoint& e : addresses) {
    detail::unique_fd fd(::socket(e.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) {
      last = errno;
      continue;
    }
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&e.addr), e.len) != 0 ||
        ::listen(fd.get(), backlog) != 0) {
      last = errno;
      continue;
    }
    return socket(fd.release());
  }
  throw io_error("listen on " + address + ":" + std::to_string(port), last);
}

LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER inline coro<socket> async_accept(socket& listener) {
  constexpr const char* what = "io::async_accept";
  detail::require_coroutine_task(what);
  detail::require_open(listener, what);
  detail::poll_desc& d = socket_access::desc(listener);
  for (;;) {
    const int fd =
        ::accept4(socket_access::fd(listener), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) co_return socket(fd);
    // The connection died in the backlog, or a signal: the next one is fine.
    if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) throw io_error("accept", errno);
    detail::check_woken(co_await detail::slot_awaiter(d.read, what), what);
  }
}

LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER inline coro<std::vector<endpoint>> async_resolve(
    std::string host, std::uint16_t port) {
  constexpr const char* what = "io::async_resolve";
  detail::require_coroutine_task(what);
  std::vector<endpoint> numeric = detail::getaddrinfo_all(host, port, AI_NUMERICHOST);
  if (!numeric.empty()) co_return numeric;
  auto state = std::make_shared<detail::resolve_state>();
  state->host = std::move(host);
  state->port = port;
  auto* job = new detail::resolve_job(state);
  try {
    leash::detail::thread_cache::instance().submit(job, what);
  } catch (...) {
    delete job;
    throw;
  }
  co_await detail::slot_awaiter(state->done, what);  // throws cancelled: the thread goes on alone
  if (state->error) std::rethrow_exception(state->error);
  co_return std::move(state->result);
}

LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER inline coro<socket> async_connect(
    std::vector<endpoint> addresses) {
  std::string label = addresses.empty() ? "no address" : addresses.front().to_string();
  co_return co_await detail::connect_any(std::move(addresses), std::move(label));
}

LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER inline coro<socket> async_connect(std::string host,
                                                                          std::uint16_t port) {
  detail::require_coroutine_task("io::async_connect");
  std::vector<endpoint> addresses = co_await async_resolve(host, port);
  co_return co_await detail::connect_any(std::move(addresses), host + ":" + std::to_string(port));
}

}  // namespace leash::inline v0::io
