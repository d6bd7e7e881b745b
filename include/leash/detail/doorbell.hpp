// SPDX-License-Identifier: BSL-1.0
// leash/detail/doorbell.hpp: the waiting part of a receiver whose values live
// in shared state (broadcast, watch): a channel of capacity 1 per receiver,
// rung by the sender after it published, read by the receiver to wait.
//
// The values stay under the shared state's mutex; the channel carries only
// "something new". A receiver has to poll that state, and when it finds
// nothing, wait on its doorbell. Every wait is therefore a channel receive,
// with the channel's cancellation, coroutine suspension and select cases.
//
// The contract a receiver keeps (Rx, through bell_access):
//   - poll() takes the next result under the shared mutex, or returns nullopt
//     when there is nothing yet; then, under that mutex, it empties the
//     doorbell when the receiver has nothing unread (and it is not closed),
//     and rings it when something is still unread.
//   - the sender rings (try_send) every doorbell under that mutex after it
//     published; close() closes every doorbell.
// So a doorbell holds a token exactly when poll() has a result, and a receive
// on it that returns means poll() will: no spurious wake-ups, and a select
// case on the doorbell is ready exactly when the receiver is. This holds for
// one task using the receiver at a time; a second one breaks it, which
// bell_result reports as a usage_error.
#pragma once

#include <coroutine>
#include <functional>
#include <optional>
#include <stop_token>
#include <utility>

#include "../channel.hpp"
#include "../errors.hpp"
#include "../select.hpp"
#include "recv_adapter.hpp"

namespace leash::inline v0::detail {

// The capacity of a doorbell: one "something new", however many values.
inline constexpr std::size_t doorbell_capacity = 1;

// What receivers make visible to the helpers below: poll(), bell() and the
// component name for messages (`Rx::component`, e.g. "broadcast").
struct bell_access {
  // `after_bell`: the caller just took a token from the doorbell.
  template <class Rx>
  static auto poll(Rx& rx, bool after_bell = false) {
    return rx.poll_(after_bell);
  }
  template <class Rx>
  static auto& bell(Rx& rx) {
    return rx.bell_();
  }
};

// The result after the doorbell rang: poll() must have one (see the contract).
template <class Rx>
auto bell_result(Rx& rx) {
  auto r = bell_access::poll(rx, true);
  if (!r) {
    throw usage_error(std::string("leash::") + Rx::component +
                      ": one receiver used by two tasks at once (subscribe one per task)");
  }
  return std::move(*r);
}

// The blocking wait: polls, and waits on the doorbell while nothing is there.
template <class Rx>
auto bell_wait(Rx& rx, const std::stop_token& token) {
  if (auto r = bell_access::poll(rx)) return std::move(*r);
  (void)bell_access::bell(rx).recv(token);  // throws cancelled; nullopt once closed
  return bell_result(rx);
}

// The awaitable wait: bell_wait that suspends the coroutine task instead.
template <class Rx>
class [[nodiscard]] bell_awaitable {
 public:
  using result_type = decltype(*bell_access::poll(std::declval<Rx&>()));

  bell_awaitable(Rx& rx, const char* what) noexcept
      : rx_(&rx), inner_(bell_access::bell(rx).async_recv()), what_(what) {}
  bell_awaitable(const bell_awaitable&) = delete;
  bell_awaitable& operator=(const bell_awaitable&) = delete;

  bool await_ready() {
    require_coroutine_task_for(what_);
    result_ = bell_access::poll(*rx_);
    return result_.has_value() || inner_.await_ready();
  }
  bool await_suspend(std::coroutine_handle<> h) { return inner_.await_suspend(h); }
  auto await_resume() {
    if (result_) return std::move(*result_);
    (void)inner_.await_resume();  // throws cancelled
    return bell_result(*rx_);
  }

 private:
  using bell_channel = std::remove_reference_t<decltype(bell_access::bell(std::declval<Rx&>()))>;

  Rx* rx_;
  typename bell_channel::recv_awaitable inner_;
  const char* what_;
  std::optional<std::remove_cvref_t<result_type>> result_;
};

// A select case on a receiver: a receive case on its doorbell whose callback
// gets the receiver's result (fn(result)) or nothing (fn()).
template <class Rx, class Bell, class F>
class bell_case final : public case_base<bell_case<Rx, Bell, F>> {
 public:
  bell_case(Rx& rx, F fn)
      : rx_(&rx), inner_(bell_access::bell(rx), keep_value{}), fn_(std::move(fn)) {}

 private:
  using clock = select_case::clock;

  select_case& inner() noexcept { return inner_; }
  const select_case& inner() const noexcept { return inner_; }

  spinlock* lock() const noexcept override { return inner().lock(); }
  lock_free_result try_lock_free() noexcept override { return inner().try_lock_free(); }
  bool ready_locked(clock::time_point now) const noexcept override {
    return inner().ready_locked(now);
  }
  bool buffer_ready_locked() const noexcept override { return inner().buffer_ready_locked(); }
  bool complete_locked(fire_link*& partner) noexcept override {
    return inner().complete_locked(partner);
  }
  void enqueue_locked(waiter& w, std::uint32_t index) noexcept override {
    inner().enqueue_locked(w, index);
  }
  void dequeue_locked() noexcept override { inner().dequeue_locked(); }
  void dequeue() noexcept override { inner().dequeue(); }
  bool woken_to_retry() const noexcept override { return inner().woken_to_retry(); }
  void finish() override {
    auto r = bell_result(*rx_);
    if constexpr (std::is_invocable_v<F&, decltype(std::move(r))>) {
      std::invoke(fn_, std::move(r));
    } else {
      std::invoke(fn_);
    }
  }

  Rx* rx_;
  recv_case<Bell> inner_;
  F fn_;
};

}  // namespace leash::inline v0::detail
