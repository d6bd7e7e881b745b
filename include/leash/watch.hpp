// SPDX-License-Identifier: BSL-1.0
// leash/watch.hpp: the latest value of something, and a wake-up when it
// changes: tokio's watch channel, Go's mutex-guarded value plus a
// 1-buffered "dirty" channel per reader.
// Prevents: a reader that polls for changes, and one that queues every
// intermediate state when it only needs the newest.
//
//   leash::watch<config> current(load());
//   auto rx = current.subscribe();
//   leash::run_nursery([&](leash::nursery& n) {
//     n.spawn([rx = std::move(rx)]() mutable {
//       apply(rx.get());                          // the value now
//       while (std::optional<config> c = rx.changed()) apply(*c);  // nullopt: closed
//     });
//     current.send(reload());                     // never blocks
//     current.close();
//   });
//
// send replaces the value; each receiver's changed() waits for a value newer
// than the last one it saw, returns the latest (values sent in between are
// skipped) and marks it seen, so each send wakes a receiver at most once and
// a receiver never sees an older value after a newer one. subscribe() marks
// the current value seen. After close(), changed() still returns a value the
// receiver has not seen, then nullopt forever; get() keeps working.
//
// Built on leash/detail/doorbell.hpp: the value sits under a mutex, and each
// receiver waits on its own channel of capacity 1 that a send rings, so its
// waits are channel receives (cancellation, coroutines, select).
//
// Guarantees. Blocks: receiver::changed only; send never. Cancelled: by the
// ambient token or an explicit one; a cancelled changed() marks nothing seen.
// Throws: cancelled / deadline_exceeded, channel_closed (send after close),
// usage_error (a moved-from receiver, async_changed outside a coroutine task,
// one receiver used by two tasks at once). Thread-safe: every watch member; a
// receiver belongs to one task at a time. Ordering: a send happens-before the
// changed() or get() that returns its value. The watch must outlive its
// receivers. Allocates: one receiver state per subscribe; get() and changed()
// copy the value (T must be copyable).
#pragma once

#include "detail/config.hpp"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "channel.hpp"
#include "detail/doorbell.hpp"
#include "errors.hpp"
#include "select.hpp"

namespace leash::inline v0 {

template <class T>
class watch_receiver;

namespace detail {
// The element type of a watch receiver's doorbell: "changed".
struct watch_bell {};

// One receiver's last seen version and doorbell; owned by the receiver,
// listed in the watch (under its mutex) so that send can ring it.
struct watch_slot {
  channel<watch_bell> bell{doorbell_capacity};
  std::uint64_t seen = 0;  // the version this receiver last returned
};
}  // namespace detail

template <class T>
class watch {
  static_assert(std::is_copy_constructible_v<T>,
                "leash::watch: T must be copyable (readers get copies of the value)");

 public:
  using receiver = watch_receiver<T>;

  explicit watch(T initial) : value_(std::move(initial)) {}
  watch(const watch&) = delete;
  watch& operator=(const watch&) = delete;

  // Replaces the value and wakes every receiver. Never blocks. Throws
  // channel_closed after close().
  void send(T value) {
    std::lock_guard lock(mutex_);
    if (closed_) throw channel_closed("leash::watch: send after close");
    value_ = std::move(value);
    ++version_;
    for (detail::watch_slot* s : slots_)
      (void)s->bell.try_send(detail::watch_bell{});  // full: already rung
  }

  // Ends every receiver's waits (after a value it has not seen). True for the
  // call that closed. Never blocks.
  bool close() noexcept {
    std::lock_guard lock(mutex_);
    if (closed_) return false;
    closed_ = true;
    for (detail::watch_slot* s : slots_)
      s->bell.close();
    return true;
  }

  // A copy of the current value.
  T get() const {
    std::lock_guard lock(mutex_);
    return value_;
  }
  // How many times send() replaced the value.
  std::uint64_t version() const {
    std::lock_guard lock(mutex_);
    return version_;
  }
  bool closed() const {
    std::lock_guard lock(mutex_);
    return closed_;
  }

  // A receiver that has seen the current value: changed() waits for the next.
  receiver subscribe() { return receiver(*this); }

 private:
  friend class watch_receiver<T>;

  void attach(detail::watch_slot& s) {
    std::lock_guard lock(mutex_);
    s.seen = version_;
    if (closed_) s.bell.close();
    slots_.push_back(&s);
  }
  void detach(detail::watch_slot& s) noexcept {
    std::lock_guard lock(mutex_);
    slots_.erase(std::find(slots_.begin(), slots_.end(), &s));
  }

  // changed()'s result for `s` (the latest value, or nullopt: closed), or
  // nullopt when there is nothing unseen and the watch is open.
  std::optional<std::optional<T>> poll(detail::watch_slot& s) {
    std::lock_guard lock(mutex_);
    if (s.seen != version_) {
      s.seen = version_;
      if (!closed_) (void)s.bell.try_recv();  // all seen: see doorbell.hpp's contract
      return std::optional<std::optional<T>>(std::in_place, value_);
    }
    if (closed_) return std::optional<std::optional<T>>(std::in_place);  // closed
    (void)s.bell.try_recv();
    return std::nullopt;
  }

  bool unseen(const detail::watch_slot& s) const {
    std::lock_guard lock(mutex_);
    return s.seen != version_;
  }

  mutable std::mutex mutex_;
  T value_;
  std::uint64_t version_ = 0;
  bool closed_ = false;
  std::vector<detail::watch_slot*> slots_;
};

// A watch's receiving side; move-only. Subscribed while it lives (the watch
// must outlive it); one task uses it at a time.
template <class T>
class watch_receiver {
 public:
  static constexpr const char* component = "watch";

  watch_receiver(watch_receiver&& other) noexcept = default;
  watch_receiver& operator=(watch_receiver&& other) noexcept {
    if (this != &other) {
      unsubscribe();
      owner_ = std::exchange(other.owner_, nullptr);
      slot_ = std::move(other.slot_);
    }
    return *this;
  }
  ~watch_receiver() { unsubscribe(); }

  // A copy of the current value; marks nothing seen.
  T get() const {
    check("get");
    return owner_->get();
  }

  // Snapshot: whether a value newer than the last one seen was sent.
  bool has_changed() const {
    check("has_changed");
    return owner_->unseen(*slot_);
  }

  // Waits for a value newer than the last one seen, marks it seen and returns
  // it; nullopt once the watch is closed and the latest value was seen.
  // Blocks; cancellable; throws cancelled.
  std::optional<T> changed() { return changed(detail::ambient_token_ref()); }
  std::optional<T> changed(const std::stop_token& token) {
    check("changed");
    return detail::bell_wait(*this, token);
  }

  // co_await rx.async_changed(), in a coroutine task: changed() that suspends
  // the task, not its thread; cancelled by the task's ambient scope. Throws
  // usage_error outside a coroutine task.
  auto async_changed() {
    check("async_changed");
    return detail::bell_awaitable<watch_receiver>(*this, "watch::async_changed");
  }

 private:
  friend class watch<T>;
  friend struct detail::bell_access;

  explicit watch_receiver(watch<T>& owner)
      : owner_(&owner), slot_(std::make_unique<detail::watch_slot>()) {
    owner.attach(*slot_);
  }

  void check(const char* what) const {
    if (!slot_) {
      throw usage_error(std::string("leash::watch: ") + what + " on a moved-from receiver");
    }
  }
  void unsubscribe() noexcept {
    if (slot_) owner_->detach(*slot_);
    slot_.reset();
    owner_ = nullptr;
  }

  std::optional<std::optional<T>> poll_(bool) { return owner_->poll(*slot_); }
  channel<detail::watch_bell>& bell_() {
    check("wait");
    return slot_->bell;
  }

  watch<T>* owner_;
  std::unique_ptr<detail::watch_slot> slot_;
};

// A select case that fires when the watch changed (changed() would not wait):
// fn(std::optional<T>) gets what changed() returns (nullopt: closed), or fn()
// runs; either way the value is marked seen.
template <class T, class F>
auto on_changed(watch_receiver<T>& rx, F fn) {
  static_assert(std::is_invocable_v<F&, std::optional<T>> || std::is_invocable_v<F&>,
                "leash::on_changed: the callback must be callable as f(std::optional<T>) or f()");
  return detail::bell_case<watch_receiver<T>, detail::watch_bell, F>(rx, std::move(fn));
}

}  // namespace leash::inline v0
