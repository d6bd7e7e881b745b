// SPDX-License-Identifier: BSL-1.0
// leash/ticker.hpp: periodic work that stops with the scope that started it.
// Prevents: httputil.ReverseProxy's flushLoop, a time.Ticker goroutine that was
// never stopped and later flushed a finished ResponseWriter (a panic).
//
//   writer w;
//   {
//     leash::ticker flusher(100ms, [&] { w.flush(); });    // first tick after 100ms
//     copy_body(w);
//   }   // ~ticker stops and joins here: no flush can touch w after this line
//
//   leash::ticker t(1s, [](const leash::tick_info& tick) { report(tick.missed); },
//                   {.policy = leash::missed_tick::burst, .first =
//                   leash::first_tick::immediately});
//
// The callback runs on its own runtime task, never two at once. A slow
// callback makes the ticker miss ticks; the policy says what then happens:
//
//   policy  a callback returns after the next tick was due      (next_deadline)
//   skip    the next tick lands on the grid; missed ones dropped  (Go's Ticker)
//   burst   missed ticks run back to back until caught up
//   delay   the next tick is one period after the callback returned
//
// A ticker that could not run at all for a whole period (process stopped,
// machine overloaded) fires once for what it overslept, under every policy;
// tick_info::missed counts the ticks dropped.
//
// Inside a virtual_time scope the ticker runs on the scope's clock (the one
// of the task that creates it): ticks fall on the virtual grid, and the
// callback runs with the clock stopped, as a member of the scope.
//
// Guarantees. Blocks: stop(), reset() of a stopped ticker, and the destructor,
// until a running callback returned. After stop() returns no callback runs and
// none will start; after reset(p) returns nothing fires on the old schedule.
// Cancelled: the ticker stops when the ambient token at construction stops (or
// the nursery's, for a ticker in a nursery); stop() cancels a callback blocked
// in a leash call (its `cancelled` is a quiet end). Throws: a callback's
// exception stops the ticker and is rethrown by stop(), or by the nursery the
// ticker runs in, or reaches the unobserved-failure handler if nobody called
// stop(). Thread-safe: stop() and reset() from any thread, including the
// callback itself; destroying a ticker from its own callback is a checked
// precondition (std::terminate with a message).
#pragma once

#include "detail/config.hpp"

#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

#include "cancel.hpp"
#include "detail/cancel_state.hpp"
#include "detail/registry.hpp"
#include "detail/task_identity.hpp"
#include "detail/thread_cache.hpp"
#include "detail/virtual_clock.hpp"
#include "detail/wait.hpp"
#include "errors.hpp"
#include "nursery.hpp"

namespace leash::inline v0 {

// What happens to ticks a slow callback missed. See the table above.
enum class missed_tick { skip, burst, delay };

// When the first tick fires: one period after the start (Go's), or at once.
enum class first_tick { after_period, immediately };

// Passed to callbacks that take it.
struct tick_info {
  std::chrono::steady_clock::time_point scheduled;  // when this tick was due
  std::chrono::steady_clock::time_point started;    // when its callback started
  std::uint64_t missed = 0;                         // ticks dropped just before this one
};

struct ticker_options {
  missed_tick policy = missed_tick::skip;
  first_tick first = first_tick::after_period;
  std::string name{};  // for leak reports and failure reports
};

// The policy math, pure. The tick due at `scheduled` ran; its callback returned
// at `now`. Returns when the next tick is due:
//   skip:  the first scheduled + k * period (k >= 1) that is not before `now`
//   burst: scheduled + period (may be in the past: it then runs at once)
//   delay: now + period
// period must be positive.
template <class TimePoint, class Duration>
constexpr TimePoint next_deadline(missed_tick policy, TimePoint scheduled, TimePoint now,
                                  Duration period) {
  switch (policy) {
    case missed_tick::burst:
      return scheduled + period;
    case missed_tick::delay:
      return now + period;
    case missed_tick::skip:
      break;
  }
  if (now - scheduled < period) return scheduled + period;
  const auto k = (now - scheduled) / period;  // whole periods elapsed, >= 1
  const TimePoint on_grid = scheduled + k * period;
  return on_grid < now ? on_grid + period : on_grid;
}

namespace detail {

// The ticker's schedule, driven by whatever clock readings it is given (the
// ticker's loop gives it steady_clock::now(); tests give it a fake clock).
class tick_schedule {
 public:
  using clock = std::chrono::steady_clock;

  tick_schedule(missed_tick policy, clock::duration period, clock::time_point start,
                first_tick first)
      : policy_(policy),
        period_(period),
        next_(first == first_tick::immediately ? start : start + period) {}

  // When the next tick is due.
  clock::time_point deadline() const { return next_; }
  clock::duration period() const { return period_; }

  // The loop is at `now` >= deadline() and runs the tick. `overslept`: it was
  // waiting for the deadline (not catching up after a callback); a whole
  // period or more late, the ticks it slept through are dropped.
  tick_info fire(clock::time_point now, bool overslept) {
    if (overslept && now - next_ >= period_) {
      const auto k = (now - next_) / period_;
      next_ += k * period_;
      missed_ += static_cast<std::uint64_t>(k);
    }
    tick_info info{next_, now, missed_};
    missed_ = 0;
    return info;
  }

  // The callback of the tick just fired returned at `now`.
  void done(clock::time_point now) {
    const clock::time_point n = next_deadline(policy_, next_, now, period_);
    if (policy_ == missed_tick::skip)
      missed_ += static_cast<std::uint64_t>((n - next_) / period_ - 1);
    next_ = n;
  }

  // A new period, counted from `now`.
  void reset(clock::duration period, clock::time_point now) {
    period_ = period;
    next_ = now + period;
    missed_ = 0;
  }

 private:
  missed_tick policy_;
  clock::duration period_;
  clock::time_point next_;    // when the next tick is due
  std::uint64_t missed_ = 0;  // ticks dropped since the last one fired
};

// The type-erased callback; owned by the ticker, so it dies on the ticker's
// thread after the loop ended.
class tick_callback {
 public:
  virtual ~tick_callback() = default;
  virtual void call(const tick_info& info) = 0;
};

template <class F>
class tick_callback_impl final : public tick_callback {
 public:
  template <class G>
  explicit tick_callback_impl(G&& g) : f_(std::forward<G>(g)) {}
  void call(const tick_info& info) override {
    if constexpr (std::is_invocable_v<F&, const tick_info&>) {
      f_(info);
    } else {
      f_();
    }
  }

 private:
  F f_;
};

// One run of a ticker's loop: from start to stop (or failure). Shared by the
// ticker and the loop's thread; holds no user code, so whichever side lets go
// last may destroy it.
//
// On a virtual clock the loop must count with it: a loop the clock did not
// know would look running to nobody, so the clock would jump (or report a
// deadlock) while the loop waits for its next tick on a timer the clock never
// fires, and while a callback runs. A loop in a nursery of the scope is a
// member task already; a loop on its own thread joins the clock as a member
// of its own (enlist(), on the creating thread, before anyone can block), so
// its waits and its callbacks' leash calls count as any member's do.
class ticker_core final : public job {
 public:
  using clock = std::chrono::steady_clock;

  // vclock: the creating task's clock, or null (real time).
  ticker_core(tick_callback* fn, tick_schedule schedule, std::stop_token parent, std::string name,
              virtual_clock* vclock)
      : fn_(fn),
        vclock_(vclock),
        schedule_(schedule),
        state_(nullptr, std::move(parent), clock::time_point::max(), std::move(name)) {}

  // The ticker's now: virtual on a virtual clock.
  clock::time_point now() const { return now_for(vclock_); }

  // On a virtual clock, makes the loop that runs as a job (not a nursery
  // task) a member of the clock from now on, named for reports.
  void enlist(std::string name, source_location site) {
    if (vclock_ == nullptr) return;
    member_.id = next_id();
    member_.name = std::move(name);
    member_.site = site;
    member_.started = clock::now();
    member_.vclock = vclock_;
    vclock_->join(&member_, false);
    enlisted_ = true;
  }

  // The member leaves the clock: at the loop's end, or when the job could not
  // be submitted.
  void unlist() noexcept {
    if (!enlisted_) return;
    vclock_->retire(&member_);
    vclock_->leave();
  }

  // The loop. Runs on a runtime thread (a job, or a nursery task).
  void run() noexcept override {
    std::shared_ptr<ticker_core> self = std::move(keep_alive);  // may be the last owner
    task_identity* const saved_task = current_task;
    if (enlisted_) current_task = &member_;
    {
      ambient_guard installed(&state_, "leash::ticker");  // callbacks see the ticker's token
      loop();
    }
    current_task = saved_task;
    object_registry::instance().remove(registry_id);
    {
      std::lock_guard lock(mutex_);
      exited_ = true;
      loop_thread_ = {};  // the thread goes back to the cache: it may run another ticker
      changed_.notify_all();
    }
    unlist();  // the clock's last touch by this thread: it outlives its members
  }

  // Stops the loop; unless called from the loop's own thread (a callback),
  // waits until it ended.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      notify_locked();
    }
    // Unlocked: the stop callbacks (a waiting loop's wake-up) take mutex_.
    state_.request(stop_reason::cancelled, "the ticker was stopped");
    join();
  }

  void join() {
    std::unique_lock lock(mutex_);
    if (loop_thread_ == std::this_thread::get_id()) return;
    changed_.wait(lock, [&] { return exited_; });
  }

  // Moves the schedule; false if the loop has ended (or is ending).
  bool reset(clock::duration period) {
    std::lock_guard lock(mutex_);
    if (stopping_ || exited_) return false;
    schedule_.reset(period, now());
    ++generation_;
    notify_locked();
    return true;
  }

  // Called when the loop's task is done: if it never started (its nursery
  // was cancelled before the task ran), the run is over.
  void never_started() {
    {
      std::lock_guard lock(mutex_);
      if (started_) return;
      started_ = exited_ = true;
      changed_.notify_all();
    }
    object_registry::instance().remove(registry_id);
  }

  bool on_loop_thread() const {
    std::lock_guard lock(mutex_);
    return loop_thread_ == std::this_thread::get_id();
  }
  bool running() const {
    std::lock_guard lock(mutex_);
    return !exited_ && !stopping_;
  }
  // The callback's failure, once the loop ended.
  std::exception_ptr error() const {
    std::lock_guard lock(mutex_);
    return error_;
  }
  clock::duration period() const {
    std::lock_guard lock(mutex_);
    return schedule_.period();
  }

  std::shared_ptr<ticker_core> keep_alive;  // set before start; the loop takes it
  std::uint64_t registry_id = 0;            // in the object registry

 private:
  void loop() {
    const std::stop_token token = state_.token();
    std::unique_lock lock(mutex_);
    started_ = true;
    loop_thread_ = std::this_thread::get_id();
    bool overslept = false;
    for (;;) {
      if (stopping_ || token.stop_requested()) break;
      const std::uint64_t generation = generation_;
      const clock::time_point now = this->now();
      if (now < schedule_.deadline()) {
        // leash's stop-aware wait: wakes for stop(), reset(), or the parent token.
        const blocked_scope blocked("ticker: waiting for the next tick");
        const wait_status status = wait_until(lock, changed_, token, schedule_.deadline(), [&] {
          return stopping_ || generation_ != generation;
        });
        if (status == wait_status::stopped) break;
        overslept = status == wait_status::timeout;
        continue;
      }
      const tick_info info = schedule_.fire(now, overslept);
      overslept = false;
      lock.unlock();
      std::exception_ptr failure;
      try {
        fn_->call(info);
      } catch (const cancelled&) {
        // Stopped while blocked in a leash call: a quiet end. A cancelled for
        // any other reason (a fail_after inside) is a failure.
        if (!token.stop_requested()) failure = std::current_exception();
      } catch (...) {
        failure = std::current_exception();
      }
      lock.lock();
      if (failure) {
        error_ = failure;
        stopping_ = true;
        break;
      }
      if (generation_ == generation) schedule_.done(this->now());  // else reset() moved it
    }
  }

  // Under mutex_: wakes a loop waiting for its tick, on its clock first.
  void notify_locked() {
    if (vclock_ != nullptr) vclock_->notify(&changed_);
    changed_.notify_all();
  }

  tick_callback* fn_;                // owned by the ticker; not touched after exited_
  virtual_clock* const vclock_;      // the schedule's clock (null: real time)
  task_identity member_;             // the loop on a virtual clock, as a job (see enlist)
  bool enlisted_ = false;            // member_ joined vclock_; set before the loop starts
  mutable std::mutex mutex_;         // guards everything below
  std::condition_variable changed_;  // stop, reset, exit
  tick_schedule schedule_;
  std::uint64_t generation_ = 0;  // bumped by reset(): a tick of an old schedule never fires
  bool started_ = false;          // the loop began
  bool stopping_ = false;         // stop() called, or the callback failed
  bool exited_ = false;           // the loop ended; fn_ is no longer used
  std::thread::id loop_thread_;
  std::exception_ptr error_;
  cancel_state state_;  // the ticker's token: linked to the parent, stopped by stop()
};

}  // namespace detail

class ticker {
 public:
  using clock = std::chrono::steady_clock;

  // Starts calling f every `period` on its own runtime task, linked to the
  // ambient token. f takes a const tick_info& or nothing. Throws usage_error
  // for a period that is not positive.
  template <class Rep, class Period, class F>
  [[nodiscard]] ticker(std::chrono::duration<Rep, Period> period, F&& f,
                       ticker_options options = {},
                       source_location site = source_location::current())
      : ticker(nullptr, checked(period), make_callback(std::forward<F>(f)), std::move(options),
               site) {}

  // The same, with the loop as a task of nursery `n`: a callback failure is
  // that nursery's failure (it cancels the nursery; wait() rethrows it), and
  // the ticker stops when the nursery is cancelled.
  template <class Rep, class Period, class F>
  [[nodiscard]] ticker(nursery& n, std::chrono::duration<Rep, Period> period, F&& f,
                       ticker_options options = {},
                       source_location site = source_location::current())
      : ticker(&n, checked(period), make_callback(std::forward<F>(f)), std::move(options), site) {}

  ticker(const ticker&) = delete;
  ticker& operator=(const ticker&) = delete;

  // Stops and joins (waits for a running callback). A callback failure nobody
  // observed through stop() goes to the unobserved-failure handler (unless the
  // ticker runs in a nursery, which reports it). Destroying a ticker from its
  // own callback terminates with a message: it would wait for itself.
  ~ticker() {
    if (core_->on_loop_thread()) {
      std::fprintf(stderr,
                   "leash::ticker: \"%s\" destroyed from its own callback: it would wait for "
                   "itself forever (call stop() from the callback instead)\n",
                   options_.name.c_str());
      std::terminate();
    }
    core_->stop();
    const std::exception_ptr e = core_->error();
    if (e && !observed_ && nursery_ == nullptr) {
      detail::report_unobserved({e, "ticker \"" + options_.name + "\"", site_, ""});
    }
  }

  // Stops the ticker: after it returns no callback runs and none will start.
  // Waits for a running callback (which is cancelled if blocked in a leash
  // call). From inside the callback it only requests the stop. Rethrows the
  // callback's failure, once. Blocks; not cancellable (it only waits for one
  // callback).
  void stop() {
    core_->stop();
    if (const std::exception_ptr e = core_->error(); e && !observed_ && !core_->on_loop_thread()) {
      observed_ = true;
      std::rethrow_exception(e);
    }
  }

  // Restarts the schedule with `period`: the next tick is one period from
  // now, and nothing fires on the old schedule after reset() returns. A
  // stopped ticker starts again (first rethrowing a failure nobody observed).
  // Throws usage_error for a period that is not positive.
  template <class Rep, class Period>
  void reset(std::chrono::duration<Rep, Period> period) {
    const clock::duration p = checked(period);
    if (core_->reset(p)) return;
    stop();  // joins the ended loop; rethrows its failure once
    options_.first = first_tick::after_period;
    start(p);
  }

  // True while the ticker runs (not stopped, not failed). A snapshot.
  bool running() const { return core_->running(); }
  clock::duration period() const { return core_->period(); }
  const std::string& name() const noexcept { return options_.name; }

 private:
  ticker(nursery* n, clock::duration period, std::unique_ptr<detail::tick_callback> fn,
         ticker_options options, source_location site)
      : fn_(std::move(fn)), options_(std::move(options)), site_(site), nursery_(n) {
    start(period);
  }

  template <class Rep, class Period>
  static clock::duration checked(std::chrono::duration<Rep, Period> period) {
    if (period <= period.zero()) throw usage_error("leash::ticker: the period must be positive");
    return std::chrono::ceil<clock::duration>(period);
  }

  template <class F>
  static std::unique_ptr<detail::tick_callback> make_callback(F&& f) {
    using fn_type = std::decay_t<F>;
    static_assert(std::is_invocable_v<fn_type&, const tick_info&> || std::is_invocable_v<fn_type&>,
                  "leash::ticker: the callback must be callable as f() or f(const tick_info&)");
    return std::make_unique<detail::tick_callback_impl<fn_type>>(std::forward<F>(f));
  }

  void start(clock::duration period) {
    const std::stop_token parent =
        nursery_ != nullptr ? nursery_->token() : this_task::stop_token();
    detail::virtual_clock* const vclock = detail::current_vclock();  // the one ambient check
    auto core = std::make_shared<detail::ticker_core>(
        fn_.get(),
        detail::tick_schedule(options_.policy, period, detail::now_for(vclock), options_.first),
        parent, options_.name, vclock);
    core->registry_id = detail::object_registry::instance().add(detail::object_snapshot::ticker,
                                                                options_.name, site_);
    // Published before the loop starts: a callback may call stop() or reset() at once.
    std::shared_ptr<detail::ticker_core> previous = std::exchange(core_, core);
    observed_ = false;
    try {
      if (nursery_ == nullptr) {
        core->keep_alive = core;  // the job owns itself until its loop ends
        core->enlist("ticker " + options_.name, site_);
        detail::thread_cache::instance().submit(core.get(), "ticker " + options_.name);
      } else {  // the task's callable owns the core
        task<void> t = nursery_->spawn(
            "ticker " + options_.name,
            [core]() {
              core->run();
              if (std::exception_ptr e = core->error()) std::rethrow_exception(e);
            },
            site_);
        if (t.done()) core->never_started();  // a cancelled nursery did not run it
      }
    } catch (...) {
      core->unlist();
      core->keep_alive.reset();
      detail::object_registry::instance().remove(core->registry_id);
      core_ = std::move(previous);
      throw;
    }
  }

  std::unique_ptr<detail::tick_callback> fn_;  // outlives every loop run
  ticker_options options_;
  source_location site_;
  nursery* nursery_;                           // the nursery the loop runs in, or nullptr
  std::shared_ptr<detail::ticker_core> core_;  // the current run of the loop
  bool observed_ = false;                      // stop() rethrew the current run's failure
};

}  // namespace leash::inline v0
