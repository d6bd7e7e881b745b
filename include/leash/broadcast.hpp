// SPDX-License-Identifier: BSL-1.0
// leash/broadcast.hpp: every value to every receiver, tokio's broadcast
// channel. Go has none: the fan-out goroutine copying into one channel per
// receiver is its stand-in.
// Prevents: a fan-out where one slow receiver blocks the sender and every
// other receiver; here the slow one is told how many values it missed.
//
//   leash::broadcast<event> events(1024);        // keeps the last 1024 values
//   auto rx = events.subscribe();                // before the values it wants
//   leash::run_nursery([&](leash::nursery& n) {
//     n.spawn([rx = std::move(rx)]() mutable {
//       for (auto r = rx.recv(); !r.closed(); r = rx.recv()) {
//         if (r.lagged()) log_missed(r.missed); else handle(*r.value);
//       }
//     });
//     events.send(ev);                           // never blocks
//     events.close();                            // rx drains, then sees closed
//   });
//
// A receiver gets, in order, every value sent after it subscribed. The
// broadcast keeps the last `capacity` values in a ring; a receiver that falls
// further behind than that gets one `lagged` result saying how many values it
// lost (`missed`), then continues from the oldest value kept. After close(), a
// receiver gets the values it has not read yet, then `closed`, forever.
//
//   result of recv     status     value     missed
//   the next value     ok         set       0
//   fell behind        lagged     nullopt   how many values were overwritten
//   closed, drained    closed     nullopt   0
//   (try_recv only)    empty      nullopt   0  (nothing new yet)
//
// Built on leash/detail/doorbell.hpp: the values sit in one ring under a
// mutex, and each receiver waits on its own channel of capacity 1 that a send
// rings, so its waits are channel receives (cancellation, coroutines, select).
//
// Guarantees. Blocks: receiver::recv only; send never. Cancelled: by the
// ambient token or an explicit one; a cancelled recv loses no value (it is
// there for the next recv). Throws: cancelled / deadline_exceeded,
// channel_closed (send after close), usage_error (capacity 0, a moved-from
// receiver, async_recv outside a coroutine task, one receiver used by two
// tasks at once). Thread-safe: every broadcast member; a receiver belongs to
// one task at a time. Ordering: a send happens-before the recv that returns
// its value. The broadcast must outlive its receivers. Allocates: the ring at
// construction, one receiver state per subscribe; send copies each value once
// per receiver that reads it (T must be copyable).
#pragma once

#include "detail/config.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <vector>

#include "channel.hpp"
#include "detail/doorbell.hpp"
#include "errors.hpp"
#include "select.hpp"

namespace leash::inline v0 {

enum class broadcast_status {
  ok,      // value holds the next value
  lagged,  // missed values were overwritten before this receiver read them
  closed,  // closed, and every value was read
  empty,   // try_recv only: nothing new yet
};

// What a broadcast receiver's recv returns (see the table in the header).
template <class T>
struct broadcast_result {
  broadcast_status status = broadcast_status::empty;
  std::optional<T> value;    // the value, when ok
  std::uint64_t missed = 0;  // when lagged: how many values this receiver lost

  bool ok() const noexcept { return status == broadcast_status::ok; }
  bool lagged() const noexcept { return status == broadcast_status::lagged; }
  bool closed() const noexcept { return status == broadcast_status::closed; }
  bool empty() const noexcept { return status == broadcast_status::empty; }
};

template <class T>
class broadcast_receiver;

namespace detail {
// The element type of a broadcast receiver's doorbell: "something new".
struct broadcast_bell {};

// One receiver's position and doorbell; owned by the receiver, listed in the
// broadcast (under its mutex) so that send can ring it.
struct broadcast_slot {
  channel<broadcast_bell> bell{doorbell_capacity};
  std::uint64_t next = 0;  // sequence number of the next value to read
  // Whether this side put a token in the doorbell that poll() has not yet
  // accounted for; guarded by the broadcast's mutex. Saves a channel
  // operation per send and per read while a receiver is behind.
  bool rung = false;
};
}  // namespace detail

template <class T>
class broadcast {
  static_assert(std::is_copy_constructible_v<T>,
                "leash::broadcast: T must be copyable (every receiver gets a copy)");

 public:
  using receiver = broadcast_receiver<T>;

  // A broadcast keeping the last `capacity` values. Throws usage_error for 0.
  explicit broadcast(std::size_t capacity) : ring_(checked(capacity)) {}
  broadcast(const broadcast&) = delete;
  broadcast& operator=(const broadcast&) = delete;

  // Publishes `value` to every receiver subscribed now; returns how many.
  // Never blocks: when the ring is full the oldest value is overwritten, and
  // receivers that had not read it get lagged. Throws channel_closed after
  // close().
  std::size_t send(T value) {
    std::lock_guard lock(mutex_);
    if (closed_) throw channel_closed("leash::broadcast: send after close");
    ring_[sent_ % ring_.size()] = std::move(value);
    ++sent_;
    for (detail::broadcast_slot* s : slots_)
      ring(*s);
    return slots_.size();
  }

  // Ends every receiver's stream after the values it has not read. True for
  // the call that closed. Never blocks.
  bool close() noexcept {
    std::lock_guard lock(mutex_);
    if (closed_) return false;
    closed_ = true;
    for (detail::broadcast_slot* s : slots_)
      s->bell.close();
    return true;
  }

  // A receiver of every value sent from now on. After close() it is closed.
  receiver subscribe() { return receiver(*this); }

  bool closed() const {
    std::lock_guard lock(mutex_);
    return closed_;
  }
  std::size_t capacity() const noexcept { return ring_.size(); }
  // Snapshot: how many receivers are subscribed.
  std::size_t receiver_count() const {
    std::lock_guard lock(mutex_);
    return slots_.size();
  }

 private:
  friend class broadcast_receiver<T>;

  static std::size_t checked(std::size_t capacity) {
    if (capacity == 0) throw usage_error("leash::broadcast: capacity must be at least 1");
    return capacity;
  }

  void attach(detail::broadcast_slot& s) {
    std::lock_guard lock(mutex_);
    s.next = sent_;
    if (closed_) s.bell.close();
    slots_.push_back(&s);
  }
  void detach(detail::broadcast_slot& s) noexcept {
    std::lock_guard lock(mutex_);
    slots_.erase(std::find(slots_.begin(), slots_.end(), &s));
  }

  // The next result for `s`, or nullopt: nothing new and not closed. Keeps
  // doorbell.hpp's contract: the doorbell holds a token exactly while `s` has
  // values unread or the broadcast is closed. `after_bell`: the caller took
  // the token, which may have left values unread.
  std::optional<broadcast_result<T>> poll(detail::broadcast_slot& s, bool after_bell) {
    std::lock_guard lock(mutex_);
    if (after_bell) s.rung = false;
    std::optional<broadcast_result<T>> r = take(s);
    if (s.next < sent_) {
      ring(s);
    } else if (s.rung && !closed_) {
      (void)s.bell.try_recv();
      s.rung = false;
    }
    return r;
  }

  // Under the mutex: puts a token in `s`'s doorbell unless one is there.
  static void ring(detail::broadcast_slot& s) {
    if (s.rung) return;
    (void)s.bell.try_send(detail::broadcast_bell{});  // room: rung is false; closed: ignored
    s.rung = true;
  }

  // poll's result, under the mutex: a lag, the next value, closed, or nullopt.
  std::optional<broadcast_result<T>> take(detail::broadcast_slot& s) {
    broadcast_result<T> r;
    const std::uint64_t oldest = sent_ > ring_.size() ? sent_ - ring_.size() : 0;
    if (s.next < oldest) {
      r.status = broadcast_status::lagged;
      r.missed = oldest - s.next;
      s.next = oldest;
    } else if (s.next < sent_) {
      r.status = broadcast_status::ok;
      r.value = ring_[s.next % ring_.size()];
      ++s.next;
    } else if (closed_) {
      r.status = broadcast_status::closed;
    } else {
      return std::nullopt;
    }
    return r;
  }

  mutable std::mutex mutex_;
  std::vector<std::optional<T>> ring_;  // value number k at k % capacity
  std::uint64_t sent_ = 0;              // how many values were sent
  bool closed_ = false;
  std::vector<detail::broadcast_slot*> slots_;
};

// A broadcast's receiving side; move-only. Subscribed while it lives (the
// broadcast must outlive it); one task uses it at a time.
template <class T>
class broadcast_receiver {
 public:
  static constexpr const char* component = "broadcast";

  broadcast_receiver(broadcast_receiver&& other) noexcept = default;
  broadcast_receiver& operator=(broadcast_receiver&& other) noexcept {
    if (this != &other) {
      unsubscribe();
      owner_ = std::exchange(other.owner_, nullptr);
      slot_ = std::move(other.slot_);
    }
    return *this;
  }
  ~broadcast_receiver() { unsubscribe(); }

  // The next result: ok with a value, lagged, or closed. Blocks while there
  // is nothing new; cancellable; throws cancelled.
  broadcast_result<T> recv() { return recv(detail::ambient_token_ref()); }
  broadcast_result<T> recv(const std::stop_token& token) {
    check("recv");
    return detail::bell_wait(*this, token);
  }

  // recv if that needs no waiting; status empty otherwise. Never blocks.
  broadcast_result<T> try_recv() {
    check("try_recv");
    if (auto r = poll_(false)) return std::move(*r);
    return {};
  }

  // co_await rx.async_recv(), in a coroutine task: recv() that suspends the
  // task, not its thread; cancelled by the task's ambient scope. Throws
  // usage_error outside a coroutine task.
  auto async_recv() {
    check("async_recv");
    return detail::bell_awaitable<broadcast_receiver>(*this, "broadcast::async_recv");
  }

 private:
  friend class broadcast<T>;
  friend struct detail::bell_access;

  explicit broadcast_receiver(broadcast<T>& owner)
      : owner_(&owner), slot_(std::make_unique<detail::broadcast_slot>()) {
    owner.attach(*slot_);
  }

  void check(const char* what) const {
    if (!slot_) {
      throw usage_error(std::string("leash::broadcast: ") + what + " on a moved-from receiver");
    }
  }
  void unsubscribe() noexcept {
    if (slot_) owner_->detach(*slot_);
    slot_.reset();
    owner_ = nullptr;
  }

  std::optional<broadcast_result<T>> poll_(bool after_bell) {
    return owner_->poll(*slot_, after_bell);
  }
  channel<detail::broadcast_bell>& bell_() {
    check("wait");
    return slot_->bell;
  }

  broadcast<T>* owner_;
  std::unique_ptr<detail::broadcast_slot> slot_;
};

// A select case that receives from a broadcast receiver: fn(broadcast_result<T>)
// (ok, lagged or closed) or fn() runs if it is chosen. Ready when recv would
// not wait.
template <class T, class F>
auto on_recv(broadcast_receiver<T>& rx, F fn) {
  static_assert(std::is_invocable_v<F&, broadcast_result<T>> || std::is_invocable_v<F&>,
                "leash::on_recv: a broadcast receiver's callback must be callable as "
                "f(leash::broadcast_result<T>) or f()");
  return detail::bell_case<broadcast_receiver<T>, detail::broadcast_bell, F>(rx, std::move(fn));
}

}  // namespace leash::inline v0
