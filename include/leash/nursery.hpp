// SPDX-License-Identifier: BSL-1.0
// leash/nursery.hpp: a task group that owns every thread it starts.
// Prevents: goroutines that outlive their work (net/http's persistConn loop),
// and a WaitGroup.Wait() that hangs forever because one backend hangs.
//
//   leash::run_nursery({.timeout = 2s}, [&](leash::nursery& n) {
//     auto a = n.spawn("a", [] { return fetch("a"); });   // task<std::string>
//     n.spawn([](std::stop_token st) { poll_until(st); });
//   });                                                     // joined here
//
// Model. A nursery is a cancel scope that also owns tasks. Each task runs at
// once on a runtime thread with the nursery's token as its ambient token. No
// task outlives its nursery: wait() and the destructor join them all. The
// first failure cancels the others; wait() rethrows it unchanged.
//
//   state        spawn                   wait()                  destructor
//   open         runs the task           joins, reports          joins, reports
//   cancelled    task not run: its get() joins, reports          joins, reports
//                throws cancelled
//   waited       throws usage_error      reports again           nothing left to join
//
// "Reports": rethrows the first failure (unless cancel_on_failure is false),
// else throws deadline_exceeded if the nursery's own deadline cut a task short,
// else cancelled if an enclosing scope did; an explicit cancel() ends quietly.
//
// In a coroutine task the same operations have awaitable forms that suspend
// the task, not its worker: `co_await t` for t.get(), `co_await n.async_wait()`
// for n.wait(), and `co_await run_nursery(options, body)` for a body that
// returns a coro.
//
// Guarantees. Blocks: wait(), the destructor, task::get(), and spawn() while
// `limit` tasks run. Cancelled: spawn's and get()'s waits by the ambient token;
// wait() joins regardless (cancellation reaches the tasks through the token).
// Throws: the first failure, cancelled / deadline_exceeded, usage_error on
// misuse. Thread-safe: spawn, try_spawn, cancel, failures from any thread;
// construct, wait and destroy on one thread, innermost scope first.
#pragma once

#include "detail/config.hpp"

#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "cancel.hpp"
#include "coro.hpp"
#include "detail/cancel_reporter.hpp"
#include "detail/cancel_state.hpp"
#include "detail/coro_task.hpp"
#include "detail/deadlock_watch.hpp"
#include "detail/registry.hpp"
#include "detail/scheduler.hpp"
#include "detail/task_identity.hpp"
#include "detail/task_record.hpp"
#include "detail/thread_cache.hpp"
#include "detail/uncaught.hpp"
#include "detail/virtual_clock.hpp"
#include "errors.hpp"

namespace leash::inline v0 {

namespace detail {

struct nursery_runner;

// co_await on a task handle: suspends the coroutine task until the awaited
// task is done or the ambient state stops, whichever comes first, then gives
// what get() gives. The finishing thread and the stopping thread race for
// the wake-up (wakeup_gate) and only post the task.
template <class T>
class task_awaiter final : private done_waiter, private stop_hook_node {
 public:
  explicit task_awaiter(std::shared_ptr<task_result<T>> r) noexcept : record_(std::move(r)) {}
  task_awaiter(const task_awaiter&) = delete;
  task_awaiter& operator=(const task_awaiter&) = delete;
  ~task_awaiter() override = default;

  bool await_ready() {
    if (current_resumable == nullptr) {
      throw usage_error("leash::task \"" + record_->name +
                        "\": co_await only inside a coroutine task (nursery::spawn of a "
                        "function returning leash::coro); elsewhere use get()");
    }
    if (current_task == record_.get()) {
      throw usage_error("leash::task \"" + record_->name +
                        "\": co_await from inside the task itself would deadlock");
    }
    task_ = current_resumable;
    state_ = ambient;
    return record_->done() || (state_ != nullptr && state_->stop_requested());
  }

  void await_suspend(std::coroutine_handle<> h) {
    task_->resume_at = h;
    registered_ = true;
    identity_ = current_task;
    if (identity_ != nullptr) identity_->note_blocked("task::co_await");
    // Both registrations happen before this side arrives: whichever event
    // fires first claims, and only the last arrival posts the task.
    record_->add_waiter(*this);
    if (state_ != nullptr) state_->add_hook(*this);
    wakeup_.arrive(task_);
  }

  // A task that ended by now wins over a stop, as in get().
  std::add_lvalue_reference_t<T> await_resume() {
    if (registered_) {
      if (identity_ != nullptr) identity_->note_blocked(nullptr);
      record_->remove_waiter(*this);
      if (state_ != nullptr) state_->remove_hook(*this);
    }
    task_result<T>& r = *record_;
    if (!r.done()) state_->throw_cancelled();  // only a stop resumes it early
    if (r.error) {
      r.observed.store(true, std::memory_order_relaxed);
      std::rethrow_exception(r.error);
    }
    if constexpr (!std::is_void_v<T>) return *r.value;
  }

 private:
  static constexpr int by_done = 1;
  static constexpr int by_stop = 2;

  // fired() early: the owner's remove_* waits for it, but the owner cannot
  // run before the task is posted, so a winning claim keeps this alive until
  // its arrival.
  void on_done() noexcept override {
    const bool won = wakeup_.claim(by_done);
    done_waiter::fired();
    if (won) wakeup_.arrive(task_);
  }
  void on_stop() noexcept override {
    const bool won = wakeup_.claim(by_stop);
    stop_hook_node::fired();
    if (won) wakeup_.arrive(task_);
  }

  std::shared_ptr<task_result<T>> record_;
  resumable* task_ = nullptr;
  cancel_state* state_ = nullptr;
  task_identity* identity_ = nullptr;
  bool registered_ = false;
  wakeup_gate wakeup_;
};

}  // namespace detail

// A handle to a spawned task's outcome. Cheap to copy; valid even after the
// nursery is gone (the nursery joined the task, so the outcome is final).
template <class T>
class task {
 public:
  task() = default;
  task(const task& other) : state_(other.state_) { hold(); }
  task(task&& other) noexcept = default;  // the count goes with the pointer
  task& operator=(const task& other) {
    if (this != &other) {
      release();
      state_ = other.state_;
      hold();
    }
    return *this;
  }
  task& operator=(task&& other) noexcept {
    if (this != &other) {
      release();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  ~task() { release(); }

  // Waits until the task finished (blocks; cancellable by the ambient or the
  // given token), then returns its value or rethrows its exception. A task
  // spawned into a cancelled nursery throws cancelled.
  std::add_lvalue_reference_t<T> get() { return get(detail::ambient_token_ref()); }
  std::add_lvalue_reference_t<T> get(const std::stop_token& token) {
    detail::task_result<T>& r = record();
    if (detail::current_task == &r) {
      throw usage_error("leash::task \"" + r.name + "\": get() from inside the task itself would " +
                        "deadlock");
    }
    r.wait_done(token);
    if (r.error) {
      r.observed.store(true, std::memory_order_relaxed);
      std::rethrow_exception(r.error);
    }
    if constexpr (!std::is_void_v<T>) return *r.value;
  }

  // co_await t, in a coroutine task: get() without blocking the worker. The
  // task is suspended until t finished, then gets its value or its
  // exception (marked observed); the ambient token's stop resumes it at once
  // with cancelled. Throws usage_error outside a coroutine task, from t
  // itself, or on an empty handle.
  detail::task_awaiter<T> operator co_await() const {
    if (state_ == nullptr) throw usage_error("leash::task: co_await on an empty task handle");
    return detail::task_awaiter<T>(state_);
  }

  // Cancels this task alone: its blocking leash calls (and co_await points)
  // throw cancelled, and the scopes and nurseries opened inside it are
  // cancelled as by a parent; a task not started yet does not run its body.
  // The nursery and the other tasks go on: a cancelled that ends the task is
  // a quiet end, and get() / co_await then throw cancelled with reason()
  // cancelled and this message. A task that catches it and returns a value
  // gives that value. The std::stop_token the task's callable received (the
  // nursery's) does not see this cancel. Never blocks; thread-safe and
  // idempotent (the first message wins); a no-op once the task finished.
  // Throws usage_error on an empty handle.
  void cancel(std::string message = {}) { record("cancel()").cancel(std::move(message)); }

  // True once the task has finished (a snapshot).
  bool done() const { return state_ != nullptr && state_->done(); }
  bool valid() const noexcept { return state_ != nullptr; }
  const std::string& name() const { return record().name; }
  source_location site() const { return record().site; }

 private:
  friend class nursery;
  // Adopts the count launch() set before the task could start.
  explicit task(std::shared_ptr<detail::task_result<T>> s) : state_(std::move(s)) {}

  // The record counts its handles: a task with none left opens no scope of
  // its own (nothing can cancel it alone).
  void hold() const noexcept {
    if (state_ != nullptr) state_->handles.fetch_add(1, std::memory_order_relaxed);
  }
  void release() const noexcept {
    if (state_ != nullptr) state_->handles.fetch_sub(1, std::memory_order_release);
  }

  detail::task_result<T>& record(const char* what = "get()") const {
    if (state_ == nullptr) {
      throw usage_error(std::string("leash::task: ") + what + " on an empty task handle");
    }
    return *state_;
  }

  std::shared_ptr<detail::task_result<T>> state_;
};

struct nursery_options {
  static constexpr std::size_t unlimited = static_cast<std::size_t>(-1);

  // At most this many tasks run at once: spawn() waits, try_spawn() refuses.
  std::size_t limit = unlimited;
  // Cancel the tasks after this long / at this time; wait() then throws
  // deadline_exceeded if a task was still running.
  std::optional<std::chrono::nanoseconds> timeout{};
  std::optional<std::chrono::steady_clock::time_point> deadline{};
  // false: a supervisor. Failures do not cancel siblings and wait() does not
  // throw them; read them through task::get() or failures().
  bool cancel_on_failure = true;
  // For diagnostics: exceptions, leak reports, live_tasks().
  std::string name{};
  // Deadlock detection for this nursery alone. When every task of it, the
  // tasks nested in them and the thread waiting for it are blocked in leash
  // calls and none of their timers is pending, the nursery is cancelled and
  // wait() throws leash::deadlock naming each task, its spawn site and its
  // blocked call, whatever the rest of the process does. The opener vouches
  // that nothing outside the nursery (another thread or task) wakes its
  // tasks: the channels they block on are held by them alone, as in a
  // virtual_time scope. A nursery opened by a coroutine task: usage_error.
  // runtime_options::detect_deadlocks needs no such promise, but reports
  // only when the whole process is idle.
  bool detect_deadlocks = false;
};

class nursery final : private detail::nursery_node {
 public:
  // Opens a nursery as a child of the ambient scope and installs it as the
  // thread's ambient scope. Throws usage_error for a limit of 0.
  [[nodiscard]] explicit nursery(nursery_options options = {},
                                 source_location site = source_location::current())
      : options_(checked(std::move(options))),
        site_(site),
        id_(detail::next_id()),
        parent_task_(detail::current_task != nullptr ? detail::current_task->id : 0),
        parent_task_ptr_(detail::current_task),
        uncaught_(detail::uncaught_exceptions()),
        watch_(detail::deadlock_watch::open_if_enabled(options_.name, site,
                                                       options_.detect_deadlocks)),
        state_(detail::watch_opening(watch_.get()).parent(), {}, deadline_of(options_),
               options_.name),
        installed_(&state_, "leash::nursery") {
    if (watch_ != nullptr) watch_->attach(state_);
    detail::registry::instance().add(this);
  }

  nursery(const nursery&) = delete;
  nursery& operator=(const nursery&) = delete;

  // Cancels the tasks if the scope is unwinding with an exception; always
  // joins them. Failures nobody observed go to the unobserved-failure handler.
  ~nursery() {
    if (runs_current_task()) {
      std::fprintf(stderr,
                   "leash: nursery \"%s\" destroyed from one of its own tasks: it would wait "
                   "for itself forever\n",
                   options_.name.c_str());
      std::terminate();
    }
    if (detail::uncaught_exceptions() > uncaught_) {
      state_.request(stop_reason::cancelled, "the nursery's scope is unwinding with an exception");
    }
    bool waited = false;
    {
      std::unique_lock lock(mutex_);
      waited = closed_;
      wait_joined(lock);
      closed_ = true;
    }
    cancel_reporter_.unlink();
    detail::registry::instance().remove(this);
    if (watch_ != nullptr) {
      watch_->detach();
      // Found while the destructor joined: nobody else will hear of it.
      if (!waited && watch_->found()) {
        detail::report_unobserved({watch_->found(), "(deadlock)", site_, options_.name});
      }
    }
    const bool unwinding = detail::uncaught_exceptions() > uncaught_;
    for (const auto& f : failures_) {
      if (f->observed.load(std::memory_order_relaxed)) continue;
      // A cancelled carrying this failure as cause() was thrown on this
      // thread and is what unwinds the scope now: the failure is not lost.
      if (unwinding && f->error == state_.cause() && state_.delivered_cause()) continue;
      detail::report_unobserved({f->error, f->name, f->site, options_.name});
    }
  }

  // Starts f on a runtime thread at once and returns its handle. f takes no
  // arguments or a std::stop_token (the nursery's). Blocks while `limit` tasks
  // run (cancellable). Into a cancelled nursery: f does not run, get() throws
  // cancelled. Throws usage_error after wait() returned, resource_exhausted
  // when no thread can be had (runtime_options::max_threads, or the OS).
  template <class F>
  auto spawn(F&& f, source_location site = source_location::current()) {
    return *spawn_impl({}, std::forward<F>(f), site, false);
  }
  template <class F>
  auto spawn(std::string name, F&& f, source_location site = source_location::current()) {
    return *spawn_impl(std::move(name), std::forward<F>(f), site, false);
  }

  // Like spawn, but never waits and never throws resource_exhausted: returns
  // nullopt when `limit` tasks run or the runtime has no thread for it.
  template <class F>
  [[nodiscard]] auto try_spawn(F&& f, source_location site = source_location::current()) {
    return spawn_impl({}, std::forward<F>(f), site, true);
  }
  template <class F>
  [[nodiscard]] auto try_spawn(std::string name, F&& f,
                               source_location site = source_location::current()) {
    return spawn_impl(std::move(name), std::forward<F>(f), site, true);
  }

  // Joins every task, then reports (see the table above). Blocks until all
  // tasks ended. Calling it from one of the nursery's own tasks is a usage_error.
  void wait() {
    if (runs_current_task()) {
      throw usage_error("leash::nursery \"" + options_.name +
                        "\": wait() from one of its own tasks (or a task nested in one) would "
                        "deadlock");
    }
    std::unique_lock lock(mutex_);
    {
      detail::blocked_scope blocked("nursery::wait");
      wait_joined(lock);
    }
    closed_ = true;
    report(lock);
    if (watch_ != nullptr) {
      if (std::exception_ptr found = watch_->found()) std::rethrow_exception(found);
    }
  }

 private:
  class join_awaiter;

 public:
  // co_await n.async_wait(): wait() for a coroutine task. Suspends the task,
  // not its worker, until every task ended, then reports as wait() does.
  // Throws usage_error outside a coroutine task or from one of the
  // nursery's own tasks.
  [[nodiscard]] join_awaiter async_wait() noexcept;

  // Requests stop on every task (and on nurseries nested in them). Never blocks.
  void cancel(std::string message = {}) {
    state_.request(stop_reason::cancelled, std::move(message));
  }

  // Asks every task to finish (a soft stop, see
  // this_task::soft_stop_requested), then cancels hard once `grace` passed,
  // with reason cancelled and the message "leash::nursery: shutdown grace of
  // <grace> elapsed". Tasks that finish in time end quietly. Never blocks:
  // wait() joins as usual. A later call only shortens the grace; zero is
  // cancel(). See cancel_scope::cancel_after_grace.
  template <class Rep, class Period>
  void shutdown(std::chrono::duration<Rep, Period> grace) {
    state_.stop_after_grace(detail::grace_duration(grace), "leash::nursery", "shutdown grace");
  }

  std::stop_token token() const noexcept { return state_.token(); }
  bool stop_requested() const noexcept { return state_.stop_requested(); }
  stop_reason reason() const noexcept { return state_.reason(); }
  const std::string& name() const noexcept { return options_.name; }

  // Every failure so far, in the order they happened; marks them observed.
  std::vector<std::exception_ptr> failures() {
    std::lock_guard lock(mutex_);
    std::vector<std::exception_ptr> out;
    for (const auto& f : failures_) {
      f->observed.store(true, std::memory_order_relaxed);
      out.push_back(f->error);
    }
    return out;
  }

  // Tasks running now (a snapshot).
  std::size_t running() const {
    std::lock_guard lock(mutex_);
    return running_;
  }

 private:
  friend class detail::task_record;
  friend class detail::coro_task_base;
  friend struct detail::nursery_runner;

  // What wait() reports once every task ended (see the table above). Called
  // with the lock held; unlocks it before throwing.
  void report(std::unique_lock<std::mutex>& lock) {
    if (options_.cancel_on_failure && !failures_.empty()) {
      for (const auto& f : failures_)
        f->observed.store(true, std::memory_order_relaxed);
      const std::exception_ptr first = failures_.front()->error;
      lock.unlock();
      std::rethrow_exception(first);
    }
    const stop_reason r = state_.reason();
    if (cut_short_ && (r == stop_reason::deadline_exceeded || r == stop_reason::parent)) {
      lock.unlock();
      state_.throw_cancelled();
    }
  }

  // Under the lock: waits until every task ended. A task of a virtual_time
  // scope counts as blocked meanwhile (task_finished records the wake).
  void wait_joined(std::unique_lock<std::mutex>& lock) {
    const detail::blocking_region blocking(running_ != 0);
    detail::task_identity* const me = waiting_member();
    if (me == nullptr) {
      changed_.wait(lock, [&] { return running_ == 0; });
      return;
    }
    while (running_ != 0) {
      me->vclock->block(me, &changed_);
      changed_.wait(lock);
    }
    me->vclock->end_wait(me);
  }

  // The waiter that counts as blocked meanwhile, if any: a member of the
  // clock this nursery's tasks run on (a virtual_time scope's or a deadlock
  // watch's), or the owner of its watch. A member of another clock (a
  // virtual_time scope run inside a watched nursery's task) waits uncounted:
  // its clock cannot see what will wake it.
  detail::task_identity* waiting_member() noexcept {
    detail::task_identity* t = detail::vt_member();
    if (t != nullptr && t->vclock == state_.vclock()) return t;
    return watch_ != nullptr ? watch_->owner_here() : nullptr;
  }

  // Under the lock: true, and no more spawns, once every task ended (what
  // wait() does when it wakes).
  bool close_if_joined_locked() noexcept {
    if (running_ != 0) return false;
    closed_ = true;
    return true;
  }

  // Under the lock, as running_ drops: the suspended joiner to post once
  // every task ended (posted after the lock is released), or null.
  detail::resumable* take_joiner_locked() noexcept {
    if (running_ != 0 || joiner_ == nullptr) return nullptr;
    closed_ = true;
    return std::exchange(joiner_, nullptr);
  }

  // Joins without blocking the worker. report: then report as wait() does;
  // otherwise only join (run_nursery, before it rethrows a body's exception).
  [[nodiscard]] join_awaiter join(bool report) noexcept;

  // True if the calling thread runs one of this nursery's tasks, directly or
  // in a nursery nested inside one: waiting for them would wait for itself.
  // The chain ends at a task no nursery runs (a ticker's loop on a virtual
  // clock).
  bool runs_current_task() const noexcept {
    for (const detail::task_identity* t = detail::current_task;
         t != nullptr && t->owner_nursery != nullptr;
         t = static_cast<const nursery*>(t->owner_nursery)->parent_task_ptr_) {
      if (t->owner_nursery == this) return true;
    }
    return false;
  }

  static nursery_options checked(nursery_options o) {
    if (o.limit == 0) {
      throw usage_error("leash::nursery \"" + o.name +
                        "\": limit must be at least 1 (nursery_options::unlimited for none)");
    }
    return o;
  }

  static std::chrono::steady_clock::time_point deadline_of(const nursery_options& o) {
    auto d = o.deadline.value_or(std::chrono::steady_clock::time_point::max());
    if (o.timeout) d = std::min(d, detail::deadline_after(*o.timeout));
    return d;
  }

  template <class F>
  auto spawn_impl(std::string name, F&& f, source_location site, bool try_only) {
    using fn_type = std::decay_t<F>;
    static_assert(detail::task_callable<fn_type>,
                  "leash::nursery::spawn: the task must be callable as f() or f(std::stop_token)");
    using result = typename detail::task_result_of<fn_type>::type;
    static_assert(!std::is_reference_v<result>,
                  "leash::nursery::spawn: a task cannot return a reference; return a value "
                  "or a std::reference_wrapper");
    if constexpr (detail::coro_result<result>::is_coro) {
      using value = typename detail::coro_result<result>::type;
      using record_type = detail::coro_task_impl<value, fn_type>;
      auto record = std::allocate_shared<record_type>(detail::frame_cache_allocator<record_type>(),
                                                      std::forward<F>(f));
      detail::sched_item* item = record.get();
      if (state_.vclock() != nullptr) record->listen_to_posts();
      return launch<value>(std::move(record), std::move(name), site, try_only, item);
    } else {
      auto record = std::make_shared<detail::task_impl<result, fn_type>>(std::forward<F>(f));
      return launch<result>(std::move(record), std::move(name), site, try_only, nullptr);
    }
  }

  // Names and admits a new record. on_scheduler: the record as a coroutine
  // task (runs on the scheduler), or null for a thread task.
  template <class T, class R>
  std::optional<task<T>> launch(std::shared_ptr<R> record, std::string name, source_location site,
                                bool try_only, detail::sched_item* on_scheduler) {
    record->id = detail::next_id();
    record->name = std::move(name);
    record->site = site;
    record->owner_nursery = this;
    record->owner = this;
    record->parent_id = detail::current_task != nullptr ? detail::current_task->id : 0;
    record->nursery_id = id_;
    record->coroutine = on_scheduler != nullptr;
    record->vclock = state_.vclock();
    std::optional<task<T>> handle;
    record->handles.store(1, std::memory_order_relaxed);  // the handle below, before any start
    try {
      if (admit(record, try_only, on_scheduler)) handle = task<T>(std::move(record));
    } catch (const resource_exhausted&) {
      if (!try_only) throw;
    }
    return handle;
  }

  // Starts `record`, or finishes it as cancelled when the nursery is stopped.
  // false only when try_only and the nursery is full.
  bool admit(const std::shared_ptr<detail::task_record>& record, bool try_only,
             detail::sched_item* on_scheduler) {
    record->started = std::chrono::steady_clock::now();  // outside the lock tasks contend for
    const bool observing = detail::observing();          // the spawn site's one check
    if (observing) [[unlikely]]
      cancel_reporter_.link();
    std::unique_lock lock(mutex_);
    throw_if_closed();
    if (try_only && running_ >= options_.limit && !state_.stop_requested()) return false;
    if (running_ >= options_.limit && !state_.stop_requested()) {
      const std::stop_token token = detail::ambient_token_ref();
      detail::blocked_scope blocked("nursery::spawn (at limit)");
      // A loop: several spawners may wake for one free slot.
      while (running_ >= options_.limit && !state_.stop_requested()) {
        ++limit_waiters_;
        const auto status = detail::wait(lock, changed_, token, [&] {
          return running_ < options_.limit || state_.stop_requested() || closed_;
        });
        --limit_waiters_;
        if (status == detail::wait_status::stopped) {
          lock.unlock();
          detail::throw_cancelled(token);
        }
        throw_if_closed();
      }
      record->started = std::chrono::steady_clock::now();
    }
    if (state_.stop_requested()) {
      cut_short_ = true;
      lock.unlock();
      try {
        state_.throw_cancelled();
      } catch (const cancelled&) {
        record->error = std::current_exception();
      }
      record->quiet = true;
      detail::report_stillborn(*record, state_);
      record->mark_done();
      return true;
    }
    // Under the lock: before any cancel event.
    if (observing) [[unlikely]]
      record->report(detail::event_kind::spawn);
    record->next = live_;
    if (live_ != nullptr) live_->prev = record.get();
    live_ = record.get();
    ++running_;
    record->keep_alive = record;
    if (record->vclock != nullptr) record->vclock->join(record.get(), on_scheduler != nullptr);
    lock.unlock();
    record->context = detail::capture_context();
    try {
      if (on_scheduler != nullptr) {
        detail::scheduler::instance().post(on_scheduler);
      } else {
        detail::thread_cache::instance().submit(record.get(), record->name);
      }
    } catch (...) {
      record->keep_alive.reset();
      if (record->vclock != nullptr) {
        record->vclock->retire(record.get());
        record->vclock->leave();
      }
      lock.lock();
      unlink(record.get());
      lock.unlock();
      record->report_finish(std::current_exception());
      lock.lock();
      --running_;
      changed_.notify_all();
      detail::resumable* const joiner = take_joiner_locked();
      lock.unlock();
      if (joiner != nullptr) detail::post_resumable(joiner);
      throw;
    }
    return true;
  }

  void throw_if_closed() const {
    if (closed_) {
      throw usage_error("leash::nursery \"" + options_.name + "\": spawn after wait() returned");
    }
  }

  void unlink(detail::task_record* r) noexcept {
    if (r->prev != nullptr) r->prev->next = r->next;
    if (r->next != nullptr) r->next->prev = r->prev;
    if (live_ == r) live_ = r->next;
    r->prev = r->next = nullptr;
  }

  // The last thing a task does. Touches nothing of the nursery after the
  // final unlock: the nursery may be destroyed as soon as running_ reaches 0.
  // The task's own reference to its record is dropped before that, so when
  // it is the last one the value or exception (user destructors) dies as
  // part of the task, before wait() can return; a failure the nursery keeps
  // dies with the nursery, and a held result with its last handle.
  void task_finished(std::shared_ptr<detail::task_record> record) noexcept {
    // Read as the task's outcome is final: a stop after this did not cut it
    // short, however late the bookkeeping below runs.
    const bool stopped_while_running = state_.stop_requested();
    const bool failed = record->error != nullptr && !record->quiet;
    bool cancelled_nursery = false;
    if (failed && options_.cancel_on_failure) {
      // Before the lock: stop callbacks take it (wake), and other locks.
      cancelled_nursery = state_.request(stop_reason::cancelled, "a sibling task failed",
                                         record.get(), record->error);
    }
    {
      std::lock_guard lock(mutex_);
      unlink(record.get());
      // The failure that cancelled the nursery is the first one, whatever
      // order the failing tasks reach this lock in: it is every sibling's
      // cancelled::cause() and what wait() rethrows.
      if (cancelled_nursery) {
        failures_.insert(failures_.begin(), record);
      } else if (failed) {
        failures_.push_back(record);
      }
    }
    if (record->vclock != nullptr) record->vclock->retire(record.get());
    record->report_finish(record->error);  // after the unlink: after any cancel event
    record->mark_done();
    record.reset();
    // Only leash bookkeeping is left, unless a failure cancelled siblings
    // above (stop callbacks): the thread may take the next job early.
    if (!failed) detail::thread_cache::mark_returning();
    detail::resumable* joiner = nullptr;
    {
      std::lock_guard lock(mutex_);
      --running_;
      if (stopped_while_running) cut_short_ = true;
      // Only wait() (all ended) and spawners at the limit wait here: a mass
      // cancel must not wake the waiting thread once per task.
      if (running_ == 0 || limit_waiters_ != 0) {
        if (detail::virtual_clock* vc = state_.vclock()) vc->notify(&changed_);
        changed_.notify_all();
      }
      joiner = take_joiner_locked();
    }
    // Posting touches only the joining task, which may destroy the nursery.
    if (joiner != nullptr) detail::post_resumable(joiner);
    detail::registry::instance().task_ended();
  }

  const detail::cancel_state& state() const noexcept override { return state_; }

  detail::nursery_snapshot snapshot() const override {
    detail::nursery_snapshot s;
    s.id = id_;
    s.parent_task = parent_task_;
    s.name = options_.name;
    s.site = site_;
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mutex_);
    for (const detail::task_record* r = live_; r != nullptr; r = r->next) {
      detail::task_snapshot t;
      t.id = r->id;
      t.name = r->name;
      t.site = r->site;
      t.age = now - r->started;
      t.blocked_in = r->blocked_in.load(std::memory_order_acquire);
      if (t.blocked_in != nullptr) {
        const std::chrono::steady_clock::duration since(
            r->blocked_since.load(std::memory_order_relaxed));
        t.blocked_for = now.time_since_epoch() - since;
      }
      s.tasks.push_back(std::move(t));
    }
    return s;
  }

  nursery_options options_;
  source_location site_;
  std::uint64_t id_;
  std::uint64_t parent_task_;  // for the live_tasks() tree
  // The task whose body opened this nursery (it outlives the nursery), or null.
  const detail::task_identity* parent_task_ptr_;
  int uncaught_;  // detail::uncaught_exceptions() at construction
  // runtime_options::detect_deadlocks: the watch of a nursery opened on a
  // plain thread, or null. Declared before state_, whose timer it may hold.
  std::unique_ptr<detail::deadlock_watch> watch_;
  detail::cancel_state state_;
  detail::ambient_guard installed_;

  mutable std::mutex mutex_;             // guards everything below
  std::condition_variable changed_;      // a task ended, or the nursery was stopped
  detail::task_record* live_ = nullptr;  // running tasks
  std::size_t running_ = 0;
  bool closed_ = false;                  // wait() returned or the destructor joined: no more spawns
  bool cut_short_ = false;               // a stop arrived while tasks ran (or refused a spawn)
  std::size_t limit_waiters_ = 0;        // spawners waiting in admit() for a free slot
  detail::resumable* joiner_ = nullptr;  // a coroutine task suspended in async_wait()
  std::vector<std::shared_ptr<detail::task_record>> failures_;      // in order
  detail::cancel_reporter cancel_reporter_{mutex_, live_, state_};  // for observers
};

inline void detail::task_record::run() noexcept {
  std::shared_ptr<task_record> self = std::move(keep_alive);
  nursery& n = *owner;
  current_task = this;
  ambient = open_scope(n.state_);
  const context_state saved_context =
      std::exchange(tls_context, context_state{context.get(), nullptr});
  report(event_kind::start);
  try {
    if (ambient == nullptr) {
      ambient = &scope();
      discard();
      scope().throw_cancelled();
    }
    invoke(n.state_.token());
  } catch (const cancelled&) {
    error = std::current_exception();
    settle_cancelled(n.state_);
  } catch (...) {
    error = std::current_exception();
  }
  ambient = nullptr;
  close_scope();
  current_task = nullptr;
  tls_context = saved_context;
  context.reset();
  detail::virtual_clock* const vc = vclock;
  n.task_finished(std::move(self));
  if (vc != nullptr) vc->leave();
}

// One slice of a coroutine task, on a worker: installs the task as this
// thread's current task and the task's ambient state (its own scope under its
// nursery's at the first slice, then whatever scope it was suspended in), resumes the task
// until it suspends or ends, saves its ambient state, and restores both of
// this thread's. After leave_slice() the task may already run on another
// worker: nothing of it is touched then.
//
// Once every worker has left (exit), a post runs the item on the posting
// thread; a task that posts itself from inside its own slice then only notes
// it, and that slice runs it again when it ends (no recursion, and no wait
// for a slice below on the same stack).
inline void detail::coro_task_base::run_slice() noexcept {
  if (current_resumable == this) {
    rerun_ = true;
    return;
  }
  while (slice()) {
  }
}

inline bool detail::coro_task_base::slice() noexcept {
  enter_slice();
  task_record& r = record();
  nursery& n = *r.owner;
  task_identity* const saved_task = current_task;
  cancel_state* const saved_ambient = ambient;
  resumable* const saved_resumable = current_resumable;
  bool* const saved_finished = tls_task_finished;
  bool finished = false;
  current_task = &r;
  ambient = ambient_;
  current_resumable = this;
  tls_task_finished = &finished;
  const context_state saved_context =
      std::exchange(tls_context, started_ ? context_ : context_state{r.context.get(), nullptr});
  std::coroutine_handle<> h = std::exchange(resume_at, {});
  if (!started_) {
    started_ = true;
    ambient = r.open_scope(n.state_);
    r.report(event_kind::start);
    try {
      if (ambient == nullptr) {
        ambient = &r.scope();
        r.scope().throw_cancelled();
      }
      h = begin(n.state_.token());
    } catch (...) {
      r.error = std::current_exception();
      finished = true;
    }
  }
  if (!finished) run_transfers(h);
  if (finished) {
    release();
    if (r.error) {
      try {
        std::rethrow_exception(r.error);
      } catch (const cancelled&) {
        r.settle_cancelled(n.state_);
      } catch (...) {
      }
    }
  }
  ambient_ = ambient;
  context_ = std::exchange(tls_context, saved_context);
  if (finished) r.context.reset();
  current_task = saved_task;
  ambient = saved_ambient;
  current_resumable = saved_resumable;
  tls_task_finished = saved_finished;
  const bool again = !finished && std::exchange(rerun_, false);
  virtual_clock* const vc = r.vclock;
  if (vc != nullptr && !finished) vc->coro_suspended(&r);  // one per slice, as one per post
  leave_slice();
  if (finished) {
    r.close_scope();
    n.task_finished(std::move(r.keep_alive));
    if (vc != nullptr) vc->leave();
  }
  return again;
}

// Suspends a coroutine task until every task of a nursery ended, without
// blocking its worker: the last task to end posts it (task_finished). The
// registration and the post both happen under the nursery's lock, so the
// joiner is posted exactly once and never before it is suspended.
class nursery::join_awaiter {
 public:
  join_awaiter(nursery& n, bool report) noexcept : n_(n), report_(report) {}

  bool await_ready() {
    if (detail::current_resumable == nullptr) {
      throw usage_error("leash::nursery \"" + n_.options_.name +
                        "\": async_wait() only inside a coroutine task (nursery::spawn of a "
                        "function returning leash::coro); elsewhere use wait()");
    }
    if (n_.runs_current_task()) {
      throw usage_error("leash::nursery \"" + n_.options_.name +
                        "\": async_wait() from one of its own tasks (or a task nested in one) "
                        "would deadlock");
    }
    task_ = detail::current_resumable;
    identity_ = detail::current_task;
    std::lock_guard lock(n_.mutex_);
    return n_.close_if_joined_locked();
  }

  // After the unlock that ends this, the task may run elsewhere: nothing of
  // it (or of the nursery) is touched then.
  bool await_suspend(std::coroutine_handle<> h) {
    task_->resume_at = h;
    mark_blocked("nursery::async_wait");
    std::lock_guard lock(n_.mutex_);
    if (n_.close_if_joined_locked()) {
      mark_blocked(nullptr);
      return false;
    }
    n_.joiner_ = task_;
    return true;
  }

  void await_resume() {
    mark_blocked(nullptr);
    if (!report_) return;
    std::unique_lock lock(n_.mutex_);
    n_.report(lock);
  }

 private:
  void mark_blocked(const char* what) noexcept {
    if (identity_ != nullptr) identity_->note_blocked(what);
  }

  nursery& n_;
  bool report_;
  detail::resumable* task_ = nullptr;
  detail::task_identity* identity_ = nullptr;
};

inline nursery::join_awaiter nursery::async_wait() noexcept {
  return join_awaiter(*this, true);
}

inline nursery::join_awaiter nursery::join(bool report) noexcept {
  return join_awaiter(*this, report);
}

namespace detail {

// The options of `co_await run_nursery({...}, body)`: nursery_options' fields,
// in the same order with the same defaults, but trivially destructible (the
// name is a view, copied into the nursery at the call). g++ 12 destroys the
// members of a braced temporary in a co_await expression twice (see
// coro.hpp); with nothing to destroy that is harmless.
struct braced_nursery_options {
  std::size_t limit = nursery_options::unlimited;
  std::optional<std::chrono::nanoseconds> timeout{};
  std::optional<std::chrono::steady_clock::time_point> deadline{};
  bool cancel_on_failure = true;
  std::string_view name{};

  nursery_options to_options() const {
    return {limit, timeout, deadline, cancel_on_failure, std::string(name)};
  }
};
static_assert(std::is_trivially_destructible_v<braced_nursery_options>,
              "braced_nursery_options must stay trivially destructible (g++ 12, see above)");

// A run_nursery body that returns a coro: run_nursery then returns a coro too.
template <class F>
concept coro_body =
    std::is_invocable_v<F&, nursery&> && coro_result<std::invoke_result_t<F&, nursery&>>::is_coro;

template <class F>
using coro_body_value = typename coro_result<std::invoke_result_t<F&, nursery&>>::type;

struct nursery_runner {
  // run_nursery's coroutine form. F is a reference type for a body passed as
  // an lvalue (the caller keeps it alive while awaiting), else the body
  // itself, moved into the frame: a lambda coroutine's captures live in the
  // lambda object, which must outlive the coro it returns.
  template <class R, class F>
  static coro<R> run(nursery_options options, F body, source_location site);
};

template <class R, class F>
LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<R> nursery_runner::run(nursery_options options, F body,
                                                                    source_location site) {
  if (current_resumable == nullptr) {
    throw usage_error(
        "leash::run_nursery: a body returning leash::coro is awaited only inside a coroutine "
        "task (nursery::spawn of a function returning leash::coro)");
  }
  nursery n(std::move(options), site);
  std::optional<std::conditional_t<std::is_void_v<R>, bool, R>> value;
  std::exception_ptr body_cancelled;
  std::exception_ptr escaping;  // leaves run_nursery, after the tasks were joined
  try {
    if constexpr (std::is_void_v<R>) {
      co_await std::invoke(body, n);
      value.emplace(true);
    } else {
      value.emplace(co_await std::invoke(body, n));
    }
  } catch (const cancelled&) {
    (n.stop_requested() ? body_cancelled : escaping) = std::current_exception();
  } catch (...) {
    escaping = std::current_exception();
  }
  if (escaping) {
    // What the nursery's destructor does for an exception leaving its scope,
    // with the join made without blocking; the destructor then only reports
    // unobserved failures, as this exception unwinds it.
    n.cancel("the nursery's scope is unwinding with an exception");
    co_await n.join(false);
    std::rethrow_exception(escaping);
  }
  co_await n.async_wait();
  // As in the thread form: the body's cancelled is absorbed only when the
  // nursery itself was cancelled and no value is expected.
  if (body_cancelled && (n.reason() != stop_reason::cancelled || !std::is_void_v<R>)) {
    std::rethrow_exception(body_cancelled);
  }
  if constexpr (!std::is_void_v<R>) co_return std::move(*value);
}

}  // namespace detail

// Opens a nursery, runs body(nursery&), and waits. Returns the body's value.
// Rethrows the first failure; the body's own cancelled (the nursery was
// cancelled) is absorbed, but a deadline or an outer cancellation propagates.
template <class F>
requires(!detail::coro_body<F>) auto run_nursery(
    nursery_options options, F&& body, source_location site = source_location::current()) {
  using result = std::invoke_result_t<F&, nursery&>;
  nursery n(std::move(options), site);
  std::exception_ptr body_cancelled;
  std::optional<std::conditional_t<std::is_void_v<result>, bool, result>> value;
  try {
    if constexpr (std::is_void_v<result>) {
      std::invoke(body, n);
      value.emplace(true);
    } else {
      value.emplace(std::invoke(body, n));
    }
  } catch (const cancelled&) {
    if (!n.stop_requested()) throw;
    body_cancelled = std::current_exception();
  }
  n.wait();
  // The body was cut short. That is absorbed only when the nursery itself was
  // cancelled (cancel(), or a failure that wait() already rethrew) and no
  // value is expected; a deadline or an outer stop propagates.
  if (body_cancelled && (n.reason() != stop_reason::cancelled || !std::is_void_v<result>)) {
    std::rethrow_exception(body_cancelled);
  }
  if constexpr (!std::is_void_v<result>) return std::move(*value);
}

template <class F>
auto run_nursery(F&& body, source_location site = source_location::current()) {
  return run_nursery(nursery_options{}, std::forward<F>(body), site);
}

// co_await run_nursery(options, body) with a body returning coro<R>, in a
// coroutine task: returns a coro<R> that opens the nursery, awaits the body,
// joins the tasks without blocking the worker, and then behaves exactly as
// the thread form above (rethrows the first failure, absorbs the body's
// cancelled when the nursery was cancelled, throws deadline_exceeded after
// its deadline cut a task short). The body is moved into the coro when it is
// a temporary; a named body must outlive the co_await. Braced options,
// `co_await run_nursery({.timeout = 2s, .name = s}, body)`, are read at the
// call. Awaited outside a coroutine task it throws usage_error.
template <detail::coro_body F>
auto run_nursery(detail::braced_nursery_options options, F&& body,
                 source_location site = source_location::current()) {
  return detail::nursery_runner::run<detail::coro_body_value<F>, F>(options.to_options(),
                                                                    std::forward<F>(body), site);
}
template <std::same_as<nursery_options> Options, detail::coro_body F>
auto run_nursery(Options options, F&& body, source_location site = source_location::current()) {
  return detail::nursery_runner::run<detail::coro_body_value<F>, F>(std::move(options),
                                                                    std::forward<F>(body), site);
}

}  // namespace leash::inline v0
