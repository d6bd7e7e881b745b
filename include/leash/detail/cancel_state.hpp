// SPDX-License-Identifier: BSL-1.0
// leash/detail/cancel_state.hpp: the stop source behind every cancel_scope and nursery.
//
// A cancel_state owns a std::stop_source linked to its parent (the ambient
// state at creation, or an explicit token), an optional deadline served by the
// shared timer thread, and the reason it stopped. The first request wins: it
// writes the details, publishes the reason, and only then requests stop, so
// anyone who sees the token stopped also sees why.
//
// The ambient state of a thread is a thread-local pointer: cancel scopes and
// nurseries install themselves for their lifetime, and a task's thread runs
// with its nursery's state installed. Parents always outlive children (scopes
// are destroyed in reverse order; nurseries join their tasks), so the parent
// chain is plain pointers.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>

#include "../errors.hpp"
#include "source_location.hpp"
#include "spin.hpp"
#include "task_identity.hpp"
#include "timer.hpp"
#include "virtual_clock.hpp"

namespace leash::inline v0::detail {

class cancel_state;

// A callback that a cancel_state runs when it stops, registered with
// add_hook() and removed with remove_hook(). It lives on the registering
// thread's stack; on_stop() runs on whichever thread stops the state.
//
// on_stop() must call fired() as its last touch of the node, while holding a
// lock that the owner takes before it can leave its wait: remove_hook() waits
// for fired(), and the owner may destroy the node right after. Marking the
// node inside that critical section (not after it) means a woken owner never
// finds its hook still running, so it never has to wait for it.
class stop_hook_node {
 public:
  virtual void on_stop() noexcept = 0;

 protected:
  // Virtual as well as protected: the friend below can reach it, so even a
  // destruction through this base must run the derived destructor.
  virtual ~stop_hook_node() = default;
  void fired() noexcept { fired_.store(true, std::memory_order_release); }

 private:
  friend class cancel_state;
  stop_hook_node* prev_ = nullptr;  // the state's hook list, guarded by its hooks_lock_
  stop_hook_node* next_ = nullptr;
  // Written under hooks_lock_; once false after being true it stays false,
  // so reading false without the lock is final.
  std::atomic<bool> linked_{false};
  std::atomic<bool> fired_{false};
};

class cancel_state;
class soft_stop;

// Something a higher layer builds on a state's soft stop and keeps with it
// (the event that select waits on): destroyed with the state.
class soft_stop_extension {
 public:
  virtual ~soft_stop_extension() = default;
};

// Guards the lazy creation of soft_stop blocks and their extensions. Taken
// only when code first asks for a soft stop token, an event or a grace
// timer: never by spawns, blocking calls or a plain polling of the flag.
inline std::mutex& soft_stop_creation() {
  static auto* m = new std::mutex;  // immortal: scopes may die during static destruction
  return *m;
}

// A grace as the clock's duration: negative is zero, too long is max().
template <class Rep, class Period>
std::chrono::steady_clock::duration grace_duration(std::chrono::duration<Rep, Period> grace) {
  using duration = std::chrono::steady_clock::duration;
  if (grace <= grace.zero()) return duration::zero();
  // Compared in double seconds: grace's own representation may not hold max().
  if (std::chrono::duration<double>(grace) >= std::chrono::duration<double>(duration::max())) {
    return duration::max();
  }
  return std::chrono::ceil<duration>(grace);
}

// "2s", "150ms", "1h": the largest unit that states `d` exactly.
inline std::string describe_grace(std::chrono::steady_clock::duration d) {
  using namespace std::chrono;
  const auto in = [&](auto unit, const char* suffix) { return std::to_string(d / unit) + suffix; };
  if (d == d.zero()) return "0s";
  if (d % hours(1) == d.zero()) return in(hours(1), "h");
  if (d % minutes(1) == d.zero()) return in(minutes(1), "min");
  if (d % seconds(1) == d.zero()) return in(seconds(1), "s");
  if (d % milliseconds(1) == d.zero()) return in(milliseconds(1), "ms");
  if (d % microseconds(1) == d.zero()) return in(microseconds(1), "us");
  return in(nanoseconds(1), "ns");
}

class cancel_state final : public timer_client {
 public:
  using clock = std::chrono::steady_clock;

  // parent: the enclosing state to link to (nullptr for none: shielded or
  // top level). extra: an explicit token to link to as well (may be empty).
  // deadline: clock::time_point::max() for none; a past one stops at once.
  cancel_state(cancel_state* parent, std::stop_token extra, clock::time_point deadline,
               std::string name = {})
      : parent_(parent),
        name_(std::move(name)),
        deadline_(
            std::min(deadline, parent != nullptr ? parent->deadline_ : clock::time_point::max())),
        owner_thread_(std::this_thread::get_id()),
        vclock_(current_vclock()),
        // The extra link is the last member: if its token is already stopped,
        // the callback runs right here and every other member must exist.
        parent_link_(this),
        extra_link_(std::move(extra), forward{this}) {
    if (parent_ != nullptr) parent_->add_hook(parent_link_);  // may request stop at once
    if (deadline == clock::time_point::max()) return;
    if (deadline <= now_for(vclock_)) {
      request(stop_reason::deadline_exceeded);
    } else if ((parent == nullptr || deadline < parent->deadline_) && !stop_requested()) {
      // A deadline later than an ancestor's can never fire first: no timer.
      timer_ = schedule_timer(vclock_, deadline, this);
    }
  }

  // Unregisters the timer and the parent link (each waits for a callback in
  // progress); the extra link unregisters itself as a member.
  ~cancel_state() {
    delete_soft_stop();
    cancel_timer(vclock_, timer_);
    if (parent_ != nullptr) parent_->remove_hook(parent_link_);
  }

  cancel_state(const cancel_state&) = delete;
  cancel_state& operator=(const cancel_state&) = delete;

  // A task scope hands out its parent's token (see make_task_scope).
  std::stop_token token() const noexcept { return task_scope_ ? parent_->token() : token_; }
  // This state's own token without a copy, even for a task scope (what
  // blocking calls wait on): copying one changes the reference count of the
  // stop state, two atomic read-modify-writes on a cache line that every task
  // of a nursery shares. Valid while this state lives.
  const std::stop_token& token_ref() const noexcept { return token_; }
  bool stop_requested() const noexcept { return source_.stop_requested(); }
  cancel_state* parent() const noexcept { return parent_; }
  clock::time_point deadline() const noexcept { return deadline_; }
  const std::string& name() const noexcept { return name_; }
  // The virtual clock of the scope's tasks, or null (real time).
  virtual_clock* vclock() const noexcept { return vclock_; }

  // Requests stop for `reason` unless already stopped; true if this call won.
  // Safe from any thread, including stop callbacks and the timer thread.
  bool request(stop_reason reason, std::string message = {}, const task_identity* task = nullptr,
               std::exception_ptr cause = {}) noexcept {
    int expected = static_cast<int>(stop_reason::none);
    if (!reason_.compare_exchange_strong(expected, claiming, std::memory_order_acq_rel)) {
      return false;
    }
    try {
      message_ = std::move(message);
      if (task != nullptr) {
        task_name_ = task->name;
        task_site_ = task->site;
      }
    } catch (...) {
      // Out of memory while copying a description: stopping matters more.
    }
    cause_ = std::move(cause);
    reason_.store(static_cast<int>(reason), std::memory_order_release);
    source_.request_stop();
    fire_hooks();
    return true;
  }

  // Runs n.on_stop() when this state stops (at once, on this thread, if it
  // already has). Never blocks on other hooks. lead: n runs before every
  // other hook (one lead per state; a nursery's cancel reporter, which must
  // see the tasks before their waits wake).
  void add_hook(stop_hook_node& n, bool lead = false) noexcept {
    {
      std::lock_guard lock(hooks_lock_);
      if (!hooks_fired_) {
        if (lead) lead_ = &n;
        n.next_ = hooks_;
        if (hooks_ != nullptr) hooks_->prev_ = &n;
        hooks_ = &n;
        n.linked_.store(true, std::memory_order_relaxed);
        return;
      }
    }
    n.on_stop();
  }

  // Unregisters `n`. If fire_hooks took it already, waits until its on_stop()
  // returned, so `n` may be destroyed as soon as this returns.
  void remove_hook(stop_hook_node& n) noexcept {
    // Without the lock first: thousands of waiters woken by one stop leave
    // at once, and all of them find their hook taken off the list already.
    if (n.linked_.load(std::memory_order_acquire)) {
      std::lock_guard lock(hooks_lock_);
      if (n.linked_.load(std::memory_order_relaxed)) {
        unlink_hook_locked(n);
        return;
      }
    }
    // Only an owner that woke for another reason (its operation completed)
    // while the state stopped waits here: for the hooks ahead of its own.
    while (!n.fired_.load(std::memory_order_acquire))
      std::this_thread::yield();
  }

  // Makes this state the scope of one task (task<T>::cancel): call before it
  // is used. Invisible unless the task itself is cancelled: token() is the
  // parent's (the task's callable and this_task::stop_token() keep seeing
  // the nursery's token), and a stop from the parent reports the parent's
  // reason, not `parent`. Blocking calls still wait on token_ref(), so they
  // see both stops.
  void make_task_scope() noexcept { task_scope_ = true; }

  // none until a request completed publishing. A task scope stopped by its
  // parent reports the parent's reason.
  stop_reason reason() const noexcept {
    const stop_reason r = own_reason();
    return r == stop_reason::parent && task_scope_ ? parent_->reason() : r;
  }

  // The reason this state itself recorded: parent when a parent stopped it.
  stop_reason own_reason() const noexcept {
    const int r = reason_.load(std::memory_order_acquire);
    return r == claiming ? stop_reason::none : static_cast<stop_reason>(r);
  }

  // The root cause: follows parent reasons up to the scope that was stopped
  // directly. An explicit parent token says nothing more: cancelled.
  stop_reason origin_reason() const noexcept {
    const stop_reason r = origin().own_reason();
    return r == stop_reason::parent ? stop_reason::cancelled : r;
  }

  std::exception_ptr cause() const noexcept {
    return own_reason() == stop_reason::none ? nullptr : cause_;
  }

  // What a blocking call reports when this state's token is stopped.
  cancel_info info() const {
    const cancel_state& o = origin();
    cancel_info info;
    info.reason = reason();
    info.origin = origin_reason();
    info.message = o.message_;
    info.scope_name = o.name_;
    info.task_name = o.task_name_;
    info.task_site = o.task_site_;
    info.cause = o.cause_;
    return info;
  }

  // Throws the exception a blocking call throws when this state's token is
  // stopped: deadline_exceeded when a deadline is the root cause.
  [[noreturn]] void throw_cancelled() const {
    const cancel_state& o = origin();
    if (o.cause_ != nullptr && o.owner_thread_ == std::this_thread::get_id()) {
      o.delivered_.store(true, std::memory_order_relaxed);
    }
    throw_info(info());
  }

  [[noreturn]] static void throw_info(cancel_info info) {
    if (info.origin == stop_reason::deadline_exceeded) throw deadline_exceeded(std::move(info));
    throw cancelled(std::move(info));
  }

  // True once a cancelled carrying cause() was thrown on the thread that
  // created this state: its cause is then in flight, not lost.
  bool delivered_cause() const noexcept { return delivered_.load(std::memory_order_relaxed); }

  void on_timer() noexcept override { request(stop_reason::deadline_exceeded); }

  // Soft stop: a polite request to finish, seen by this state's tasks and
  // by every state below it (not across a shielded scope). Blocking calls
  // ignore it; only the hard stop (request) makes them throw. A hard stop
  // counts as a soft stop too, so code that waits for the soft one also
  // wakes when cancelled.
  bool soft_stop_requested() const noexcept {
    // An ancestor's hard stop counts before it reached this state: the soft
    // token's callbacks run before the hooks that pass the hard stop down.
    for (const cancel_state* s = this; s != nullptr; s = s->parent_) {
      if (s->soft_requested_.load(std::memory_order_acquire) || s->stop_requested()) return true;
    }
    return false;
  }

  // A token that stops on a soft or hard stop of this state or an ancestor.
  // Valid while this state lives. Allocates on first use (up the chain).
  std::stop_token soft_stop_token();

  // Requests a soft stop now and a hard stop (reason cancelled, with the
  // message "<who>: <what> of <grace> elapsed") once `grace` passed on the
  // state's clock, unless it stopped before. A later call only shortens the
  // grace; a zero grace is a hard stop at once. Never blocks.
  void stop_after_grace(clock::duration grace, const char* who, const char* what);

  // The block behind soft_stop_token(), created on first use.
  soft_stop& soft_stop_block();

 private:
  soft_stop* soft_stop_block_locked();
  void delete_soft_stop() noexcept;

  struct forward {
    cancel_state* self;
    void operator()() const noexcept { self->request(stop_reason::parent); }
  };

  // The link to the parent: a hook on the parent's state.
  struct parent_hook final : stop_hook_node {
    explicit parent_hook(cancel_state* s) noexcept : self(s) {}
    void on_stop() noexcept override {
      self->request(stop_reason::parent);
      fired();  // the child's destructor waits for this
    }
    cancel_state* self;
  };

  // Runs every hook once. The whole list is taken in one locked step and run
  // unlocked, so thousands of woken waiters leaving at once never contend
  // with this loop for the lock (std::stop_callback's list, whose lock spins,
  // made cancelling 20 000 waiters take seconds).
  void fire_hooks() noexcept {
    stop_hook_node* list = nullptr;
    {
      std::lock_guard lock(hooks_lock_);
      hooks_fired_ = true;
      if (lead_ != nullptr && hooks_ != lead_) {  // still linked: unlinking clears lead_
        stop_hook_node* const lead = lead_;
        unlink_hook_locked(*lead);
        lead->next_ = hooks_;
        hooks_->prev_ = lead;
        hooks_ = lead;
      }
      list = std::exchange(hooks_, nullptr);
      for (stop_hook_node* n = list; n != nullptr; n = n->next_)
        n->linked_.store(false, std::memory_order_relaxed);
    }
    while (stop_hook_node* n = list) {
      list = n->next_;  // read first: once fired, n may die
      n->on_stop();
    }
  }

  void unlink_hook_locked(stop_hook_node& n) noexcept {
    if (lead_ == &n) lead_ = nullptr;
    if (n.prev_ != nullptr) n.prev_->next_ = n.next_;
    if (n.next_ != nullptr) n.next_->prev_ = n.prev_;
    if (hooks_ == &n) hooks_ = n.next_;
    n.prev_ = n.next_ = nullptr;
    n.linked_.store(false, std::memory_order_relaxed);
  }

  // The scope stopped directly: up through parents that stopped first. A
  // scope stopped by an explicit token is its own origin; its parent may be
  // unstopped, or being stopped right now (its details not yet written).
  const cancel_state& origin() const noexcept {
    const cancel_state* s = this;
    while (s->own_reason() == stop_reason::parent && s->parent_ != nullptr &&
           s->parent_->own_reason() != stop_reason::none)
      s = s->parent_;
    return *s;
  }

  static constexpr int claiming = -1;  // a request is writing the details

  std::stop_source source_;
  const std::stop_token token_ = source_.get_token();
  cancel_state* parent_;
  std::string name_;
  bool task_scope_ = false;     // see make_task_scope
  clock::time_point deadline_;  // effective: min(own, parent's)
  std::atomic<int> reason_{static_cast<int>(stop_reason::none)};
  // Written once by the winning request before reason_ is published.
  std::string message_;
  std::string task_name_;
  source_location task_site_;
  std::exception_ptr cause_;
  timer_handle timer_;
  std::thread::id owner_thread_;  // the thread that created the scope
  virtual_clock* vclock_;         // its deadline's clock: the creating task's (null: real time)
  // A cancelled carrying cause_ was thrown on owner_thread_ (see delivered_cause).
  mutable std::atomic<bool> delivered_{false};
  // Hooks of waits on this state's token and of child states (see fire_hooks).
  spinlock hooks_lock_;  // held for a link or unlink only: cheaper than a mutex per suspension
  stop_hook_node* hooks_ = nullptr;  // guarded by hooks_lock_
  stop_hook_node* lead_ = nullptr;   // guarded by hooks_lock_; linked in hooks_ too
  bool hooks_fired_ = false;         // guarded by hooks_lock_; set once, never cleared
  // Set by stop_after_grace; read by soft_stop_requested of this state's descendants.
  std::atomic<bool> soft_requested_{false};
  // The soft stop token and grace timer, created on first use under
  // soft_stop_creation() and never replaced until the state dies.
  std::atomic<soft_stop*> soft_{nullptr};
  parent_hook parent_link_;
  std::stop_callback<forward> extra_link_;
};

// What a state allocates once a soft stop token or a grace is asked for: a
// stop source stopped by the state's soft or hard stop and by its parent's
// block, and the timer that turns the soft stop into a hard one.
class soft_stop final : private timer_client {
 public:
  using clock = std::chrono::steady_clock;

  soft_stop(cancel_state& owner, soft_stop* parent)
      : owner_(owner), vclock_(owner.vclock()), hard_link_(owner.token(), forward{&source_}) {
    if (parent != nullptr) parent_link_.emplace(parent->source_.get_token(), forward{&source_});
  }

  // Unregisters the grace timer (waiting for a callback in progress) and
  // every link; the extension goes first, as it listens to the source.
  ~soft_stop() {
    extension_.reset();
    timer_handle pending;
    {
      std::lock_guard lock(mutex_);
      pending = std::exchange(timer_, timer_handle{});
    }
    cancel_timer(vclock_, pending);
  }
  soft_stop(const soft_stop&) = delete;
  soft_stop& operator=(const soft_stop&) = delete;

  std::stop_token token() const noexcept { return source_.get_token(); }
  void request() noexcept { source_.request_stop(); }

  // The hard stop at `when`, unless one is armed for no later; `message`
  // is what the hard stop will say.
  void arm(clock::time_point when, std::string message) {
    timer_handle replaced;
    {
      std::lock_guard lock(mutex_);
      if (when >= grace_end_) return;
      grace_end_ = when;
      message_ = std::move(message);
      replaced = std::exchange(timer_, schedule_timer(vclock_, when, this));
    }
    // Unlocked: a callback of the replaced timer that runs now takes the lock.
    cancel_timer(vclock_, replaced);
  }

  // The extension made by make() on first use; the caller holds
  // soft_stop_creation().
  template <class Make>
  soft_stop_extension& extension_locked(Make make) {
    if (extension_ == nullptr) {
      extension_ = make(token());
      published_.store(extension_.get(), std::memory_order_release);
    }
    return *extension_;
  }
  // The extension if it was made already (no lock), or null.
  soft_stop_extension* extension() const noexcept {
    return published_.load(std::memory_order_acquire);
  }

 private:
  struct forward {
    std::stop_source* source;
    void operator()() const noexcept { source->request_stop(); }
  };

  void on_timer() noexcept override {
    std::string message;
    {
      std::lock_guard lock(mutex_);
      try {
        message = message_;
      } catch (...) {
        // Out of memory: the hard stop matters more than its message.
      }
    }
    owner_.request(stop_reason::cancelled, std::move(message));
  }

  cancel_state& owner_;
  virtual_clock* vclock_;  // the owner's clock: the grace runs in virtual time there
  std::stop_source source_;
  // The owner's hard stop, as a standard callback rather than a hook: the
  // token's callbacks run before its hooks wake any waiter, so a task woken
  // by the hard stop already finds the soft token stopped.
  std::stop_callback<forward> hard_link_;
  std::optional<std::stop_callback<forward>> parent_link_;  // the parent block's soft stop
  std::unique_ptr<soft_stop_extension> extension_;          // guarded by soft_stop_creation()
  std::atomic<soft_stop_extension*> published_{nullptr};    // extension_, once made
  std::mutex mutex_;                                        // guards the fields below
  clock::time_point grace_end_ = clock::time_point::max();
  std::string message_;
  timer_handle timer_;
};

inline soft_stop& cancel_state::soft_stop_block() {
  if (soft_stop* b = soft_.load(std::memory_order_acquire)) return *b;
  std::lock_guard lock(soft_stop_creation());
  return *soft_stop_block_locked();
}

// Ancestors first, so that each block links to its parent's. The flag is
// read after the block is published (both sequentially consistent), so a
// concurrent stop_after_grace either sees the block or is seen here.
inline soft_stop* cancel_state::soft_stop_block_locked() {
  if (soft_stop* b = soft_.load(std::memory_order_acquire)) return b;
  soft_stop* up = parent_ != nullptr ? parent_->soft_stop_block_locked() : nullptr;
  auto* b = new soft_stop(*this, up);
  soft_.store(b);
  if (soft_requested_.load()) b->request();
  return b;
}

inline std::stop_token cancel_state::soft_stop_token() {
  return soft_stop_block().token();
}

inline void cancel_state::stop_after_grace(clock::duration grace, const char* who,
                                           const char* what) {
  soft_requested_.store(true);
  if (soft_stop* b = soft_.load()) b->request();
  std::string message =
      std::string(who) + ": " + what + " of " + describe_grace(grace) + " elapsed";
  const clock::time_point now = now_for(vclock_);
  if (grace == grace.zero()) {
    request(stop_reason::cancelled, std::move(message));
  } else if (!stop_requested()) {
    const clock::time_point end =
        grace >= clock::time_point::max() - now ? clock::time_point::max() : now + grace;
    if (end != clock::time_point::max()) soft_stop_block().arm(end, std::move(message));
  }
}

inline void cancel_state::delete_soft_stop() noexcept {
  delete soft_.load(std::memory_order_acquire);
}

// The innermost cancel scope or nursery of this thread, or nullptr.
inline thread_local cancel_state* ambient = nullptr;

inline std::stop_token ambient_token() noexcept {
  return ambient != nullptr ? ambient->token() : std::stop_token{};
}

// The ambient token by reference, for blocking calls made inside the scope
// that owns it (see cancel_state::token_ref): a channel operation in a
// nursery task would otherwise copy the nursery's token twice per call.
inline const std::stop_token& ambient_token_ref() noexcept {
  // Immortal, so that a call made during static destruction still has one.
  static const std::stop_token& none = *new std::stop_token();
  return ambient != nullptr ? ambient->token_ref() : none;
}

// The state whose token `token` is, if it is the ambient state or one of its
// ancestors (the common case: a blocking call inside a task or scope).
inline cancel_state* state_of(const std::stop_token& token) noexcept {
  for (cancel_state* s = ambient; s != nullptr; s = s->parent()) {
    if (s->token_ref() == token) return s;
  }
  return nullptr;
}

// Calls f(fired) once when `token` stops, on the thread that stops it, until
// destroyed: std::stop_callback's contract (f runs at once if the token is
// already stopped; the destructor waits for an f that runs now). f must call
// fired() inside the critical section that wakes the waiter (see
// stop_hook_node). A token of the ambient scope chain uses its state's hook
// list instead of the standard callback list, whose lock spins: thousands of
// woken waiters unregistering at once would starve the thread that runs the
// callbacks.
template <class F>
class stop_hook final : private stop_hook_node {
 public:
  stop_hook(const std::stop_token& token, F f) : f_(std::move(f)), state_(state_of(token)) {
    if (state_ != nullptr) {
      state_->add_hook(*this);
    } else if (token.stop_possible()) {
      fallback_ = new (&storage_) std::stop_callback<call>(token, call{this});
    }
  }
  ~stop_hook() {
    if (state_ != nullptr) state_->remove_hook(*this);
    if (fallback_ != nullptr) fallback_->~stop_callback();
  }
  stop_hook(const stop_hook&) = delete;
  stop_hook& operator=(const stop_hook&) = delete;

 private:
  struct mark_fired {
    stop_hook* self;
    void operator()() const noexcept { self->fired(); }
  };
  struct call {  // std::stop_callback keeps its own lifetime rule: nothing to mark
    stop_hook* self;
    void operator()() const noexcept {
      self->f_([] {});
    }
  };
  void on_stop() noexcept override { f_(mark_fired{this}); }

  F f_;
  cancel_state* state_;  // null: registered through fallback_ (or never stops)
  // A standard callback for other tokens; placement storage rather than
  // std::optional, which g++ 12 misreads as maybe-uninitialized here.
  std::stop_callback<call>* fallback_ = nullptr;
  alignas(std::stop_callback<call>) unsigned char storage_[sizeof(std::stop_callback<call>)];
};

// Installs `s` as this thread's ambient state until destroyed; destruction
// must happen on the same thread, innermost first.
class ambient_guard {
 public:
  ambient_guard(cancel_state* s, const char* owner) noexcept
      : installed_(s), previous_(ambient), owner_(owner) {
    ambient = s;
  }
  ~ambient_guard() {
    if (ambient != installed_) {
      std::fprintf(stderr,
                   "leash: %s destroyed out of order: scopes and nurseries must be destroyed on "
                   "the thread that created them, innermost first\n",
                   owner_);
      std::terminate();
    }
    ambient = previous_;
  }
  ambient_guard(const ambient_guard&) = delete;
  ambient_guard& operator=(const ambient_guard&) = delete;

 private:
  cancel_state* installed_;
  cancel_state* previous_;
  const char* owner_;
};

}  // namespace leash::inline v0::detail
