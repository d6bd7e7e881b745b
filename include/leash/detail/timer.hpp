// SPDX-License-Identifier: BSL-1.0
// leash/detail/timer.hpp: the one shared timer thread that serves every deadline.
//
// Entries live in an ordered map keyed by (deadline, id), so cancelling one is a
// real O(log n) removal: destroying a scope with a far deadline leaves nothing
// behind. The thread is started on first use and stopped at exit.
//
// Cost: the timer thread is only woken when an entry earlier than the time it
// already plans to wake at arrives. A create/destroy loop of scopes with the
// same timeout therefore never wakes it; only the first entry does.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "leak_signal.hpp"
#include "thread_census.hpp"

namespace leash::inline v0::detail {

// Something the timer thread calls back. on_timer runs on the timer thread:
// keep it tiny and never block in it.
class timer_client {
 public:
  virtual void on_timer() noexcept = 0;

 protected:
  ~timer_client() = default;
};

struct timer_handle {
  std::chrono::steady_clock::time_point when{};
  std::uint64_t id = 0;  // 0: no entry
};

class timer_service {
 public:
  using clock = std::chrono::steady_clock;

  // Immortal, so scopes destroyed during static destruction stay safe.
  static timer_service& instance() {
    static auto* service = new timer_service;
    static exit_guard guard{service};
    return *service;
  }

  // Calls client->on_timer() once at `when`, unless cancelled first.
  timer_handle schedule(clock::time_point when, timer_client* client) {
    std::lock_guard lock(mutex_);
    if (!running_) start_locked();  // may throw: then nothing was registered
    const timer_handle h{when, next_id_++};
    entries_.emplace(std::pair{when, h.id}, client);
    if (when < wake_at_) {
      wake_at_ = when;
      wake_.notify_one();
    }
    return h;
  }

  // Removes the entry. If its callback is running right now, waits until it
  // returned, so the client may be destroyed as soon as cancel() returns.
  void cancel(timer_handle& h) noexcept {
    if (h.id == 0) return;
    std::unique_lock lock(mutex_);
    if (entries_.erase(std::pair{h.when, h.id}) == 0) {
      // Already fired or firing. Waiting from the timer thread itself (a stop
      // callback destroying a scope) would deadlock; there it has returned.
      if (std::this_thread::get_id() != thread_id_) {
        fired_.wait(lock, [&] { return firing_ != h.id; });
      }
    }
    h.id = 0;
    lock.unlock();
    leak_signal::instance().notify();
  }

  std::size_t pending() const {
    std::lock_guard lock(mutex_);
    return entries_.size();
  }

  // For a deadlock check: true when no timer is pending or firing, and how
  // many were ever scheduled (a change means one was added meanwhile).
  std::pair<bool, std::uint64_t> quiet() const {
    std::lock_guard lock(mutex_);
    return {entries_.empty() && firing_ == 0, next_id_};
  }

  // The pending entries (id, due time), for leak checks.
  std::vector<timer_handle> snapshot() const {
    std::lock_guard lock(mutex_);
    std::vector<timer_handle> out;
    out.reserve(entries_.size());
    for (const auto& entry : entries_)
      out.push_back({entry.first.first, entry.first.second});
    return out;
  }

 private:
  struct exit_guard {
    timer_service* service;
    ~exit_guard() { service->shutdown(); }
  };

  timer_service() = default;

  // Starts the timer thread. If that throws (no thread can be created),
  // running_ stays false and the next schedule() tries again.
  void start_locked() {
    std::thread t([this] {
      const thread_census::member counted;
      run();
    });
    if (thread_.joinable()) thread_.detach();
    thread_ = std::move(t);
    running_ = true;
    // After shutdown nobody will join a new thread: let it end on its own.
    if (stopping_) thread_.detach();
  }

  void run() {
    std::unique_lock lock(mutex_);
    thread_id_ = std::this_thread::get_id();
    for (;;) {
      if (entries_.empty()) {
        if (stopping_) break;
        wake_at_ = clock::time_point::max();
        wake_.wait(lock);
        continue;
      }
      auto first = entries_.begin();
      const auto when = first->first.first;
      if (when > clock::now()) {
        wake_at_ = when;
        wake_.wait_until(lock, when);
        continue;
      }
      timer_client* client = first->second;
      firing_ = first->first.second;
      entries_.erase(first);
      // Fire unlocked: the callback requests stop, which runs stop callbacks
      // that take other locks and may schedule or cancel timers.
      lock.unlock();
      client->on_timer();
      leak_signal::instance().notify();
      lock.lock();
      firing_ = 0;
      fired_.notify_all();
    }
    running_ = false;
    thread_id_ = {};
  }

  // At exit: a thread with nothing pending is stopped and joined. One that
  // still serves a deadline (a scope alive during static destruction) keeps
  // running, detached, until its entries are gone.
  void shutdown() {
    std::unique_lock lock(mutex_);
    stopping_ = true;
    wake_.notify_one();
    if (!thread_.joinable()) return;
    if (entries_.empty()) {
      std::thread t = std::move(thread_);
      lock.unlock();
      t.join();
    } else {
      thread_.detach();
    }
  }

  mutable std::mutex mutex_;
  std::condition_variable wake_;   // the timer thread sleeps here
  std::condition_variable fired_;  // cancel() waits here for a running callback
  std::map<std::pair<clock::time_point, std::uint64_t>, timer_client*> entries_;
  // When the timer thread will look next; an earlier entry must wake it.
  clock::time_point wake_at_ = clock::time_point::max();
  std::uint64_t next_id_ = 1;
  std::uint64_t firing_ = 0;  // id whose callback runs now, 0 if none
  bool running_ = false;
  bool stopping_ = false;
  std::thread thread_;
  std::thread::id thread_id_;
};

}  // namespace leash::inline v0::detail
