// SPDX-License-Identifier: BSL-1.0
// leash/detail/task_record.hpp: the shared state of one spawned task.
//
// A record is owned jointly by its nursery (while the task runs) and by any
// task<T> handles, through a shared_ptr. It holds the callable until the task
// has run (then destroys it on the task's thread, so captures die promptly),
// the outcome, and a completion flag that get() can wait on cancellably and
// that suspended coroutines (co_await on a task handle) are woken by.
//
// While the task runs, the record also holds the task's own scope: a child
// of the nursery's state installed as the task's ambient scope, so that
// task<T>::cancel() stops this task alone (see cancel_state::make_task_scope).
#pragma once

#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

#include "cancel_state.hpp"
#include "context.hpp"
#include "registry.hpp"
#include "task_identity.hpp"
#include "thread_cache.hpp"
#include "wait.hpp"

namespace leash::inline v0 {
class nursery;

namespace detail {

// The callable shapes a task may have: f() or f(std::stop_token).
template <class F>
concept takes_stop_token = std::is_invocable_v<F&, std::stop_token>;
template <class F>
concept task_callable = std::is_invocable_v<F&> || takes_stop_token<F>;

template <class F>
struct task_result_of {
  using type = std::invoke_result_t<F&>;
};
template <takes_stop_token F>
struct task_result_of<F> {
  using type = std::invoke_result_t<F&, std::stop_token>;
};

// A coroutine suspended until a task is done, registered with
// task_record::add_waiter. on_done() runs once, on the thread that finishes
// the task, and must call fired() as its last touch of the node:
// remove_waiter() waits for that, and the owner may destroy the node right
// after.
class done_waiter {
 public:
  virtual void on_done() noexcept = 0;

 protected:
  // Virtual as well as protected: the record reaches nodes only through this base.
  virtual ~done_waiter() = default;
  void fired() noexcept { fired_.store(true, std::memory_order_release); }

 private:
  friend class task_record;
  done_waiter* prev_ = nullptr;  // the record's waiter list, guarded by its mutex
  done_waiter* next_ = nullptr;
  bool linked_ = false;  // guarded by the record's mutex
  std::atomic<bool> fired_{false};
};

class task_record : public job, public task_identity {
 public:
  // Defined in nursery.hpp, where the nursery is complete. Declared inline here so
  // that it is not the class's key function: otherwise every TU including this
  // header would emit the vtable and all code reachable from it.
  inline void run() noexcept override;

  // Runs the callable and stores its value; exceptions propagate to run().
  virtual void invoke(const std::stop_token& token) = 0;
  // Destroys the callable without running it (the task was cancelled first).
  virtual void discard() noexcept {}

  // task<T>::cancel(): stops the task's own scope if it runs, or makes its
  // body not run if it has not started. Thread-safe and idempotent (the first
  // message wins); a no-op once the task ended. The flag is set before the
  // lock, so a stop hook that cancels this task again returns at once.
  void cancel(std::string message) {
    if (cancel_requested_.exchange(true, std::memory_order_acq_rel)) return;
    std::lock_guard lock(scope_mutex_);  // the task cannot finish meanwhile: its cancel
                                         // event falls before its finish event
    if (scope_live_) {
      if (scope_->request(stop_reason::cancelled, std::move(message))) tell_cancel(scope_->info());
    } else if (!scope_closed_) {
      cancel_info why;
      why.message = message;
      pending_cancel_.emplace(std::move(message));
      tell_cancel(why);
    }
  }

  // As the task starts, on its thread (current_task set): opens the task's
  // scope under the nursery's state, unless no handle is left to cancel the
  // task (a spawn whose handle was dropped pays nothing). Returns the task's
  // ambient scope, or null if the task was cancelled before it started: its
  // body is not to run (the scope, stopped, is scope()).
  cancel_state* open_scope(cancel_state& nursery_state) {
    // Acquire: the last handle's release came after any cancel() made through it.
    if (handles.load(std::memory_order_acquire) == 0 &&
        !cancel_requested_.load(std::memory_order_relaxed))
      return &nursery_state;
    scope_ = std::make_unique<cancel_state>(&nursery_state, std::stop_token{},
                                            cancel_state::clock::time_point::max());
    scope_->make_task_scope();
    std::lock_guard lock(scope_mutex_);
    scope_live_ = true;
    if (!pending_cancel_) return scope_.get();
    scope_->request(stop_reason::cancelled, std::move(*pending_cancel_));
    pending_cancel_.reset();
    return nullptr;
  }

  cancel_state& scope() noexcept { return *scope_; }

  // The observer's cancel event for a cancel of this task alone.
  void tell_cancel(const cancel_info& why) const noexcept {
    if (observing()) [[unlikely]]
      report_cancel(why);
  }

  // After the body, with `error` set to a cancelled that ended it: quiet when
  // the nursery was stopped or the task's own cancel() won; for the latter,
  // the outcome becomes that cancel (reason cancelled, its message) whichever
  // scope inside the task threw it.
  void settle_cancelled(const cancel_state& nursery_state) {
    quiet = nursery_state.stop_requested();
    if (!scope_ || scope_->own_reason() != stop_reason::cancelled) return;
    quiet = true;
    try {
      scope_->throw_cancelled();
    } catch (const cancelled&) {
      error = std::current_exception();
    }
  }

  // As the task ends, before it tells its nursery: later cancels are no-ops.
  // Without a scope no handle was left at the start, so no cancel can come.
  void close_scope() noexcept {
    if (scope_ == nullptr) return;
    {
      std::lock_guard lock(scope_mutex_);
      scope_live_ = false;
      scope_closed_ = true;
    }
    scope_.reset();
  }

  bool done() const {
    std::lock_guard lock(mutex_);
    return done_;
  }

  // Waits until the task finished. Blocks; cancellable; throws cancelled.
  void wait_done(const std::stop_token& token) {
    std::unique_lock lock(mutex_);
    if (done_) return;
    blocked_scope blocked("task::get");
    if (wait(lock, cv_, token, [&] { return done_; }) == wait_status::stopped) {
      lock.unlock();
      throw_cancelled(token);
    }
  }

  // Runs w.on_done() once the task is done: at once, on this thread, if it
  // is already.
  void add_waiter(done_waiter& w) noexcept {
    {
      std::lock_guard lock(mutex_);
      if (!done_) {
        w.next_ = waiters_;
        if (waiters_ != nullptr) waiters_->prev_ = &w;
        waiters_ = &w;
        w.linked_ = true;
        return;
      }
    }
    w.on_done();
  }

  // Unregisters `w`. If mark_done took it already, waits until its on_done()
  // returned, so `w` may be destroyed as soon as this returns.
  void remove_waiter(done_waiter& w) noexcept {
    {
      std::lock_guard lock(mutex_);
      if (w.linked_) {
        if (w.prev_ != nullptr) w.prev_->next_ = w.next_;
        if (w.next_ != nullptr) w.next_->prev_ = w.prev_;
        if (waiters_ == &w) waiters_ = w.next_;
        w.prev_ = w.next_ = nullptr;
        w.linked_ = false;
        return;
      }
    }
    while (!w.fired_.load(std::memory_order_acquire))
      std::this_thread::yield();
  }

  // Publishes the outcome: wakes get() and runs every waiter's on_done(),
  // outside the lock (an on_done may resume a coroutine that reads the record).
  void mark_done() {
    done_waiter* list = nullptr;
    {
      std::lock_guard lock(mutex_);
      done_ = true;
      if (vclock != nullptr) vclock->notify(&cv_);
      cv_.notify_all();
      list = std::exchange(waiters_, nullptr);
      for (done_waiter* w = list; w != nullptr; w = w->next_)
        w->linked_ = false;
    }
    while (done_waiter* w = list) {
      list = w->next_;  // read first: once fired, w may die
      w->on_done();
    }
  }

  // task<T> handles of this record: set to one (the handle spawn returns)
  // before the task can start, then counted by the handles themselves.
  std::atomic<int> handles{0};
  nursery* owner = nullptr;
  task_record* prev = nullptr;  // owner's list of running tasks, guarded by its mutex
  task_record* next = nullptr;
  std::shared_ptr<task_record> keep_alive;  // set while the task runs
  context_ref context;  // the spawner's context, captured at admission; released at the end

  // Outcome, written before mark_done().
  std::exception_ptr error;
  bool quiet = false;                 // a cancelled that escaped while the nursery was stopped
  std::atomic<bool> observed{false};  // error seen through get(), failures() or wait()

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  done_waiter* waiters_ = nullptr;  // coroutines suspended until done_

  // The task's own scope (see open_scope). scope_mutex_ keeps it alive for a
  // cancel() that stops it, so the stop's hooks run under it.
  std::atomic<bool> cancel_requested_{false};
  std::mutex scope_mutex_;
  bool scope_live_ = false;                    // guarded by scope_mutex_
  bool scope_closed_ = false;                  // guarded by scope_mutex_
  std::optional<std::string> pending_cancel_;  // guarded by scope_mutex_: before the start
  // Engaged while the task runs, if a handle could cancel it. On the heap:
  // a cancel state is larger than the rest of the record, which a
  // coroutine task's frame cache would then no longer pool.
  std::unique_ptr<cancel_state> scope_;
};

template <class T>
class task_result : public task_record {
 public:
  std::optional<T> value;  // set when the callable returned
};
template <>
class task_result<void> : public task_record {};

template <class T, class F>
class task_impl final : public task_result<T> {
 public:
  explicit task_impl(F&& f) : fn_(std::move(f)) {}
  explicit task_impl(const F& f) : fn_(f) {}

  void discard() noexcept override { fn_.reset(); }

  void invoke(const std::stop_token& token) override {
    // Destroy the callable on the task's thread, as soon as it has run.
    struct reset_on_exit {
      std::optional<F>& fn;
      ~reset_on_exit() { fn.reset(); }
    } reset{fn_};
    if constexpr (std::is_void_v<T>) {
      call(token);
    } else {
      this->value.emplace(call(token));
    }
  }

 private:
  decltype(auto) call(const std::stop_token& token) {
    if constexpr (takes_stop_token<F>) {
      return std::invoke(*fn_, token);
    } else {
      return std::invoke(*fn_);
    }
  }

  std::optional<F> fn_;
};

}  // namespace detail
}  // namespace leash::inline v0
