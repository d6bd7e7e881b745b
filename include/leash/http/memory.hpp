// SPDX-License-Identifier: BSL-1.0
// leash/http/memory.hpp: connections with no socket, for tests: a pipe of two
// in-memory byte streams (Go's net.Pipe) and a listener whose dialer() is a
// transport_options::dial.
// Prevents: HTTP client tests that cannot run in leash::virtual_time. A
// socket wait is outside leash (the kernel's own timers may still deliver
// bytes), so the virtual clock never jumps past one; a wait on a memory
// connection is a leash wait, so the clock jumps once both sides wait.
//
//   leash::virtual_time vt;
//   vt.run([&](leash::nursery& n) {
//     leash::http::memory_listener server;
//     leash::http::transport t({.response_header_timeout = 30s, .dial = server.dialer()});
//     n.spawn([&] {                                  // reads, never answers
//       std::unique_ptr<leash::http::memory_end> c = server.accept();
//       char buf[1024];
//       while (c->read_some(buf) > 0) {}
//     });
//     t.round_trip({"api.test", 80, {"GET", "/"}});  // http::timeout after 30 s of vt.now()
//   });
//
// Model. Each direction is a bounded byte buffer under a mutex. A read with
// nothing buffered, and a write with no room, waits on a doorbell channel
// (detail/doorbell.hpp) that the other end rings: every wait is a leash
// channel receive (cancellable, a suspension in a coroutine task, blocked in
// leash for the virtual clock). shutdown() ends an end's writes: the peer
// reads the buffered bytes, then the end of the stream. close() (or the
// destructor) ends both directions: the peer's writes fail with EPIPE, its
// reads see the end of the stream after the bytes already sent, and the
// end's own blocked calls wake and fail with EBADF.
//
// Guarantees. Blocks: read_some, write_all (while the peer's buffer is
// full), accept; never: the stream steps, dial, close. Cancelled: by the
// ambient token (blocking forms) or scope (async forms). Throws: cancelled,
// io_error (a write after either end closed: EPIPE; a call on a closed end:
// EBADF; a dial after close() or with the backlog full: ECONNREFUSED),
// usage_error (an async form outside a coroutine task; a capacity of 0).
// Thread-safe: one reader and one writer per end at a time, as a socket's;
// the listener's members from any thread. Ordering: a write happens-before
// the read that returns its bytes. Connections and dialer()s may outlive
// the listener (a dial is then refused).
#pragma once

#include "../detail/config.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "../cancel.hpp"
#include "../channel.hpp"
#include "../coro.hpp"
#include "../detail/doorbell.hpp"
#include "../errors.hpp"
#include "detail/stream_io.hpp"
#include "errors.hpp"
#include "stream.hpp"

namespace leash::inline v0::http {

class memory_end;

namespace detail {
// The bytes a direction of a memory connection holds unread by default: a
// socket buffer's order.
inline constexpr std::size_t default_memory_capacity = 64 * 1024;

// A memory connection must hold at least one byte, or no write could start.
inline void require_capacity(std::size_t capacity) {
  if (capacity == 0) throw usage_error("leash::http: a memory connection's capacity must be >= 1");
}

// The element of a memory lane's doorbells: "look again".
struct memory_bell {};

// One direction of a memory pipe: its bytes, the state of its two ends and
// the doorbells each end waits on.
struct memory_lane {
  explicit memory_lane(std::size_t cap) : capacity(cap) {}

  const std::size_t capacity;
  std::mutex mutex;
  std::string bytes;         // written, not yet read; at most `capacity`
  bool writer_done = false;  // the writing end shut down: end of stream after `bytes`
  bool reader_gone = false;  // the reading end closed: writes fail with EPIPE
  channel<memory_bell> readable{leash::detail::doorbell_capacity};  // bytes or the end came
  channel<memory_bell> writable{leash::detail::doorbell_capacity};  // room came
};
}  // namespace detail

// A connected pair of memory ends, each holding up to `capacity` bytes that
// its reader has not read yet. Throws usage_error for a capacity of 0.
std::pair<std::unique_ptr<memory_end>, std::unique_ptr<memory_end>> memory_pipe(
    std::size_t capacity = detail::default_memory_capacity);

// One end of a memory pipe: an http::stream that waits by itself, with
// blocking and coroutine reads and writes for a test's side of the pipe.
class memory_end final : public stream {
 public:
  using clock = std::chrono::steady_clock;

  memory_end(const memory_end&) = delete;
  memory_end& operator=(const memory_end&) = delete;
  ~memory_end() override { close(); }

  // Reads up to into.size() bytes; 0 at the end of the stream. Blocks;
  // cancellable; throws cancelled, io_error.
  std::size_t read_some(std::span<char> into) {
    std::size_t got = 0;
    (void)detail::read_some(*this, no_socket, into.data(), into.size(), got,
                            clock::time_point::max(), this_task::stop_token());
    return got;
  }
  // Writes all of `data`, waiting while the peer's buffer is full. Blocks;
  // cancellable (a prefix may have been written); throws cancelled, io_error.
  void write_all(std::string_view data) {
    detail::write_all(*this, no_socket, data, clock::time_point::max(), this_task::stop_token());
  }
  // The coroutine forms: co_await them in a coroutine task.
  coro<std::size_t> async_read_some(std::span<char> into) {
    return detail::async_read_some(*this, nullptr, into, "http::memory_end::async_read_some");
  }
  coro<void> async_write_all(std::string_view data) {
    return detail::async_write_all(*this, nullptr, data, "http::memory_end::async_write_all");
  }

  // Ends both directions (see the header comment). Idempotent; never blocks.
  void close() noexcept {
    if (closed_.exchange(true, std::memory_order_acq_rel)) return;
    end_writes();
    {
      const std::lock_guard lock(in_->mutex);
      in_->reader_gone = true;
      in_->bytes.clear();  // unread bytes are dropped, as a socket's
    }
    // Wakes every blocked call on both lanes: this end's own (they fail
    // with EBADF) and the peer's write (EPIPE); end_writes woke its read.
    in_->readable.close();
    in_->writable.close();
    out_->writable.close();
  }

  // The stream steps (stream.hpp).
  step read(std::span<char> into) override {
    detail::memory_lane& lane = *in_;
    const std::lock_guard lock(lane.mutex);
    require_open("read");
    if (lane.bytes.empty()) return {0, lane.writer_done ? want::nothing : want::read};
    const std::size_t n = lane.bytes.copy(into.data(), into.size());
    lane.bytes.erase(0, n);
    (void)lane.writable.try_send({});
    return {n, want::nothing};
  }

  step write(std::string_view data) override {
    detail::memory_lane& lane = *out_;
    const std::lock_guard lock(lane.mutex);
    require_open("write");
    // The peer is gone (or this end shut down): a step that takes nothing
    // and waits for nothing, which the driver reports as EPIPE. Not a throw:
    // a stream whose step threw is never read again, and the peer's last
    // answer (a 413 to an upload) must still be read.
    if (lane.writer_done || lane.reader_gone) return {0, want::nothing};
    const std::size_t n = std::min(data.size(), lane.capacity - lane.bytes.size());
    if (n == 0) return {0, want::write};
    lane.bytes.append(data.substr(0, n));
    (void)lane.readable.try_send({});
    return {n, want::nothing};
  }

  // Ends this end's writes; the peer reads the end of the stream after the
  // bytes already written.
  want shutdown() override {
    end_writes();
    return want::nothing;
  }

  // Bytes or the end of the stream wait to be read.
  bool has_buffered() const override {
    const std::lock_guard lock(in_->mutex);
    return !in_->bytes.empty() || in_->writer_done;
  }

  bool wait(want w, clock::time_point deadline, const std::stop_token& token) override {
    channel<detail::memory_bell>& bell = bell_for(w);
    if (deadline == clock::time_point::max()) {
      (void)bell.recv(token);
      return true;
    }
    // The deadline is on the waiting task's clock (virtual in virtual_time).
    const auto left = deadline - leash::detail::now_for_current_task();
    if (left <= clock::duration::zero()) return false;
    return bell.try_recv_for(left, token).status != channel_status::timeout;
  }

  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<void> async_wait(want w) override {
    (void)co_await bell_for(w).async_recv();
  }

 private:
  static constexpr int no_socket = -1;  // the stream waits by itself (stream_io.hpp)

  friend std::pair<std::unique_ptr<memory_end>, std::unique_ptr<memory_end>> memory_pipe(
      std::size_t);

  memory_end(std::shared_ptr<detail::memory_lane> in, std::shared_ptr<detail::memory_lane> out)
      : in_(std::move(in)), out_(std::move(out)) {}

  void require_open(const char* what) const {
    if (closed_.load(std::memory_order_acquire)) {
      detail::throw_errno(std::string("memory_end ") + what, EBADF);
    }
  }

  void end_writes() noexcept {
    {
      const std::lock_guard lock(out_->mutex);
      out_->writer_done = true;
    }
    out_->readable.close();  // the peer's reads wake to the end of the stream
  }

  // A read waits for bytes in, a write for room out.
  channel<detail::memory_bell>& bell_for(want w) const noexcept {
    return w == want::write ? out_->writable : in_->readable;
  }

  std::shared_ptr<detail::memory_lane> in_;   // the peer writes, this end reads
  std::shared_ptr<detail::memory_lane> out_;  // this end writes, the peer reads
  std::atomic<bool> closed_{false};
};

inline std::pair<std::unique_ptr<memory_end>, std::unique_ptr<memory_end>> memory_pipe(
    std::size_t capacity) {
  detail::require_capacity(capacity);
  auto a_to_b = std::make_shared<detail::memory_lane>(capacity);
  auto b_to_a = std::make_shared<detail::memory_lane>(capacity);
  return {std::unique_ptr<memory_end>(new memory_end(b_to_a, a_to_b)),
          std::unique_ptr<memory_end>(new memory_end(a_to_b, b_to_a))};
}

// Accepts connections dialed in memory: a test's server side.
class memory_listener {
 public:
  // Connections dialed and not yet accepted: listen()'s usual backlog.
  static constexpr std::size_t default_backlog = 128;

  // `capacity`: the bytes each direction of a connection holds unread.
  explicit memory_listener(std::size_t backlog = default_backlog,
                           std::size_t capacity = detail::default_memory_capacity)
      : backlog_(std::make_shared<queue>(backlog, capacity)) {
    detail::require_capacity(capacity);
  }
  memory_listener(const memory_listener&) = delete;
  memory_listener& operator=(const memory_listener&) = delete;
  // Closes; the connections dialed and not accepted are closed too (their
  // clients read the end of the stream).
  ~memory_listener() {
    close();
    while (backlog_->pending.try_recv()) {
    }
  }

  // Connects: returns the client's end; the server's end waits for
  // accept(). Never blocks; throws io_error (ECONNREFUSED) after close() or
  // with the backlog full.
  std::unique_ptr<memory_end> dial() { return backlog_->dial(); }

  // dial() as a transport_options::dial (the host and port are not looked
  // at). It may outlive the listener: its dials are then refused.
  std::function<std::unique_ptr<stream>(const std::string&, std::uint16_t)> dialer() {
    return [q = backlog_](const std::string&, std::uint16_t) -> std::unique_ptr<stream> {
      return q->dial();
    };
  }

  // The server's end of the oldest dialed connection; null once closed with
  // none left. Blocks; cancellable; throws cancelled.
  std::unique_ptr<memory_end> accept() {
    std::optional<std::unique_ptr<memory_end>> c = backlog_->pending.recv();
    return c ? std::move(*c) : nullptr;
  }
  // accept() for a coroutine task.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<std::unique_ptr<memory_end>> async_accept() {
    std::optional<std::unique_ptr<memory_end>> c = co_await backlog_->pending.async_recv();
    co_return c ? std::move(*c) : nullptr;
  }

  // Refuses later dials; accept() returns the connections already dialed,
  // then null. Idempotent; never blocks.
  void close() noexcept { (void)backlog_->pending.close(); }

 private:
  // The dialed connections' server ends, shared with the dialers.
  struct queue {
    queue(std::size_t backlog, std::size_t cap) : capacity(cap), pending(backlog) {}

    std::unique_ptr<memory_end> dial() {
      auto ends = memory_pipe(capacity);
      if (pending.try_send(std::move(ends.second)) != channel_status::ok) {
        detail::throw_errno("memory_listener dial", ECONNREFUSED);
      }
      return std::move(ends.first);
    }

    const std::size_t capacity;
    channel<std::unique_ptr<memory_end>> pending;
  };

  std::shared_ptr<queue> backlog_;
};

}  // namespace leash::inline v0::http
