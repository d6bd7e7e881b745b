// SPDX-License-Identifier: BSL-1.0
// leash/oneshot.hpp: one value from one sender to one receiver, Go's
// make(chan T, 1) used for a single reply.
// Prevents: a receiver waiting forever for a reply whose sender failed: a
// sender handle that is destroyed without sending closes the oneshot, and the
// receiver gets nullopt.
//
//   leash::oneshot<int> reply;
//   leash::run_nursery([&](leash::nursery& n) {
//     n.spawn([tx = reply.sender()]() mutable { tx.send(compute()); });
//     std::optional<int> v = reply.recv();   // nullopt: the sender gave up
//   });
//
//   call                    before a send            after send(v)            after close()
//   send(v)                 delivers v; closes       throws usage_error       throws usage_error
//   close()                 closes; true             false                    false
//   recv / async_recv       waits                    v, then nullopt          nullopt
//
// Built on a channel of capacity 1 that send() fills and then closes, so a
// select can wait for the value (on_recv) and every wait has the channel's
// cancellation.
//
// Guarantees. Blocks: recv, try_recv_for. Cancelled: by the ambient token or
// an explicit one; a stop that races the value's arrival loses, and the value
// is delivered. Throws: cancelled / deadline_exceeded, usage_error (a second
// send, a second sender(), async_recv outside a coroutine task). Thread-safe:
// every member. Ordering: send happens-before the recv that takes the value.
// Allocates: one slot at construction, nothing after.
#pragma once

#include "detail/config.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>

#include "channel.hpp"
#include "detail/recv_adapter.hpp"
#include "errors.hpp"
#include "select.hpp"

namespace leash::inline v0 {

template <class T>
class oneshot {
 public:
  class sender_handle;

  oneshot() : value_(capacity) {}
  oneshot(const oneshot&) = delete;
  oneshot& operator=(const oneshot&) = delete;

  // Delivers `value` and closes: the receiver gets it, later receives get
  // nullopt. Never blocks. Throws usage_error after a send or close().
  void send(T value) {
    finish("send");
    (void)value_.try_send(std::move(value));  // room: the one slot is free until now
    value_.close();
  }

  // Closes without a value: the receiver gets nullopt. False if the oneshot
  // was already sent on or closed. Never blocks.
  bool close() noexcept {
    if (done_.exchange(true, std::memory_order_acq_rel)) return false;
    value_.close();
    return true;
  }

  // The sending side as an RAII handle: a handle destroyed without sending
  // calls close(). Give it to the task that must answer. Throws usage_error
  // when called twice.
  sender_handle sender() {
    if (sender_taken_.exchange(true, std::memory_order_acq_rel)) {
      throw usage_error("leash::oneshot: sender() called twice (one sender per oneshot)");
    }
    return sender_handle(*this);
  }

  // The value, waiting for it; nullopt when the oneshot was closed without
  // one, or the value was already taken. Blocks; cancellable; throws cancelled.
  std::optional<T> recv() { return value_.recv(); }
  std::optional<T> recv(const std::stop_token& token) { return value_.recv(token); }

  // The value if it is there: status ok, empty (not sent yet) or closed.
  recv_result<T> try_recv() { return value_.try_recv(); }

  // recv, giving up after `timeout`: status ok, closed or timeout. Blocks;
  // cancellable; throws cancelled.
  template <class Rep, class Period>
  recv_result<T> try_recv_for(std::chrono::duration<Rep, Period> timeout) {
    return value_.try_recv_for(timeout);
  }
  template <class Rep, class Period>
  recv_result<T> try_recv_for(std::chrono::duration<Rep, Period> timeout,
                              const std::stop_token& token) {
    return value_.try_recv_for(timeout, token);
  }

  // co_await os.async_recv(), in a coroutine task: recv() that suspends the
  // task, not its thread; cancelled by the task's ambient scope. Throws
  // usage_error outside a coroutine task.
  auto async_recv() noexcept {
    return detail::recv_adapter(value_, "oneshot::async_recv", pass_through{});
  }

  // Snapshot: whether send() or close() was called.
  bool closed() const noexcept { return value_.closed(); }

 private:
  template <class U, class F>
  friend recv_case<U, F> on_recv(oneshot<U>& os, F fn);

  static constexpr std::size_t capacity = 1;  // the one value, so send never waits

  struct pass_through {
    std::optional<T> operator()(std::optional<T>&& v) const noexcept { return std::move(v); }
  };

  // Marks the oneshot used by `what`; throws usage_error if it already was.
  void finish(const char* what) {
    if (done_.exchange(true, std::memory_order_acq_rel)) {
      throw usage_error(std::string("leash::oneshot: ") + what +
                        " after a send or close (one value per oneshot)");
    }
  }

  channel<T> value_;
  std::atomic<bool> done_{false};          // send() or close() was called
  std::atomic<bool> sender_taken_{false};  // sender() was called
};

// The sending side of a oneshot; move-only. Destroyed without sending (the
// task returned early or threw), it closes the oneshot.
template <class T>
class oneshot<T>::sender_handle {
 public:
  sender_handle(sender_handle&& other) noexcept : os_(std::exchange(other.os_, nullptr)) {}
  sender_handle& operator=(sender_handle&& other) noexcept {
    if (this != &other) {
      abandon();
      os_ = std::exchange(other.os_, nullptr);
    }
    return *this;
  }
  ~sender_handle() { abandon(); }

  // oneshot::send through this handle; it then holds nothing. Throws
  // usage_error on a handle that holds nothing (sent, or moved from).
  void send(T value) {
    if (os_ == nullptr) {
      throw usage_error("leash::oneshot: send through a sender that already sent or was moved");
    }
    std::exchange(os_, nullptr)->send(std::move(value));
  }

 private:
  friend class oneshot;
  explicit sender_handle(oneshot& os) noexcept : os_(&os) {}
  void abandon() noexcept {
    if (oneshot* os = std::exchange(os_, nullptr)) os->close();
  }
  oneshot* os_;
};

// A select case that receives the oneshot's value: fn takes std::optional<T>
// (nullopt: closed without a value), T (closed: select throws
// channel_closed), or nothing, as on_recv on a channel.
template <class T, class F>
recv_case<T, F> on_recv(oneshot<T>& os, F fn) {
  return recv_case<T, F>(os.value_, std::move(fn));
}

}  // namespace leash::inline v0
