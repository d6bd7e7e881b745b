// SPDX-License-Identifier: BSL-1.0
// leash/detail/wait.hpp: the stop-aware condition wait every blocking leash call uses.
//
// std::condition_variable_any's stop_token waits have shipped broken in some
// standard libraries (lost wake-ups), so leash waits on a plain
// std::condition_variable and registers its own stop hook that wakes the
// waiter. The callback locks the waiter's mutex before notifying, and the
// waiter checks the token under that mutex, so a stop can never slip in between
// "checked the token" and "went to sleep".
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stop_token>

#include "cancel_state.hpp"
#include "scheduler.hpp"
#include "task_identity.hpp"
#include "virtual_clock.hpp"

namespace leash::inline v0::detail {

using clock = std::chrono::steady_clock;

enum class wait_status { ready, stopped, timeout };

// Waits on `cv` (whose mutex `lock` holds) until ready() is true, `token` is
// stopped, or `deadline` passes. Returns with the lock held. Readiness wins
// over a simultaneous stop: an operation that completed is never reported as
// cancelled.
//
// The lock is released briefly to register and to unregister the stop
// callback: registering may run the callback inline (token already stopped),
// and unregistering blocks until a running callback returns; either would
// deadlock on a held mutex. Because of that unlock, ready() may have become
// false again by the time this returns ready: a caller that consumes what it
// waited for (a slot under a limit) must re-check in a loop.
// wait_until for a task of a virtual_time scope: the deadline is on its
// clock, and the wait counts as blocked there. Whoever makes ready() true must
// call its clock's notify(&cv) (after the change, under the lock or before
// anything else it does).
template <class Ready>
wait_status wait_until_virtual(task_identity& me, std::unique_lock<std::mutex>& lock,
                               std::condition_variable& cv, const std::stop_token& token,
                               clock::time_point deadline, Ready ready) {
  const blocking_region blocking;
  virtual_clock& vc = *me.vclock;
  std::mutex& mutex = *lock.mutex();
  struct expiry final : timer_client {
    expiry(std::mutex& m, std::condition_variable& c, virtual_clock& v) noexcept
        : mutex(m), cv(c), vc(v) {}
    void on_timer() noexcept override {
      std::lock_guard guard(mutex);
      due = true;
      vc.notify(&cv);
      cv.notify_all();
    }
    std::mutex& mutex;
    std::condition_variable& cv;
    virtual_clock& vc;
    bool due = false;  // guarded by mutex
  } expiring(mutex, cv, vc);
  auto wake = [&](auto fired) {
    std::lock_guard guard(mutex);
    fired();
    vc.notify(&cv);
    cv.notify_all();
  };
  wait_status status;
  lock.unlock();
  {
    timer_handle timer;
    if (deadline != clock::time_point::max()) {
      if (deadline <= vc.now()) {
        expiring.due = true;
      } else {
        timer = vc.schedule(deadline, &expiring);
      }
    }
    {
      stop_hook<decltype(wake)> on_stop(token, wake);
      lock.lock();
      for (;;) {
        if (ready()) {
          status = wait_status::ready;
          break;
        }
        if (token.stop_requested()) {
          status = wait_status::stopped;
          break;
        }
        if (expiring.due) {
          status = wait_status::timeout;
          break;
        }
        vc.block(&me, &cv);
        cv.wait(lock);
      }
      lock.unlock();
      vc.end_wait(&me);
    }
    vc.cancel(timer);
  }
  lock.lock();
  if (status != wait_status::ready && ready()) status = wait_status::ready;
  return status;
}

template <class Ready>
wait_status wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                       const std::stop_token& token, clock::time_point deadline, Ready ready) {
  if (ready()) return wait_status::ready;
  if (token.stop_requested()) return wait_status::stopped;
  if (task_identity* me = vt_member())
    return wait_until_virtual(*me, lock, cv, token, deadline, ready);
  const blocking_region blocking;  // a coroutine task's worker goes to another thread
  std::mutex& mutex = *lock.mutex();
  auto wait_once = [&] {
    if (deadline == clock::time_point::max()) {
      cv.wait(lock);
      return true;
    }
    return cv.wait_until(lock, deadline) == std::cv_status::no_timeout;
  };
  if (!token.stop_possible()) {
    while (!ready()) {
      if (!wait_once() && !ready()) return wait_status::timeout;
    }
    return wait_status::ready;
  }

  // Under the mutex: the wake lands after the waiter's token check or inside
  // its wait, and the waiter cannot leave (and destroy cv) before the unlock.
  auto wake = [&](auto fired) {
    std::lock_guard guard(mutex);
    fired();
    cv.notify_all();
  };
  wait_status status;
  lock.unlock();
  {
    stop_hook<decltype(wake)> on_stop(token, wake);
    lock.lock();
    for (;;) {
      if (ready()) {
        status = wait_status::ready;
        break;
      }
      if (token.stop_requested()) {
        status = wait_status::stopped;
        break;
      }
      if (!wait_once() && !ready() && !token.stop_requested()) {
        status = wait_status::timeout;
        break;
      }
    }
    lock.unlock();
  }
  lock.lock();
  // Readiness that arrived while unlocked still wins over a stop or timeout.
  if (status != wait_status::ready && ready()) status = wait_status::ready;
  return status;
}

template <class Ready>
wait_status wait(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                 const std::stop_token& token, Ready ready) {
  return wait_until(lock, cv, token, clock::time_point::max(), ready);
}

// now + d, saturating: a huge timeout means "no deadline", never an overflow.
template <class Rep, class Period>
clock::time_point deadline_after(std::chrono::duration<Rep, Period> d) {
  const auto now = now_for_current_task();
  if (d <= d.zero()) return now;
  const auto room = clock::time_point::max() - now;
  // Compared in double seconds: d's own representation may not hold `room`.
  if (std::chrono::duration<double>(d) >= std::chrono::duration<double>(room)) {
    return clock::time_point::max();
  }
  return now + std::chrono::ceil<clock::duration>(d);
}

}  // namespace leash::inline v0::detail
