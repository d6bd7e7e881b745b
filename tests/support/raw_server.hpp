// tests/support/raw_server.hpp: a scripted loopback TCP server for HTTP fault tests.
//
// Each accepted connection runs `on_connection(conn&)` as a task of the
// server's own nursery; the script reads requests and writes whatever bytes
// the test wants (garbage, resets, stalls) — faults the leash server would
// never produce. The destructor cancels every script (blocked reads and
// writes wake through their stop token) and joins them.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <leash/http/detail/socket.hpp>
#include <leash/nursery.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace http_test {

namespace net = leash::http::detail;

// One accepted connection, seen by a script.
class conn {
 public:
  conn(net::socket s, std::stop_token token) : s_(std::move(s)), token_(std::move(token)) {}

  // Reads one request head (through the blank line) and a Content-Length
  // body; returns the head, or nullopt at EOF. Cancellable.
  std::optional<std::string> read_request() {
    for (;;) {
      const std::size_t end = buf_.find("\r\n\r\n");
      if (end != std::string::npos) {
        std::string head = buf_.substr(0, end + 4);
        buf_.erase(0, end + 4);
        std::size_t length = 0;
        if (auto p = head.find("Content-Length: "); p != std::string::npos) {
          length = std::stoul(head.substr(p + 16));
        }
        while (buf_.size() < length)
          if (!more()) return std::nullopt;
        buf_.erase(0, length);
        return head;
      }
      if (!more()) return std::nullopt;
    }
  }

  // Writes `bytes`; failures (the peer went away) are ignored.
  void write(std::string_view bytes) {
    try {
      net::write_all(s_.fd(), bytes, net::clock::time_point::max(), token_);
    } catch (const leash::http::error&) {
    }
  }

  // Waits until the peer closes (or the server is destroyed).
  void wait_eof() {
    while (more()) {
    }
  }

  // Closes with a TCP reset instead of a FIN.
  void reset() {
    linger l{1, 0};
    ::setsockopt(s_.fd(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
    s_.close();
  }
  void close() { s_.close(); }
  int fd() const { return s_.fd(); }
  const std::stop_token& token() const { return token_; }

 private:
  bool more() {
    char tmp[4096];
    std::size_t got = 0;
    try {
      if (net::read_some(s_.fd(), tmp, sizeof tmp, got, net::clock::time_point::max(), token_) !=
          net::read_status::data) {
        return false;
      }
    } catch (const leash::http::error&) {
      return false;
    }
    buf_.append(tmp, got);
    return true;
  }

  net::socket s_;
  std::stop_token token_;
  std::string buf_;
};

class raw_server {
 public:
  using script = std::function<void(conn&)>;

  // Listens on 127.0.0.1 (an ephemeral port) with `backlog`.
  explicit raw_server(script on_connection, int backlog = 64)
      : script_(std::move(on_connection)), n_({.name = "raw_server"}) {
    listener_ = net::socket(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    const int one = 1;
    ::setsockopt(listener_.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listener_.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener_.fd(), backlog) != 0) {
      net::throw_errno("raw_server listen", errno);
    }
    socklen_t len = sizeof addr;
    ::getsockname(listener_.fd(), reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    // Tasks read the ambient token instead of taking a std::stop_token by
    // value: g++ 12 -O2 -fsanitize=thread warns (-Wuse-after-free, a false
    // positive) on the by-value copy inlined into the task.
    if (script_)
      n_.spawn("raw_server accept", [this] { accept_loop(leash::this_task::stop_token()); });
  }

  ~raw_server() {
    n_.cancel();
    n_.wait();
  }

  std::uint16_t port() const { return port_; }
  int accepted() const { return accepted_.load(); }

 private:
  void accept_loop(const std::stop_token& st) {
    for (;;) {
      {
        net::stop_guard guard(st, listener_.fd());
        net::poll_until(listener_.fd(), POLLIN, net::clock::time_point::max());
      }
      if (st.stop_requested()) return;
      const int fd = ::accept4(listener_.fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) continue;
      ++accepted_;
      n_.spawn("raw_server connection", [this, fd] {
        conn c(net::socket(fd), leash::this_task::stop_token());
        script_(c);
      });
    }
  }

  script script_;
  net::socket listener_;
  std::uint16_t port_ = 0;
  std::atomic<int> accepted_{0};
  leash::nursery n_;  // declared last: joined before the rest dies
};

}  // namespace http_test
