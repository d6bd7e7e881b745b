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
#include <cstdint>
#include <cstdio>
#include <exception>
#include <stop_token>
#include <string>
#include <thread>

#include "../errors.hpp"
#include "timer.hpp"

namespace leash::inline v0::detail {

// Identity of a running task, shared by the nursery's records and the leak
// check. Blocking calls note what they block in, for reports.
struct task_identity {
  std::uint64_t id = 0;
  std::string name;
  source_location site;
  const void* owner_nursery = nullptr;  // the nursery that runs it
  std::chrono::steady_clock::time_point started{};
  std::atomic<const char*> blocked_in{nullptr};
  std::atomic<std::chrono::steady_clock::rep> blocked_since{0};
};

// The task whose body runs on this thread, if any.
inline thread_local task_identity* current_task = nullptr;

// Marks the current task as blocked in `what` for the scope's lifetime.
class blocked_scope {
 public:
  explicit blocked_scope(const char* what) noexcept : task_(current_task) {
    if (task_ == nullptr) return;
    previous_ = task_->blocked_in.load(std::memory_order_relaxed);
    task_->blocked_since.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                               std::memory_order_relaxed);
    task_->blocked_in.store(what, std::memory_order_release);  // publishes the text too
  }
  ~blocked_scope() {
    if (task_ != nullptr) task_->blocked_in.store(previous_, std::memory_order_relaxed);
  }
  blocked_scope(const blocked_scope&) = delete;
  blocked_scope& operator=(const blocked_scope&) = delete;

 private:
  task_identity* task_;
  const char* previous_ = nullptr;
};

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
        // The links are the last members: if a parent is already stopped, the
        // callback runs right here and every other member must exist.
        parent_link_(parent != nullptr ? parent->token() : std::stop_token{}, forward{this}),
        extra_link_(std::move(extra), forward{this}) {
    if (deadline == clock::time_point::max()) return;
    if (deadline <= clock::now()) {
      request(stop_reason::deadline_exceeded);
    } else if ((parent == nullptr || deadline < parent->deadline_) && !stop_requested()) {
      // A deadline later than an ancestor's can never fire first: no timer.
      timer_ = timer_service::instance().schedule(deadline, this);
    }
  }

  // Unregisters the timer (waiting for a callback in progress); the links
  // unregister themselves as members, before anything they touch dies.
  ~cancel_state() { timer_service::instance().cancel(timer_); }

  cancel_state(const cancel_state&) = delete;
  cancel_state& operator=(const cancel_state&) = delete;

  std::stop_token token() const noexcept { return token_; }
  // The token without a copy: copying one changes the reference count of the
  // stop state, two atomic read-modify-writes on a cache line that every task
  // of a nursery shares. Valid while this state lives.
  const std::stop_token& token_ref() const noexcept { return token_; }
  bool stop_requested() const noexcept { return source_.stop_requested(); }
  cancel_state* parent() const noexcept { return parent_; }
  clock::time_point deadline() const noexcept { return deadline_; }
  const std::string& name() const noexcept { return name_; }

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
    return true;
  }

  // none until a request completed publishing.
  stop_reason reason() const noexcept {
    const int r = reason_.load(std::memory_order_acquire);
    return r == claiming ? stop_reason::none : static_cast<stop_reason>(r);
  }

  // The root cause: follows parent reasons up to the scope that was stopped
  // directly. An explicit parent token says nothing more: cancelled.
  stop_reason origin_reason() const noexcept {
    const stop_reason r = origin().reason();
    return r == stop_reason::parent ? stop_reason::cancelled : r;
  }

  std::exception_ptr cause() const noexcept {
    return reason() == stop_reason::none ? nullptr : cause_;
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

 private:
  struct forward {
    cancel_state* self;
    void operator()() const noexcept { self->request(stop_reason::parent); }
  };

  const cancel_state& origin() const noexcept {
    const cancel_state* s = this;
    while (s->reason() == stop_reason::parent && s->parent_ != nullptr)
      s = s->parent_;
    return *s;
  }

  static constexpr int claiming = -1;  // a request is writing the details

  std::stop_source source_;
  const std::stop_token token_ = source_.get_token();
  cancel_state* parent_;
  std::string name_;
  clock::time_point deadline_;  // effective: min(own, parent's)
  std::atomic<int> reason_{static_cast<int>(stop_reason::none)};
  // Written once by the winning request before reason_ is published.
  std::string message_;
  std::string task_name_;
  source_location task_site_;
  std::exception_ptr cause_;
  timer_handle timer_;
  std::thread::id owner_thread_;  // the thread that created the scope
  // A cancelled carrying cause_ was thrown on owner_thread_ (see delivered_cause).
  mutable std::atomic<bool> delivered_{false};
  std::stop_callback<forward> parent_link_;
  std::stop_callback<forward> extra_link_;
};

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
