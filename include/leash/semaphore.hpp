// SPDX-License-Identifier: BSL-1.0
// leash/semaphore.hpp: a counting semaphore whose permits are RAII values,
// Go's golang.org/x/sync/semaphore (weight 1) or a buffered chan struct{}.
// Prevents: a permit lost for good when the task holding it fails or is
// cancelled, and an acquire nobody can cancel.
//
//   leash::semaphore slots(4);                 // at most 4 fetches at once
//   leash::run_nursery([&](leash::nursery& n) {
//     for (auto& url : urls)
//       n.spawn([&] {
//         leash::semaphore::permit p = slots.acquire();   // released by ~permit
//         fetch(url);
//       });
//   });
//
// Built on a channel of capacity N holding N tokens: acquire receives a
// token, a permit's destruction sends it back. So an acquire has the
// channel's guarantees, and a select can wait for a permit (on_acquire).
//
// Guarantees. Blocks: acquire, try_acquire_for. Cancelled: by the ambient
// token or an explicit one; a cancelled acquire takes no permit, and an
// acquire that was already handed a permit when the stop came returns it
// (the permit is never lost: the count stays exact). Throws: cancelled /
// deadline_exceeded, usage_error (async_acquire outside a coroutine task).
// Thread-safe: every member, from any number of threads and coroutine tasks.
// Ordering: a released permit goes to the longest-waiting acquirer (the
// channel's FIFO wait queue); a release happens-before the acquire that takes
// its permit. Allocates: one buffer of N slots at construction, nothing after.
#pragma once

#include "detail/config.hpp"

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <functional>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "channel.hpp"
#include "detail/recv_adapter.hpp"
#include "errors.hpp"
#include "select.hpp"

namespace leash::inline v0 {
namespace detail {
// One permit as it travels through a semaphore's channel.
struct semaphore_token {};
template <class F>
struct permit_callback;
}  // namespace detail

class semaphore {
 public:
  // One permit of a semaphore; move-only. Gives the permit back when destroyed
  // or released; a moved-from or released permit holds nothing.
  class permit {
   public:
    permit() noexcept = default;  // holds nothing
    permit(permit&& other) noexcept : sem_(std::exchange(other.sem_, nullptr)) {}
    permit& operator=(permit&& other) noexcept {
      if (this != &other) {
        release();
        sem_ = std::exchange(other.sem_, nullptr);
      }
      return *this;
    }
    ~permit() { release(); }

    // Gives the permit back now; does nothing if it holds none.
    void release() noexcept {
      if (semaphore* s = std::exchange(sem_, nullptr)) s->give_back();
    }

    bool held() const noexcept { return sem_ != nullptr; }
    explicit operator bool() const noexcept { return held(); }

   private:
    friend class semaphore;
    explicit permit(semaphore& s) noexcept : sem_(&s) {}
    semaphore* sem_ = nullptr;
  };

  // A semaphore of `permits` permits, all available. Throws usage_error for 0
  // (nothing could ever be acquired).
  explicit semaphore(std::size_t permits) : tokens_(checked(permits)) {
    for (std::size_t i = 0; i < permits; ++i)
      (void)tokens_.try_send(detail::semaphore_token{});  // room: capacity is `permits`
  }

  // Precondition: every permit was released (a permit outliving its semaphore
  // would write to freed memory); checked, and a violation terminates.
  ~semaphore() {
    if (tokens_.size() != tokens_.capacity()) {
      std::fputs("leash::semaphore: destroyed while a permit is still held\n", stderr);
      std::terminate();
    }
  }

  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;

  // Takes a permit, waiting for one. Blocks; cancellable; throws cancelled.
  permit acquire() { return acquire(detail::ambient_token_ref()); }
  permit acquire(const std::stop_token& token) {
    (void)tokens_.recv(token);  // never nullopt: the channel is never closed
    return make_permit();
  }

  // Takes a permit if one is available now. Never blocks.
  std::optional<permit> try_acquire() {
    if (!tokens_.try_recv()) return std::nullopt;
    return make_permit();
  }

  // acquire, giving up after `timeout` (nullopt). Blocks; cancellable; throws
  // cancelled.
  template <class Rep, class Period>
  std::optional<permit> try_acquire_for(std::chrono::duration<Rep, Period> timeout) {
    return try_acquire_for(timeout, detail::ambient_token_ref());
  }
  template <class Rep, class Period>
  std::optional<permit> try_acquire_for(std::chrono::duration<Rep, Period> timeout,
                                        const std::stop_token& token) {
    if (!tokens_.try_recv_for(timeout, token)) return std::nullopt;
    return make_permit();
  }

  // co_await sem.async_acquire(), in a coroutine task: acquire() that
  // suspends the task, not its thread; cancelled by the task's ambient scope.
  // Throws usage_error outside a coroutine task.
  auto async_acquire() noexcept {
    return detail::recv_adapter(tokens_, "semaphore::async_acquire", to_permit{this});
  }

  // Snapshots: permits available now, and the number it was made with.
  std::size_t available() const noexcept { return tokens_.size(); }
  std::size_t capacity() const noexcept { return tokens_.capacity(); }

 private:
  template <class F>
  friend struct detail::permit_callback;
  template <class F>
  friend auto on_acquire(semaphore& sem, F fn);

  // The awaitable's result: the token received becomes a permit.
  struct to_permit {
    semaphore* sem;
    permit operator()(std::optional<detail::semaphore_token>&&) const noexcept;
  };

  // A permit for a token just received.
  permit make_permit() noexcept;

  static std::size_t checked(std::size_t permits) {
    if (permits == 0) throw usage_error("leash::semaphore: needs at least one permit");
    return permits;
  }

  // A permit's token goes back. Never blocks and never fails: at most
  // capacity tokens exist, so the buffer has room, or a waiter takes it.
  void give_back() noexcept {
    if (tokens_.try_send(detail::semaphore_token{}) != channel_status::ok) {
      std::fputs("leash::semaphore: a permit was released twice\n", stderr);
      std::terminate();
    }
  }

  channel<detail::semaphore_token> tokens_;
};

inline semaphore::permit semaphore::make_permit() noexcept {
  return permit(*this);
}

inline semaphore::permit semaphore::to_permit::operator()(
    std::optional<detail::semaphore_token>&&) const noexcept {
  return sem->make_permit();  // never nullopt: the channel is never closed
}

namespace detail {
// on_acquire's callback as a receive case sees it: takes the token and hands
// the user's callback a permit, which gives it back if the callback throws.
template <class F>
struct permit_callback {
  semaphore* sem;
  F fn;
  void operator()(semaphore_token) { std::invoke(fn, sem->make_permit()); }
};
}  // namespace detail

// A select case that takes a permit of `sem`: fn(semaphore::permit) runs with
// it if the case is chosen. Any select form accepts it (select, try_select,
// async_select, ...); a case that loses takes no permit.
template <class F>
auto on_acquire(semaphore& sem, F fn) {
  static_assert(std::is_invocable_v<F&, semaphore::permit>,
                "leash::on_acquire: the callback must be callable as f(semaphore::permit) (by "
                "value or &&)");
  return recv_case<detail::semaphore_token, detail::permit_callback<F>>(
      sem.tokens_, detail::permit_callback<F>{&sem, std::move(fn)});
}

}  // namespace leash::inline v0
