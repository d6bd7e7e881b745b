// SPDX-License-Identifier: BSL-1.0
// leash/detail/coro_task.hpp: the record of a coroutine task in a nursery.
//
// A callable that returns coro<T>, spawned into a nursery, becomes a
// coro_task_impl: a task record (the same outcome, handle and failure rules
// as a thread task) that is also a resumable item of the scheduler. Its
// run_slice(), defined in nursery.hpp where the nursery is complete, resumes
// the coroutine on a worker with the task's ambient scope installed.
#pragma once

#include <atomic>
#include <coroutine>
#include <exception>
#include <functional>
#include <optional>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>

#include "../coro.hpp"
#include "scheduler.hpp"
#include "task_record.hpp"

namespace leash::inline v0::detail {

// Whether a task's callable returns a coro, and the coro's value type.
template <class R>
struct coro_result {
  static constexpr bool is_coro = false;
};
template <class T>
struct coro_result<coro<T>> {
  static constexpr bool is_coro = true;
  using type = T;
};

// Set by a coroutine task's slice: where its driver notes that it ended.
inline constinit thread_local bool* tls_task_finished = nullptr;

// The outermost coroutine of a coroutine task: awaits the user's coro and
// notes its end in the running slice, which then finishes the task.
class coro_task_driver {
 public:
  struct promise_type : frame_allocated {
    coro_task_driver get_return_object() noexcept {
      return coro_task_driver(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    auto final_suspend() const noexcept {
      struct note_end {
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<>) const noexcept { *tls_task_finished = true; }
        void await_resume() const noexcept {}
      };
      return note_end{};
    }
    void return_void() const noexcept {}
    // The body catches everything; reaching here is a leash bug.
    void unhandled_exception() const noexcept { std::terminate(); }
  };

  coro_task_driver(coro_task_driver&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  coro_task_driver& operator=(coro_task_driver&&) = delete;
  ~coro_task_driver() {
    if (handle_) handle_.destroy();
  }
  std::coroutine_handle<> handle() const noexcept { return handle_; }

 private:
  explicit coro_task_driver(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
  std::coroutine_handle<promise_type> handle_;
};

// What a task's driver runs: the task's own coro, typed behind this
// interface so that the driver's frame has no member of the task's type (g++
// warns, -Wsubobject-linkage, about a coroutine frame of a header template
// whose T is a type of an unnamed namespace).
class task_body {
 public:
  // Starts the coro, to continue with `driver` when it ends.
  virtual void start(std::coroutine_handle<> driver) noexcept = 0;
  // After its end: stores its value or exception in the task's record.
  virtual void finish() noexcept = 0;

 protected:
  ~task_body() = default;
};

struct run_task_body {
  task_body& body;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> driver) const noexcept { body.start(driver); }
  void await_resume() const noexcept { body.finish(); }
};

LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER inline coro_task_driver drive_task(task_body& body) {
  co_await run_task_body{body};
}

// A coroutine task on the scheduler: each run_slice() resumes it on a worker
// with the task's ambient state installed, until it suspends or ends. The
// ambient scope chain (cancel scopes and nurseries opened in the task's
// frames) belongs to the task: a slice that ends with the task suspended
// saves it, and the next slice, on whichever worker, reinstalls it.
class coro_task_base : public resumable, private post_listener {
 public:
  void run_slice() noexcept override;  // defined below the nursery

  // Makes posts of this task known to its virtual clock (see virtual_clock).
  void listen_to_posts() noexcept { post_hook = this; }

 protected:
  ~coro_task_base() = default;
  // Calls the task's callable and returns the driver to resume first.
  virtual std::coroutine_handle<> begin(const std::stop_token& token) = 0;
  // Frees the frames and the callable (whose captures a lambda coroutine
  // reads until it ends).
  virtual void release() noexcept = 0;
  virtual task_record& record() noexcept = 0;

 private:
  // One slice; true if the task was posted to run inline during it (see
  // run_slice), so it runs again at once.
  bool slice() noexcept;

  // Waits until the previous slice has let go of the task. The task may be
  // posted (by a timer, a stop, a partner) and picked up by another worker
  // while the slice that suspended it still saves its ambient state: a few
  // instructions, so the wait is a yield loop.
  void enter_slice() noexcept {
    while (in_slice_.exchange(true, std::memory_order_acquire))
      std::this_thread::yield();
  }
  void leave_slice() noexcept { in_slice_.store(false, std::memory_order_release); }

  void on_post() noexcept override {
    task_record& r = record();
    r.vclock->coro_posted(&r);
  }

  // Touched only inside enter_slice() / leave_slice().
  bool started_ = false;
  cancel_state* ambient_ = nullptr;  // the task's innermost scope while it is suspended
  context_state context_;            // the task's context while it is suspended
  bool rerun_ = false;               // posted inline from inside its own slice
  std::atomic<bool> in_slice_{false};
};

template <class T, class F>
class coro_task_impl final : public task_result<T>, public coro_task_base, private task_body {
 public:
  explicit coro_task_impl(F&& f) : fn_(std::move(f)) {}
  explicit coro_task_impl(const F& f) : fn_(f) {}

  // Thread tasks only: a coroutine task's callable runs in begin().
  void invoke(const std::stop_token&) override {}

 private:
  std::coroutine_handle<> begin(const std::stop_token& token) override {
    coro<T> c = call(token);
    if (!c.valid()) {
      throw usage_error("leash::nursery::spawn: the task's callable returned an empty coro");
    }
    body_.emplace(coro_access::release(std::move(c)));
    driver_.emplace(drive_task(*this));
    return driver_->handle();
  }
  coro<T> call(const std::stop_token& token) {
    if constexpr (takes_stop_token<F>) {
      return std::invoke(*fn_, token);
    } else {
      return std::invoke(*fn_);
    }
  }
  void start(std::coroutine_handle<> driver) noexcept override { body_->await_suspend(driver); }
  void finish() noexcept override {
    try {
      if constexpr (std::is_void_v<T>) {
        body_->await_resume();
      } else {
        this->value.emplace(body_->await_resume());
      }
    } catch (...) {
      this->error = std::current_exception();
    }
  }
  void release() noexcept override {
    driver_.reset();
    body_.reset();
    fn_.reset();
  }
  task_record& record() noexcept override { return *this; }

  std::optional<F> fn_;
  std::optional<coro_awaiter<T>> body_;  // owns the task's coro frame once begun
  std::optional<coro_task_driver> driver_;
};

}  // namespace leash::inline v0::detail
