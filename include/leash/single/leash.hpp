// leash.hpp: leash as one drop-in header (structured concurrency and
// resource RAII for C++20). GENERATED from include/ by
// tests/tools/amalgamate.cpp: edit the modular headers, then build the
// `leash_single_header` target. Documentation: docs/ in the repository.
// Generated from formatted sources: not reformatted as a whole.
// clang-format off
#pragma once
// ---- leash.hpp ----
// leash.hpp: structured concurrency and resource RAII for C++20.
//
// Includes every portable component of leash. The HTTP worked example
// (Linux only) is included separately from leash/http/.

// ---- leash/detail/config.hpp ----
// leash/detail/config.hpp: rejects a language mode or standard library leash
// cannot build on, with one clear #error instead of a cascade of missing
// headers and names. Every public header includes it before anything else, so
// on such a library its #error is the first diagnostic.
//
// leash builds on C++20 stop tokens (std::stop_token, std::stop_callback,
// std::jthread): libstdc++ from GCC 11 on, libc++ from LLVM 18 on (before 18
// it lacks <stop_token> or leaves it experimental, without __cpp_lib_jthread).

#if __has_include(<version>)
#include <version>
#endif

#if defined(_MSVC_LANG) ? _MSVC_LANG < 202002L : __cplusplus < 202002L
#error "leash needs C++20: compile with -std=c++20 (MSVC: /std:c++20)"
#elif !__has_include(<stop_token>) || !defined(__cpp_lib_jthread)
// One line, so the diagnostic quotes the message whole.
// clang-format off
#error "leash needs <stop_token> and std::jthread (C++20 stop tokens): libstdc++ from GCC 11+ or libc++ 18+; this standard library lacks them"
// clang-format on
#endif

// ---- leash/body.hpp ----
// leash/body.hpp: a readable byte stream that must be closed (an HTTP response body).
// Prevents: Go's `resp.Body` that is neither read to EOF nor closed, so the
// keep-alive connection is never reused and sockets and goroutines pile up.
//
//   leash::body b = leash::memory_body("hello, world");   // or a transport's response
//   std::string all = b.read_all(1 << 20);   // reads to EOF: that closes it
//
//   std::array<std::byte, 4096> buf;
//   while (std::size_t n = b.read(buf)) consume(buf.data(), n);   // 0 at EOF: closed
//   b.close();   // or: forgotten, then ~body closes it and reports the opening line
//
// A body is a must_close handle (leash/must_close.hpp) over a body_source, the
// interface a transport implements over its connection. Reaching EOF closes the
// source (at_end = true); close() before EOF closes it with at_end = false, and
// the source decides what that means (an HTTP transport drains a short tail so
// the connection is reused, or discards the connection).
//
//   state   read()                    close()                 destructor
//   open    bytes; 0 at EOF = closed  closes the source       closes it, reports
//   closed  throws body_closed        nothing                 nothing
//
// Guarantees. Blocks: read, read_all and discard, until bytes or EOF arrive.
// Cancelled: by the ambient or an explicit token (throws leash::cancelled), and
// by close() from another thread, which wakes a blocked read with body_closed.
// A read after close fails at once with body_closed: it never blocks. Throws:
// body_closed, body_too_large (read_all), the source's errors, and the source's
// close error from the call that closed it (close(), or the read that hit EOF).
// Thread-safe: one reader at a time; close() may be called from any thread.


#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>

// ---- leash/cancel.hpp ----
// leash/cancel.hpp: cancel scopes, deadlines and stop-aware sleeping.
// Prevents: context.WithTimeout without `defer cancel()`, which leaks a timer
// until the deadline. A deadline here is an RAII scope: nothing to forget.
//
//   leash::cancel_scope scope(250ms);       // ambient for this thread until it dies
//   leash::this_task::sleep_for(1s);         // throws leash::deadline_exceeded at 250ms
//
//   bool finished = leash::move_on_after(100ms, [] { slow(); });   // false: gave up
//   int v = leash::fail_after(100ms, [] { return compute(); });     // throws on timeout
//
// A scope is a child of the thread's ambient scope (or of an explicit token,
// or of nothing when `shielded`), and while alive it is the ambient scope that
// every blocking leash call on this thread honours. Its reason is the first of
// cancelled / deadline_exceeded / parent and never changes afterwards.
//
// Guarantees. Blocks: sleep_for/sleep_until only. Cancelled: every blocking
// call here throws leash::cancelled (leash::deadline_exceeded when a deadline
// caused it) as soon as its token is stopped, within microseconds. Thread-safe:
// cancel(), token(), reason() from any thread; a scope must be destroyed on the
// thread that created it, innermost first (checked: std::terminate otherwise).


#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <stop_token>
#include <string>
#include <type_traits>

// ---- leash/detail/cancel_state.hpp ----
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

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <mutex>
#include <new>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>

// ---- leash/errors.hpp ----
// leash/errors.hpp: the exceptions leash throws, and where unobserved failures go.
//
// Every leash exception derives from leash::error (a std::runtime_error), and
// every message starts with the component that raised it:
//
//   try {
//     leash::fail_after(100ms, [] { leash::this_task::sleep_for(1s); });
//   } catch (const leash::deadline_exceeded& e) {  // a leash::cancelled
//     std::puts(e.what());  // "leash::cancelled: deadline exceeded ..."
//   }
//
// Guarantees. Thread-safe: the handler setter may be called from any thread.
// The default unobserved-failure handler prints the failure with its spawn
// site and calls std::terminate, like an unjoined std::thread: a task failure
// is never silent.


#include <cstdio>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

// ---- leash/detail/source_location.hpp ----
// leash/detail/source_location.hpp: where a task, scope or handle was created.
//
// clang 14 with libstdc++ 12 cannot compile <source_location> (it lacks
// __builtin_source_location), so leash uses this shim over the builtins that
// both g++ and clang have. As a defaulted argument, current() records the
// caller's position, exactly like std::source_location::current().

#include <cstdint>
#include <string>

namespace leash::inline v0 {

// A file, line and function captured at a call site. Trivially copyable; the
// strings are literals with static storage. An empty location has file "".
struct source_location {
  const char* file = "";
  std::uint_least32_t line = 0;
  const char* function = "";

  static constexpr source_location current(const char* file = __builtin_FILE(),
                                           std::uint_least32_t line = __builtin_LINE(),
                                           const char* function = __builtin_FUNCTION()) noexcept {
    return {file, line, function};
  }

  constexpr bool empty() const noexcept { return line == 0; }
};

// "file:line", or "unknown location" when empty.
inline std::string to_string(const source_location& loc) {
  if (loc.empty()) return "unknown location";
  return std::string(loc.file) + ":" + std::to_string(loc.line);
}

}  // namespace leash::inline v0

namespace leash::inline v0 {

// Base of every exception leash throws.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Misuse of the API (spawn after wait(), a limit of 0, an empty task handle):
// a bug in the calling code, reported instead of undefined behaviour.
class usage_error : public error {
 public:
  using error::error;
};

// The runtime could not start a thread for a task: the runtime's
// max_threads cap was reached, or the OS refused a new thread. The message
// names the task, the threads alive and the limit that applies. Nothing else
// changed: tasks already spawned run on.
class resource_exhausted : public error {
 public:
  using error::error;
};

// A body read after the body was closed, or while another thread closed it
// (the read is woken and fails with this instead of blocking).
class body_closed : public error {
 public:
  using error::error;
};

// body::read_all found more bytes than its max_bytes; the body is closed.
class body_too_large : public error {
 public:
  using error::error;
};

// Why a stop token was stopped. The first reason wins and is never overwritten.
enum class stop_reason {
  none,               // not stopped
  cancelled,          // cancel() was called, or a sibling task failed
  deadline_exceeded,  // the scope's own deadline passed
  parent,             // an enclosing scope (or an explicit parent token) stopped
};

constexpr const char* to_string(stop_reason r) noexcept {
  switch (r) {
    case stop_reason::none:
      return "not stopped";
    case stop_reason::cancelled:
      return "cancelled";
    case stop_reason::deadline_exceeded:
      return "deadline exceeded";
    case stop_reason::parent:
      return "cancelled by an enclosing scope";
  }
  return "?";
}

// Everything a cancelled exception knows about the stop that raised it.
struct cancel_info {
  stop_reason reason = stop_reason::cancelled;  // as seen by the scope that observed the stop
  stop_reason origin = stop_reason::cancelled;  // cancelled or deadline_exceeded: the root cause
  std::string message;                          // from cancel(message), if any
  std::string scope_name;                       // nursery name where the stop originated, if any
  std::string task_name;                        // the failing task that triggered it, if any
  source_location task_site;                    // where that task was spawned
  std::exception_ptr cause;                     // that task's failure
};

// Thrown by a blocking leash call whose stop token is stopped. Tasks stopped by
// their own nursery may let it escape: that is a quiet end, not a failure.
class cancelled : public error {
 public:
  explicit cancelled(cancel_info info) : error(describe(info)), info_(std::move(info)) {}

  // The reason of the scope whose token was checked (parent if it came from above).
  stop_reason reason() const noexcept { return info_.reason; }
  // The root cause: cancelled or deadline_exceeded.
  stop_reason origin() const noexcept { return info_.origin; }
  const std::string& message() const noexcept { return info_.message; }
  // The task whose failure cancelled the nursery, if that is what happened.
  const std::string& task_name() const noexcept { return info_.task_name; }
  const source_location& task_site() const noexcept { return info_.task_site; }
  // The failure that made a nursery cancel (empty otherwise).
  std::exception_ptr cause() const noexcept { return info_.cause; }
  const cancel_info& info() const noexcept { return info_; }

 private:
  static std::string describe(const cancel_info& info) {
    std::string s = info.origin == stop_reason::deadline_exceeded ? "leash::deadline_exceeded: "
                                                                  : "leash::cancelled: ";
    if (info.reason == stop_reason::parent) {
      s += std::string("cancelled by an enclosing scope (") + to_string(info.origin) + ")";
    } else {
      s += to_string(info.reason);
    }
    if (!info.scope_name.empty()) s += " in nursery \"" + info.scope_name + "\"";
    if (!info.message.empty()) s += ": " + info.message;
    if (!info.task_name.empty() || !info.task_site.empty()) {
      s += "; triggered by task \"" + info.task_name + "\" spawned at " + to_string(info.task_site);
    }
    if (info.cause) {
      try {
        std::rethrow_exception(info.cause);
      } catch (const std::exception& e) {
        s += std::string("; cause: ") + e.what();
      } catch (...) {
        s += "; cause: a non-standard exception";
      }
    }
    return s;
  }

  cancel_info info_;
};

// A cancelled whose root cause is a deadline (a scope's or a nursery's).
class deadline_exceeded : public cancelled {
 public:
  using cancelled::cancelled;
};

// A send on a closed channel (or a chosen select send case whose channel is
// closed). The value passed to send stays the caller's: it was not moved.
class channel_closed : public error {
 public:
  channel_closed() : error("leash::channel: send on closed channel") {}
};

// A failure nobody read: a supervisor task's exception never fetched through
// task::get() or failures(), or a task failure still pending when a nursery
// was destroyed without wait().
struct unobserved_failure {
  std::exception_ptr error;
  std::string task_name;
  source_location task_site;
  std::string nursery_name;
};

using unobserved_failure_handler = std::function<void(const unobserved_failure&)>;

namespace detail {

inline std::string describe_exception(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "a non-standard exception";
  }
}

inline void default_unobserved_failure(const unobserved_failure& f) {
  std::fprintf(stderr,
               "leash: unobserved failure in task \"%s\" spawned at %s (nursery \"%s\"): %s\n"
               "leash: terminating (install leash::set_unobserved_failure_handler to change)\n",
               f.task_name.c_str(), to_string(f.task_site).c_str(), f.nursery_name.c_str(),
               describe_exception(f.error).c_str());
  std::terminate();
}

struct unobserved_handler_slot {
  std::mutex mutex;
  unobserved_failure_handler handler = default_unobserved_failure;
};

// Immortal: reporting must work during static destruction too.
inline unobserved_handler_slot& unobserved_slot() {
  static auto* slot = new unobserved_handler_slot;
  return *slot;
}

inline void report_unobserved(const unobserved_failure& f) {
  unobserved_failure_handler h;
  {
    std::lock_guard lock(unobserved_slot().mutex);
    h = unobserved_slot().handler;
  }
  h(f);
}

}  // namespace detail

// Installs the handler for unobserved failures and returns the previous one.
// An empty function restores the default (print, then std::terminate).
inline unobserved_failure_handler set_unobserved_failure_handler(unobserved_failure_handler h) {
  std::lock_guard lock(detail::unobserved_slot().mutex);
  if (!h) h = detail::default_unobserved_failure;
  return std::exchange(detail::unobserved_slot().handler, std::move(h));
}

}  // namespace leash::inline v0
// ---- leash/detail/timer.hpp ----
// leash/detail/timer.hpp: the one shared timer thread that serves every deadline.
//
// Entries live in an ordered map keyed by (deadline, id), so cancelling one is a
// real O(log n) removal: destroying a scope with a far deadline leaves nothing
// behind. The thread is started on first use and stopped at exit.
//
// Cost: the timer thread is only woken when an entry earlier than the time it
// already plans to wake at arrives. A create/destroy loop of scopes with the
// same timeout therefore never wakes it; only the first entry does.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

// ---- leash/detail/leak_signal.hpp ----
// leash/detail/leak_signal.hpp: how a waiting leak check hears that something ended.
//
// leak_check::verify() waits until everything outside its baseline is gone.
// Whatever can end (a task, a nursery, a ticker, a must-close handle, a timer
// entry) calls notify() when it does; verify() waits for the generation to
// change. Only while a check lives does notify() take the lock, so the cost
// otherwise is one relaxed-enough atomic load. This header depends on nothing
// else in leash: the timer service includes it.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace leash::inline v0::detail {

class leak_signal {
 public:
  // Immortal: objects may end during static destruction.
  static leak_signal& instance() {
    static auto* s = new leak_signal;
    return *s;
  }

  // True while at least one leak_check lives: then registries record details.
  bool checking() const noexcept { return checks_.load(std::memory_order_acquire) != 0; }

  void check_started() noexcept { checks_.fetch_add(1, std::memory_order_acq_rel); }
  void check_ended() noexcept { checks_.fetch_sub(1, std::memory_order_acq_rel); }

  // Something ended; wakes waiting checks, if any.
  void notify() noexcept {
    if (!checking()) return;
    std::lock_guard lock(mutex_);
    ++generation_;
    changed_.notify_all();
  }

  std::uint64_t generation() const {
    std::lock_guard lock(mutex_);
    return generation_;
  }

  // Waits until the generation differs from `seen` or `deadline` passes.
  void wait_changed(std::uint64_t seen, std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    changed_.wait_until(lock, deadline, [&] { return generation_ != seen; });
  }

 private:
  leak_signal() = default;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::uint64_t generation_ = 0;  // bumped by every notify() while a check lives
  std::atomic<int> checks_{0};    // live leak checks
};

}  // namespace leash::inline v0::detail

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
    std::thread t([this] { run(); });
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
  stop_hook_node* prev_ = nullptr;  // the state's hook list, guarded by its hooks_mutex_
  stop_hook_node* next_ = nullptr;
  // Written under hooks_mutex_; once false after being true it stays false,
  // so reading false without the lock is final.
  std::atomic<bool> linked_{false};
  std::atomic<bool> fired_{false};
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
        // The extra link is the last member: if its token is already stopped,
        // the callback runs right here and every other member must exist.
        parent_link_(this),
        extra_link_(std::move(extra), forward{this}) {
    if (parent_ != nullptr) parent_->add_hook(parent_link_);  // may request stop at once
    if (deadline == clock::time_point::max()) return;
    if (deadline <= clock::now()) {
      request(stop_reason::deadline_exceeded);
    } else if ((parent == nullptr || deadline < parent->deadline_) && !stop_requested()) {
      // A deadline later than an ancestor's can never fire first: no timer.
      timer_ = timer_service::instance().schedule(deadline, this);
    }
  }

  // Unregisters the timer and the parent link (each waits for a callback in
  // progress); the extra link unregisters itself as a member.
  ~cancel_state() {
    timer_service::instance().cancel(timer_);
    if (parent_ != nullptr) parent_->remove_hook(parent_link_);
  }

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
    fire_hooks();
    return true;
  }

  // Runs n.on_stop() when this state stops (at once, on this thread, if it
  // already has). Never blocks on other hooks.
  void add_hook(stop_hook_node& n) noexcept {
    {
      std::lock_guard lock(hooks_mutex_);
      if (!hooks_fired_) {
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
      std::lock_guard lock(hooks_mutex_);
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
      std::lock_guard lock(hooks_mutex_);
      hooks_fired_ = true;
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
    if (n.prev_ != nullptr) n.prev_->next_ = n.next_;
    if (n.next_ != nullptr) n.next_->prev_ = n.prev_;
    if (hooks_ == &n) hooks_ = n.next_;
    n.prev_ = n.next_ = nullptr;
    n.linked_.store(false, std::memory_order_relaxed);
  }

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
  // Hooks of waits on this state's token and of child states (see fire_hooks).
  std::mutex hooks_mutex_;
  stop_hook_node* hooks_ = nullptr;  // guarded by hooks_mutex_
  bool hooks_fired_ = false;         // guarded by hooks_mutex_; set once, never cleared
  parent_hook parent_link_;
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
// ---- leash/detail/registry.hpp ----
// leash/detail/registry.hpp: the process-wide lists a leak check reads.
//
// Each nursery links itself here for its lifetime (one lock per nursery, none
// per task); a leak check or live_tasks() walks the list and asks every
// nursery for a snapshot of its tasks. Lock order: the registry's mutex, then
// a nursery's.
//
// Tickers and must-close handles are listed in a second registry, by id
// (object_registry): tickers always, handles only while a leak check lives.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>


namespace leash::inline v0::detail {

inline std::uint64_t next_id() noexcept {
  static std::atomic<std::uint64_t> counter{0};
  return counter.fetch_add(1, std::memory_order_relaxed) + 1;
}

struct task_snapshot {
  std::uint64_t id = 0;
  std::string name;
  source_location site;
  const char* blocked_in = nullptr;  // a string that lives forever, or nullptr when running
  std::chrono::steady_clock::duration blocked_for{};
  std::chrono::steady_clock::duration age{};
};

struct nursery_snapshot {
  std::uint64_t id = 0;
  std::uint64_t parent_task = 0;  // the task whose body opened it, 0 if none
  std::string name;
  source_location site;
  std::vector<task_snapshot> tasks;
};

class nursery_node {
 public:
  virtual nursery_snapshot snapshot() const = 0;
  virtual const cancel_state& state() const noexcept = 0;

 protected:
  // Virtual as well as protected: the friend below can reach it, so even a
  // destruction through this base must run the derived destructor.
  virtual ~nursery_node() = default;

 private:
  friend class registry;
  nursery_node* prev_ = nullptr;  // guarded by the registry's mutex
  nursery_node* next_ = nullptr;
};

class registry {
 public:
  static registry& instance() {
    static auto* r = new registry;  // immortal: nurseries may die during static destruction
    return *r;
  }

  void add(nursery_node* n) noexcept {
    std::lock_guard lock(mutex_);
    n->next_ = head_;
    if (head_ != nullptr) head_->prev_ = n;
    head_ = n;
  }

  void remove(nursery_node* n) noexcept {
    {
      std::lock_guard lock(mutex_);
      if (n->prev_ != nullptr) n->prev_->next_ = n->next_;
      if (n->next_ != nullptr) n->next_->prev_ = n->prev_;
      if (head_ == n) head_ = n->next_;
    }
    leak_signal::instance().notify();
  }

  std::vector<nursery_snapshot> snapshot() const {
    std::lock_guard lock(mutex_);
    std::vector<nursery_snapshot> out;
    for (nursery_node* n = head_; n != nullptr; n = n->next_)
      out.push_back(n->snapshot());
    return out;
  }

  // Called whenever a task ends; wakes leak checks, if any are waiting.
  void task_ended() noexcept { leak_signal::instance().notify(); }

  // The details of a stopped nursery's token, if `token` is one; searched
  // under the lock so that the nursery cannot die meanwhile.
  std::optional<cancel_info> find(const std::stop_token& token) const {
    std::lock_guard lock(mutex_);
    for (nursery_node* n = head_; n != nullptr; n = n->next_) {
      if (n->state().token() == token) return n->state().info();
    }
    return std::nullopt;
  }

 private:
  registry() = default;

  mutable std::mutex mutex_;
  nursery_node* head_ = nullptr;
};

// What a leak check knows about a live ticker, an open must-close handle, or
// a plain thread (not a task) blocked in a channel call.
struct object_snapshot {
  enum kind_t { ticker, handle, blocked_thread } kind = ticker;
  std::uint64_t id = 0;
  std::string name;      // a ticker's name, a handle's resource type, or the blocking call
  source_location site;  // where it was started / opened
  std::chrono::steady_clock::time_point since{};
};

// Live tickers and (while a leak check lives) open must-close handles, by id.
// Entries are copies: nothing here points into the objects themselves.
class object_registry {
 public:
  static object_registry& instance() {
    static auto* r = new object_registry;  // immortal, like the registry
    return *r;
  }

  // Records an object; returns its id (never 0).
  std::uint64_t add(object_snapshot::kind_t kind, std::string name, source_location site) {
    object_snapshot o{kind, next_id(), std::move(name), site, std::chrono::steady_clock::now()};
    const std::uint64_t id = o.id;
    std::lock_guard lock(mutex_);
    objects_.emplace(id, std::move(o));
    return id;
  }

  void remove(std::uint64_t id) noexcept {
    if (id == 0) return;
    {
      std::lock_guard lock(mutex_);
      objects_.erase(id);
    }
    leak_signal::instance().notify();
  }

  std::vector<object_snapshot> snapshot() const {
    std::lock_guard lock(mutex_);
    std::vector<object_snapshot> out;
    out.reserve(objects_.size());
    for (const auto& [id, o] : objects_)
      out.push_back(o);
    return out;
  }

 private:
  object_registry() = default;

  mutable std::mutex mutex_;
  std::map<std::uint64_t, object_snapshot> objects_;  // guarded by mutex_
};

// Marks a thread blocked in a channel call or select. A task's blocking call
// shows through the task (live_tasks()' blocked_in); a plain thread's is
// recorded here while a leak check lives, so that a thread left waiting on a
// channel nobody serves is reported too.
class channel_wait_scope {
 public:
  explicit channel_wait_scope(const char* what) noexcept : blocked_(what) {
    if (current_task != nullptr || !leak_signal::instance().checking()) return;
    try {
      id_ = object_registry::instance().add(object_snapshot::blocked_thread, what, {});
    } catch (...) {
      // Out of memory: the wait goes on unrecorded; only the report loses it.
    }
  }
  ~channel_wait_scope() { object_registry::instance().remove(id_); }
  channel_wait_scope(const channel_wait_scope&) = delete;
  channel_wait_scope& operator=(const channel_wait_scope&) = delete;

 private:
  blocked_scope blocked_;
  std::uint64_t id_ = 0;
};

// Throws the cancelled exception for a stopped `token`, with full details when
// the token is an ambient scope's of this thread or any nursery's. A token of
// a cancel_scope on another thread, or of a foreign std::stop_source, gives a
// plain cancelled (reason cancelled): nothing more is known about it.
[[noreturn]] inline void throw_cancelled(const std::stop_token& token) {
  for (cancel_state* s = ambient; s != nullptr; s = s->parent()) {
    if (s->token() == token) s->throw_cancelled();
  }
  if (auto info = registry::instance().find(token)) cancel_state::throw_info(std::move(*info));
  cancel_info info;
  info.message = "stop requested on an explicit std::stop_token";
  throw cancelled(std::move(info));
}

inline void throw_if_stopped(const std::stop_token& token) {
  if (token.stop_requested()) throw_cancelled(token);
}

}  // namespace leash::inline v0::detail
// ---- leash/detail/wait.hpp ----
// leash/detail/wait.hpp: the stop-aware condition wait every blocking leash call uses.
//
// std::condition_variable_any's stop_token waits have shipped broken in some
// standard libraries (lost wake-ups), so leash waits on a plain
// std::condition_variable and registers its own stop hook that wakes the
// waiter. The callback locks the waiter's mutex before notifying, and the
// waiter checks the token under that mutex, so a stop can never slip in between
// "checked the token" and "went to sleep".

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stop_token>


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
template <class Ready>
wait_status wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                       const std::stop_token& token, clock::time_point deadline, Ready ready) {
  if (ready()) return wait_status::ready;
  if (token.stop_requested()) return wait_status::stopped;
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
  const auto now = clock::now();
  if (d <= d.zero()) return now;
  const auto room = clock::time_point::max() - now;
  // Compared in double seconds: d's own representation may not hold `room`.
  if (std::chrono::duration<double>(d) >= std::chrono::duration<double>(room)) {
    return clock::time_point::max();
  }
  return now + std::chrono::ceil<clock::duration>(d);
}

}  // namespace leash::inline v0::detail

namespace leash::inline v0 {

// Tag: a scope that ignores every enclosing scope (Trio's shield, Go's
// context.WithoutCancel) but keeps its own deadline. For cleanup that must
// still be allowed to block.
struct shielded_t {
  explicit shielded_t() = default;
};
inline constexpr shielded_t shielded{};

class cancel_scope {
 public:
  using clock = std::chrono::steady_clock;

  // A child of the ambient scope, without a deadline of its own.
  [[nodiscard]] cancel_scope() : cancel_scope(detail::ambient, {}, clock::time_point::max()) {}

  // A child of the ambient scope that stops itself after `timeout`. A zero or
  // negative timeout is already expired: the first blocking call throws.
  template <class Rep, class Period>
  [[nodiscard]] explicit cancel_scope(std::chrono::duration<Rep, Period> timeout)
      : cancel_scope(detail::ambient, {}, detail::deadline_after(timeout)) {}

  // A child of the ambient scope that stops itself at `deadline`.
  [[nodiscard]] explicit cancel_scope(clock::time_point deadline)
      : cancel_scope(detail::ambient, {}, deadline) {}

  // A child of the ambient scope that also stops when `token` does (a
  // request's token handed in from elsewhere). Only `shielded` ignores the
  // enclosing scopes.
  [[nodiscard]] explicit cancel_scope(std::stop_token token)
      : cancel_scope(detail::ambient, unless_ambient(std::move(token)), clock::time_point::max()) {}
  template <class Rep, class Period>
  [[nodiscard]] cancel_scope(std::stop_token token, std::chrono::duration<Rep, Period> timeout)
      : cancel_scope(detail::ambient, unless_ambient(std::move(token)),
                     detail::deadline_after(timeout)) {}

  // A scope with no parent at all.
  [[nodiscard]] explicit cancel_scope(shielded_t)
      : cancel_scope(nullptr, {}, clock::time_point::max()) {}
  template <class Rep, class Period>
  [[nodiscard]] cancel_scope(shielded_t, std::chrono::duration<Rep, Period> timeout)
      : cancel_scope(nullptr, {}, detail::deadline_after(timeout)) {}

  cancel_scope(const cancel_scope&) = delete;
  cancel_scope& operator=(const cancel_scope&) = delete;

  // Unregisters the deadline and the parent link; restores the previous
  // ambient scope. There is no cancel() to forget.
  ~cancel_scope() = default;

  std::stop_token token() const noexcept { return state_.token(); }
  bool stop_requested() const noexcept { return state_.stop_requested(); }

  // Requests stop with reason `cancelled`; false if the scope was already
  // stopped (the first reason is kept). Never blocks.
  bool cancel(std::string message = {}) { return state_.request(stop_reason::cancelled, message); }

  // Why the scope stopped: none, cancelled, deadline_exceeded or parent.
  stop_reason reason() const noexcept { return state_.reason(); }
  // When reason() is parent: what stopped the ancestor (cancelled or deadline_exceeded).
  stop_reason origin_reason() const noexcept { return state_.origin_reason(); }
  // The effective deadline (the earlier of its own and its ancestors'), or
  // time_point::max().
  clock::time_point deadline() const noexcept { return state_.deadline(); }

  // Throws the exception a blocking call would throw, if stopped.
  void throw_if_stopped() const {
    if (state_.stop_requested()) state_.throw_cancelled();
  }

 private:
  cancel_scope(detail::cancel_state* parent, std::stop_token extra, clock::time_point deadline)
      : state_(parent, std::move(extra), deadline), installed_(&state_, "leash::cancel_scope") {}

  // An enclosing scope's own token adds nothing to the parent link, and
  // linking it twice would hide why the scope stopped.
  static std::stop_token unless_ambient(std::stop_token token) {
    for (detail::cancel_state* s = detail::ambient; s != nullptr; s = s->parent()) {
      if (s->token() == token) return {};
    }
    return token;
  }

  detail::cancel_state state_;
  detail::ambient_guard installed_;  // declared last: uninstalled first
};

namespace this_task {

// The ambient stop token: the innermost scope's or nursery's on this thread,
// or a token that never stops outside any scope.
inline std::stop_token stop_token() noexcept {
  return detail::ambient_token();
}

// Throws leash::cancelled if `token` is stopped.
inline void checkpoint(const std::stop_token& token) {
  detail::throw_if_stopped(token);
}
// Throws leash::cancelled if the ambient token is stopped.
inline void checkpoint() {
  checkpoint(stop_token());
}

// Sleeps until `deadline`. Blocks; cancellable; throws cancelled.
template <class Clock, class Duration>
void sleep_until(const std::chrono::time_point<Clock, Duration>& deadline,
                 const std::stop_token& token) {
  detail::throw_if_stopped(token);
  detail::blocked_scope blocked("this_task::sleep");
  std::mutex mutex;
  std::condition_variable cv;
  std::unique_lock lock(mutex);
  for (;;) {
    // Compare before subtracting (time_point::min() would overflow); convert
    // per round: a non-steady clock may be adjusted while we sleep.
    const auto now = Clock::now();
    if (deadline <= now) return;
    const auto left = deadline - now;
    const auto status =
        detail::wait_until(lock, cv, token, detail::deadline_after(left), [] { return false; });
    if (status == detail::wait_status::stopped) detail::throw_cancelled(token);
  }
}
template <class Clock, class Duration>
void sleep_until(const std::chrono::time_point<Clock, Duration>& deadline) {
  sleep_until(deadline, stop_token());
}

// Sleeps for `d`. Blocks; cancellable; throws cancelled.
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> d, const std::stop_token& token) {
  sleep_until(detail::deadline_after(d), token);
}
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> d) {
  sleep_for(d, stop_token());
}

}  // namespace this_task

// Runs fn() under a new scope stopped at `deadline`. Returns true if fn
// returned (even after the deadline passed), false if it was cancelled by this
// scope; a cancellation from an enclosing scope propagates.
template <class F>
bool move_on_at(std::chrono::steady_clock::time_point deadline, F&& fn) {
  cancel_scope scope(deadline);
  try {
    std::invoke(std::forward<F>(fn));
    return true;
  } catch (const cancelled&) {
    const stop_reason r = scope.reason();
    if (r == stop_reason::cancelled || r == stop_reason::deadline_exceeded) return false;
    throw;
  }
}

// move_on_at(now + d, fn).
template <class Rep, class Period, class F>
bool move_on_after(std::chrono::duration<Rep, Period> d, F&& fn) {
  return move_on_at(detail::deadline_after(d), std::forward<F>(fn));
}

// Runs fn() under a new scope stopped at `deadline` and returns its value, even
// if the deadline passed while it finished. Throws leash::deadline_exceeded only
// if this scope's deadline is what stopped fn; any other cancellation (outer
// scopes, explicit tokens) passes through unchanged.
template <class F>
std::invoke_result_t<F> fail_at(std::chrono::steady_clock::time_point deadline, F&& fn) {
  cancel_scope scope(deadline);
  try {
    return std::invoke(std::forward<F>(fn));
  } catch (const cancelled&) {
    if (scope.reason() == stop_reason::deadline_exceeded) scope.throw_if_stopped();
    throw;
  }
}

// fail_at(now + d, fn).
template <class Rep, class Period, class F>
std::invoke_result_t<F> fail_after(std::chrono::duration<Rep, Period> d, F&& fn) {
  return fail_at(detail::deadline_after(d), std::forward<F>(fn));
}

}  // namespace leash::inline v0
// ---- leash/must_close.hpp ----
// leash/must_close.hpp: resources that must be closed, and are, even when forgotten.
// Prevents: Go's `resp.Body` or Mongo cursor that nobody closed: the keep-alive
// connection is never reused, sockets and goroutines pile up, and nothing says
// which line opened it.
//
//   struct file { void close(); ... };              // any type with close()
//   leash::must_close<file> f = leash::make_must_close(file::open("log"));
//   f->write("hello");
//   f.close();          // throws the resource's close error; closed anyway
//   // Forgot f.close()? ~must_close closes it and reports, once per site:
//   //   leash::must_close: file opened at app.cpp:12 was destroyed open after 3ms; ...
//
// States. A handle is empty (default-constructed, moved from, released), open,
// or closed:
//
//   state   close()            try_close()        destructor               release() &&
//   empty   nothing            nullptr            nothing                  usage_error
//   open    R::close(), throws R::close(), returns closes it, reports    returns R, empty
//           its error; closed  its error; closed  (quiet when unwinding)
//   closed  nothing            nullptr            nothing                  returns R, empty
//
// A resource with `bool closed() const` that says true (a body read to EOF, an
// exhausted cursor) counts as closed: reaching the end is closing.
//
// Guarantees. Blocks: only inside R::close(). Throws: close() rethrows the
// resource's close error; accessing an empty handle throws usage_error; the
// destructor never throws and never terminates (unless the abort policy is
// installed). Thread-safe: one handle is used by one thread at a time, except
// that close() may race with the resource's own operations if R allows that;
// the counters and the handler setter are safe from any thread. Cost: two
// relaxed atomic increments, an atomic state change, a coarse clock read and
// a read of the exception count, about 10 ns per handle; the per-handle
// registry with sites is filled only while a leak_check lives.


#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#if defined(__linux__)
#include <time.h>  // clock_gettime(CLOCK_MONOTONIC_COARSE)
#endif

// ---- leash/detail/type_name.hpp ----
// leash/detail/type_name.hpp: a type's name as the compiler spells it, for
// reports ("must_close<file>", "blocked in channel<int>::recv").

#include <string_view>

namespace leash::inline v0::detail {

// From the compiler's signature of this function: g++ writes
// "... [with T = X; ...]", clang "... [T = X]", MSVC
// "... spelled_type_name<X>(void) noexcept". Empty when the compiler has none
// of these or the shape is not found (callers then print a generic name).
template <class T>
std::string_view spelled_type_name() noexcept {
#if defined(__GNUC__) || defined(__clang__)
  std::string_view f = __PRETTY_FUNCTION__;
  const auto start = f.find("T = ");
  if (start == std::string_view::npos) return {};
  f.remove_prefix(start + 4);
  return f.substr(0, f.find_first_of(";]"));
#elif defined(_MSC_VER)
  constexpr std::string_view prefix = "spelled_type_name<";
  std::string_view f = __FUNCSIG__;
  const auto start = f.find(prefix);
  const auto end = f.rfind(">(void)");
  if (start == std::string_view::npos || end == std::string_view::npos ||
      end < start + prefix.size())
    return {};
  return f.substr(start + prefix.size(), end - start - prefix.size());
#else
  return {};
#endif
}

}  // namespace leash::inline v0::detail
// ---- leash/detail/uncaught.hpp ----
// leash/detail/uncaught.hpp: std::uncaught_exceptions(), read in under a nanosecond.
//
// must_close and nursery read it at every construction, to tell a handle
// dropped by an unwinding exception from a forgotten one. The standard call
// goes into the shared C++ runtime, which reaches its per-thread exception
// block through __tls_get_addr: 7 ns here, a quarter of a whole open+close of
// a 64-byte heap resource. The Itanium C++ ABI (section 2.2.2), which g++ and
// clang follow on Linux and the BSDs, fixes that block's first two fields and
// gives its address by __cxa_get_globals(); the address is the thread's for
// its whole life. So each thread asks once and then reads the count directly.
// Elsewhere: the standard call.

#include <exception>

#if defined(__GLIBCXX__) && __has_include(<cxxabi.h>)
#include <cxxabi.h>
#define LEASH_ITANIUM_EH_GLOBALS 1
#endif

namespace leash::inline v0::detail {

#if defined(LEASH_ITANIUM_EH_GLOBALS)
// The ABI's __cxa_eh_globals: the caught-exception stack, then the count of
// exceptions thrown and not yet caught.
struct itanium_eh_globals {
  void* caught_exceptions;
  unsigned int uncaught_exceptions;
};

inline int uncaught_exceptions() noexcept {
  thread_local const itanium_eh_globals* const globals =
      reinterpret_cast<const itanium_eh_globals*>(abi::__cxa_get_globals());
  return static_cast<int>(globals->uncaught_exceptions);
}
#else
inline int uncaught_exceptions() noexcept {
  return std::uncaught_exceptions();
}
#endif

}  // namespace leash::inline v0::detail

namespace leash::inline v0 {

// A handle destroyed while open, as the unclosed handler sees it.
struct unclosed_handle {
  std::string type;                         // the resource's type
  source_location site;                     // the line that opened it
  std::chrono::steady_clock::duration age;  // how long it was open
  std::exception_ptr close_error;           // from the close leash did for it, if it failed
};

// What to do when a handle is destroyed open (it is closed in every case).
enum class unclosed_policy {
  report,  // print to stderr, once per opening site (the default)
  abort,   // print, then std::abort(): for tests and debug builds
  ignore,  // nothing (still counted in must_close_stats().dropped_open)
};

// A custom reaction. Runs on the thread that dropped the handle, inside its
// destructor: it must not throw.
using unclosed_handler = std::function<void(const unclosed_handle&)>;

// Process-wide counters, always on (relaxed atomics). Every opened handle ends
// in exactly one of closed, dropped_open, closed_by_unwind or released, or is
// still open.
struct must_close_counters {
  std::uint64_t opened = 0;
  std::uint64_t closed = 0;            // by close()/try_close(), or by reaching the end
  std::uint64_t dropped_open = 0;      // destroyed open: closed by leash and reported
  std::uint64_t closed_by_unwind = 0;  // destroyed open by an exception: closed, not reported
  std::uint64_t released = 0;          // handed back with release() while open
};

// A readable line: "<type> opened at <file:line> was destroyed open after <age>; ...".
inline std::string to_string(const unclosed_handle& h) {
  const double ms = std::chrono::duration<double, std::milli>(h.age).count();
  char age[32];
  if (ms < 1000) {
    std::snprintf(age, sizeof age, "%.0fms", ms);
  } else {
    std::snprintf(age, sizeof age, "%.1fs", ms / 1000);
  }
  std::string s = "leash::must_close: " + h.type + " opened at " + to_string(h.site) +
                  " was destroyed open after " + age + "; leash closed it";
  if (h.close_error) s += ", and its close failed: " + detail::describe_exception(h.close_error);
  return s;
}

namespace detail {

// When a handle was opened, for the age in reports. On Linux: the kernel's
// coarse monotonic clock, the same clock as steady_clock at the kernel tick's
// resolution (a few ms, always at or before steady_clock::now()), read in a
// few ns; a full steady_clock read was 70 % of a handle's whole cost.
// Elsewhere: steady_clock.
inline std::chrono::steady_clock::time_point open_time() noexcept {
#if defined(__linux__) && defined(CLOCK_MONOTONIC_COARSE)
  timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0) {
    return std::chrono::steady_clock::time_point(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
            std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
  }
#endif
  return std::chrono::steady_clock::now();
}

// now - opened, never negative.
inline std::chrono::steady_clock::duration age_of(std::chrono::steady_clock::time_point opened) {
  const auto now = std::chrono::steady_clock::now();
  return now > opened ? now - opened : std::chrono::steady_clock::duration::zero();
}

struct must_close_stats_block {
  std::atomic<std::uint64_t> opened{0};
  std::atomic<std::uint64_t> closed{0};
  std::atomic<std::uint64_t> dropped_open{0};
  std::atomic<std::uint64_t> closed_by_unwind{0};
  std::atomic<std::uint64_t> released{0};
};
// Constant-initialized: no guard variable on the hot path.
inline must_close_stats_block must_close_stats_v;

inline void count(std::atomic<std::uint64_t>& c) noexcept {
  c.fetch_add(1, std::memory_order_relaxed);
}

template <class T>
const std::string& type_name() {
  static const std::string name = [] {
    if constexpr (requires { std::string(T::must_close_name); }) {
      return std::string(T::must_close_name);
    } else {
      const std::string_view spelled = spelled_type_name<T>();
      return std::string(spelled.empty() ? "resource" : spelled);
    }
  }();
  return name;
}

struct unclosed_slot {
  std::mutex mutex;
  unclosed_handler handler;  // empty: the built-in report policy
  std::set<std::pair<std::string, std::uint_least32_t>> reported;  // sites, for report once
};

inline unclosed_slot& unclosed() {
  static auto* slot = new unclosed_slot;  // immortal: handles may die in static destruction
  return *slot;
}

inline void print_unclosed(const unclosed_handle& h, const char* hint) {
  std::fprintf(stderr, "%s%s\n", to_string(h).c_str(), hint);
  std::fflush(stderr);
}

inline void report_unclosed_once(const unclosed_handle& h) {
  {
    std::lock_guard lock(unclosed().mutex);
    if (!unclosed().reported.emplace(h.site.file, h.site.line).second) return;
  }
  print_unclosed(h, " (reported once per site; see leash::set_unclosed_handler)");
}

inline void report_unclosed(const unclosed_handle& h) noexcept {
  unclosed_handler handler;
  {
    std::lock_guard lock(unclosed().mutex);
    handler = unclosed().handler;
  }
  if (handler) {
    handler(h);
  } else {
    report_unclosed_once(h);
  }
}

}  // namespace detail

// Installs `handler` for handles destroyed open; returns the previous one. An
// empty function restores the default (report once per site).
inline unclosed_handler set_unclosed_handler(unclosed_handler handler) {
  std::lock_guard lock(detail::unclosed().mutex);
  return std::exchange(detail::unclosed().handler, std::move(handler));
}

// Installs one of the built-in policies; returns the previous handler.
inline unclosed_handler set_unclosed_handler(unclosed_policy policy) {
  switch (policy) {
    case unclosed_policy::report:
      return set_unclosed_handler(unclosed_handler{});
    case unclosed_policy::abort:
      return set_unclosed_handler([](const unclosed_handle& h) {
        detail::print_unclosed(h, " (unclosed_policy::abort)");
        std::abort();
      });
    case unclosed_policy::ignore:
      break;
  }
  return set_unclosed_handler([](const unclosed_handle&) {});
}

// A snapshot of the process-wide counters.
inline must_close_counters must_close_stats() noexcept {
  auto& s = detail::must_close_stats_v;
  auto get = [](const std::atomic<std::uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  return {get(s.opened), get(s.closed), get(s.dropped_open), get(s.closed_by_unwind),
          get(s.released)};
}

// What must_close<R> needs of R: a close() member. Optionally
// `bool closed() const`: true when the resource closed itself (reached its end).
template <class R>
concept closable = std::move_constructible<R> && requires(R& r) {
  r.close();
};
template <class R>
concept reports_closed = requires(const R& r) {
  { r.closed() } -> std::convertible_to<bool>;
};

// Owns a resource that must be closed. See the state table above.
template <class R>
class [[nodiscard]] must_close {
  static_assert(closable<R>, "leash::must_close<R>: R must be movable and have a close() member");

 public:
  using resource_type = R;

  // An empty handle: nothing to close.
  must_close() noexcept = default;

  // Takes ownership of an open resource; `site` is reported if it is dropped.
  [[nodiscard]] explicit must_close(R resource, source_location site = source_location::current())
      : resource_(std::move(resource)),
        site_(site),
        opened_(detail::open_time()),
        uncaught_(detail::uncaught_exceptions()),
        state_(open) {
    detail::count(detail::must_close_stats_v.opened);
    if (detail::leak_signal::instance().checking()) {
      id_ = detail::object_registry::instance().add(detail::object_snapshot::handle,
                                                    detail::type_name<R>(), site_);
    }
  }

  // The new handle owns what `other` owned; `other` is empty.
  must_close(must_close&& other) noexcept
      : resource_(std::move(other.resource_)),
        site_(other.site_),
        opened_(other.opened_),
        id_(std::exchange(other.id_, 0)),
        uncaught_(detail::uncaught_exceptions()),
        state_(other.state_.exchange(empty, std::memory_order_relaxed)) {
    other.resource_.reset();
  }

  // Drops what this handle owned (as its destructor would), then takes `other`'s.
  must_close& operator=(must_close&& other) noexcept {
    if (this == &other) return *this;
    drop();
    resource_ = std::move(other.resource_);
    other.resource_.reset();
    site_ = other.site_;
    opened_ = other.opened_;
    id_ = std::exchange(other.id_, 0);
    uncaught_ = detail::uncaught_exceptions();
    state_.store(other.state_.exchange(empty, std::memory_order_relaxed),
                 std::memory_order_relaxed);
    return *this;
  }

  must_close(const must_close&) = delete;
  must_close& operator=(const must_close&) = delete;

  // Open: closes the resource, then reports it (see unclosed_policy), unless
  // an exception is unwinding this scope: then it only counts it. Never throws.
  ~must_close() { drop(); }

  // Closes the resource once; later calls do nothing. Rethrows the resource's
  // close error; the handle is closed even then.
  void close() {
    if (std::exception_ptr e = try_close()) std::rethrow_exception(e);
  }

  // close() that returns the error instead of throwing it.
  std::exception_ptr try_close() noexcept {
    std::uint8_t expected = open;
    if (!state_.compare_exchange_strong(expected, closed, std::memory_order_acq_rel)) return {};
    unregister();
    detail::count(detail::must_close_stats_v.closed);
    return close_resource();
  }

  // Hands the resource back without closing it; the handle becomes empty.
  // Throws usage_error on an empty handle.
  [[nodiscard]] R release() && {
    const std::uint8_t was = state_.exchange(empty, std::memory_order_acq_rel);
    if (was == empty) throw usage_error("leash::must_close: release() of an empty handle");
    unregister();
    if (was == open) detail::count(detail::must_close_stats_v.released);
    R r = std::move(*resource_);
    resource_.reset();
    return r;
  }

  // The resource. Throws usage_error on an empty handle.
  R& get() {
    if (!resource_) throw usage_error("leash::must_close: access to an empty handle");
    return *resource_;
  }
  const R& get() const {
    if (!resource_) throw usage_error("leash::must_close: access to an empty handle");
    return *resource_;
  }
  R* operator->() { return &get(); }
  const R* operator->() const { return &get(); }
  R& operator*() { return get(); }
  const R& operator*() const { return get(); }

  // True while the handle owns a resource that nobody closed yet.
  bool is_open() const noexcept {
    if (state_.load(std::memory_order_acquire) != open) return false;
    if constexpr (reports_closed<R>) return !resource_->closed();
    return true;
  }
  // False for an empty (default, moved-from or released) handle.
  bool valid() const noexcept { return state_.load(std::memory_order_acquire) != empty; }
  // The line that opened the resource.
  const source_location& site() const noexcept { return site_; }
  std::chrono::steady_clock::time_point opened_at() const noexcept { return opened_; }

 private:
  enum : std::uint8_t { empty, open, closed };

  // Leaves the handle closed or empty; a resource still open is closed and
  // reported as the destructor describes.
  void drop() noexcept {
    // Most handles are closed by now: a load is cheaper than a failing CAS.
    if (state_.load(std::memory_order_relaxed) != open) return;
    std::uint8_t expected = open;
    if (!state_.compare_exchange_strong(expected, closed, std::memory_order_acq_rel)) return;
    unregister();
    if constexpr (reports_closed<R>) {
      if (resource_->closed()) {  // it reached its end: that was the close
        detail::count(detail::must_close_stats_v.closed);
        return;
      }
    }
    std::exception_ptr error = close_resource();
    if (detail::uncaught_exceptions() > uncaught_) {  // not forgotten: an exception cut it short
      detail::count(detail::must_close_stats_v.closed_by_unwind);
      return;
    }
    detail::count(detail::must_close_stats_v.dropped_open);
    try {
      detail::report_unclosed(
          {detail::type_name<R>(), site_, detail::age_of(opened_), std::move(error)});
    } catch (...) {
      // Out of memory while describing it: the resource is closed, which matters more.
    }
  }

  std::exception_ptr close_resource() noexcept {
    if constexpr (reports_closed<R>) {
      if (resource_->closed()) return {};
    }
    try {
      resource_->close();
      return {};
    } catch (...) {
      return std::current_exception();
    }
  }

  void unregister() noexcept {
    if (id_ != 0) detail::object_registry::instance().remove(std::exchange(id_, 0));
  }

  std::optional<R> resource_;  // engaged unless empty
  source_location site_;
  std::chrono::steady_clock::time_point opened_{};
  std::uint64_t id_ = 0;  // in the object registry (only while a leak check lived), or 0
  int uncaught_ = 0;      // detail::uncaught_exceptions() when this handle was made
  // empty, open or closed; atomic so that close() may race a reader of
  // is_open() (a body closed from another thread).
  std::atomic<std::uint8_t> state_{empty};
};

// Wraps `resource` in a must_close handle opened at the caller's line.
template <class R>
[[nodiscard]] must_close<std::decay_t<R>> make_must_close(
    R&& resource, source_location site = source_location::current()) {
  return must_close<std::decay_t<R>>(std::forward<R>(resource), site);
}

}  // namespace leash::inline v0

namespace leash::inline v0 {

// Where a body's bytes come from. Implemented by transports (over a socket)
// and by memory_source. leash calls read() from one thread at a time, and
// close() exactly once, never while a read() runs.
class body_source {
 public:
  virtual ~body_source() = default;

  // Reads up to out.size() (at least 1) bytes; returns 0 only at the end of
  // the body. Blocks until a byte or the end arrives, and must return or throw
  // promptly once `stop` is stopped (the caller was cancelled, or the body was
  // closed by another thread): leash then ignores what it returned and reports
  // cancelled or body_closed itself.
  virtual std::size_t read(std::span<std::byte> out, std::stop_token stop) = 0;

  // Releases the source. `at_end`: every byte was read. May throw: that is the
  // body's close error.
  virtual void close(bool at_end) = 0;
};

// An in-memory body_source, for tests and examples. `chunk` caps the bytes one
// read() returns (0 for no cap), so readers see several reads.
class memory_source final : public body_source {
 public:
  explicit memory_source(std::string data, std::size_t chunk = 0)
      : data_(std::move(data)), chunk_(chunk) {}

  std::size_t read(std::span<std::byte> out, std::stop_token) override {
    std::size_t n = std::min(out.size(), data_.size() - offset_);
    if (chunk_ != 0) n = std::min(n, chunk_);
    std::memcpy(out.data(), data_.data() + offset_, n);
    offset_ += n;
    return n;
  }

  void close(bool) override {}

 private:
  std::string data_;
  std::size_t chunk_;
  std::size_t offset_ = 0;
};

namespace detail {

// The resource inside a body's must_close handle. Its state lives on the heap
// so that close() on another thread and a running read() share it safely.
class body_stream {
 public:
  static constexpr const char* must_close_name = "leash::body";

  explicit body_stream(std::unique_ptr<body_source> source)
      : s_(std::make_unique<shared>(std::move(source))) {}

  std::size_t read(std::span<std::byte> out, const std::stop_token& token) {
    shared& s = *s_;
    {
      std::lock_guard lock(s.mutex);
      if (s.closed) throw body_closed("leash::body: read after close");
      if (s.reading) throw usage_error("leash::body: two reads at once");
      if (out.empty()) return 0;
      s.reading = true;
    }
    std::size_t n = 0;
    std::exception_ptr error;
    {
      // The source sees one token that stops when the caller is cancelled or
      // the body is closed by another thread.
      std::stop_source stop;
      auto forward = [&stop] { stop.request_stop(); };
      std::stop_callback<decltype(forward)> on_cancel(token, forward);
      std::stop_callback<decltype(forward)> on_close(s.close_source.get_token(), forward);
      try {
        n = s.source->read(out, stop.get_token());
      } catch (...) {
        error = std::current_exception();
      }
    }
    std::unique_lock lock(s.mutex);
    s.reading = false;
    s.read_done.notify_all();
    if (s.closed) throw body_closed("leash::body: closed while a read was waiting");
    if (error || token.stop_requested()) {  // a cancelled read's result is dropped
      lock.unlock();
      if (token.stop_requested()) throw_cancelled(token);
      std::rethrow_exception(error);
    }
    if (n == 0) {  // the end: reaching it is closing
      s.closed = true;
      s.at_end = true;
      s.source_closed = true;
      lock.unlock();
      s.source->close(true);  // its error is thrown by the read that hit the end
    }
    return n;
  }

  // Closes the source once; wakes a blocked read first and waits for it to
  // leave the source.
  void close() {
    shared& s = *s_;
    {
      std::lock_guard lock(s.mutex);
      if (s.source_closed) return;
      s.closed = true;
    }
    s.close_source.request_stop();  // unlocked: the stop callbacks take locks
    bool at_end = false;
    {
      std::unique_lock lock(s.mutex);
      s.read_done.wait(lock, [&] { return !s.reading; });
      if (s.source_closed) return;
      s.source_closed = true;
      at_end = s.at_end;
    }
    s.source->close(at_end);
  }

  bool closed() const {
    std::lock_guard lock(s_->mutex);
    return s_->source_closed;
  }

 private:
  struct shared {
    explicit shared(std::unique_ptr<body_source> src) : source(std::move(src)) {}

    std::unique_ptr<body_source> source;
    std::stop_source close_source;  // stopped by close(): wakes a blocked read
    mutable std::mutex mutex;       // guards the flags below
    std::condition_variable read_done;
    bool reading = false;        // a read() is inside the source
    bool closed = false;         // no more reads: close() started or EOF reached
    bool at_end = false;         // EOF was reached
    bool source_closed = false;  // source->close() was called (or is being called)
  };
  std::unique_ptr<shared> s_;
};

}  // namespace detail

// A readable byte stream that must be closed. See the table above.
class [[nodiscard]] body {
 public:
  // An empty body: every read throws body_closed.
  body() = default;

  // Owns `source`; `site` is reported if the body is dropped open.
  [[nodiscard]] explicit body(std::unique_ptr<body_source> source,
                              source_location site = source_location::current())
      : handle_(detail::body_stream(std::move(source)), site) {}

  // Reads up to out.size() bytes; returns 0 at EOF, which closes the body (and
  // throws the source's close error, if any). Blocks; cancellable; throws
  // body_closed, cancelled, the source's errors.
  std::size_t read(std::span<std::byte> out) { return read(out, detail::ambient_token_ref()); }
  std::size_t read(std::span<std::byte> out, const std::stop_token& token) {
    if (!handle_.valid()) throw body_closed("leash::body: read from an empty body");
    return handle_->read(out, token);
  }
  std::size_t read(std::span<char> out) { return read(std::as_writable_bytes(out)); }
  std::size_t read(std::span<char> out, const std::stop_token& token) {
    return read(std::as_writable_bytes(out), token);
  }

  // Reads to EOF (which closes the body) and returns the bytes. More than
  // max_bytes: closes the body and throws body_too_large. Blocks; cancellable.
  std::string read_all(std::size_t max_bytes) {
    return read_all(max_bytes, detail::ambient_token_ref());
  }
  std::string read_all(std::size_t max_bytes, const std::stop_token& token) {
    std::string out;
    char buf[16 * 1024];
    while (std::size_t n = read(std::span<char>(buf), token)) {
      if (n > max_bytes - out.size()) {
        (void)handle_.try_close();  // the size error is the one to report
        throw body_too_large("leash::body: more than " + std::to_string(max_bytes) + " bytes");
      }
      out.append(buf, n);
    }
    return out;
  }

  // Reads and drops everything up to EOF (which closes the body); returns the
  // count. Blocks; cancellable.
  std::size_t discard() { return discard(detail::ambient_token_ref()); }
  std::size_t discard(const std::stop_token& token) {
    std::size_t total = 0;
    char buf[16 * 1024];
    while (std::size_t n = read(std::span<char>(buf), token))
      total += n;
    return total;
  }

  // Closes the body; later calls do nothing. A read blocked on another thread
  // wakes with body_closed. Throws the source's close error (closed anyway).
  void close() { handle_.close(); }
  // close() that returns the error instead of throwing it.
  std::exception_ptr try_close() noexcept { return handle_.try_close(); }

  // True once closed, read to EOF, or empty (a snapshot).
  bool closed() const { return !handle_.is_open(); }
  // The line that opened the body.
  const source_location& site() const noexcept { return handle_.site(); }

 private:
  must_close<detail::body_stream> handle_;
};

// A body over a copy of `data` (memory_source), opened at the caller's line.
[[nodiscard]] inline body memory_body(std::string data, std::size_t chunk = 0,
                                      source_location site = source_location::current()) {
  return body(std::make_unique<memory_source>(std::move(data), chunk), site);
}

}  // namespace leash::inline v0
// ---- leash/channel.hpp ----
// leash/channel.hpp: a closable MPMC channel, Go's chan for OS threads.
// Prevents: goroutines blocked forever on a channel nobody will serve (every
// blocking call here is cancellable by its scope).
//
//   leash::channel<std::string> ch(16);   // capacity 0: unbuffered rendezvous
//   leash::run_nursery([&](leash::nursery& n) {
//     n.spawn([&] {
//       for (auto& line : lines) ch.send(line);
//       ch.close();                         // receivers drain, then see the end
//     });
//     for (std::string& line : ch) use(line);
//   });
//
//   state              send / try_send            recv / try_recv            close()
//   open, values       buffers or hands off       takes the oldest value     -> closed; true
//   open, empty        waits for room / receiver  waits for a value          -> closed; true
//   closed, values     throws channel_closed      takes the oldest value     false
//   closed, drained    throws channel_closed      nullopt (status closed)    false
//
// Closing wakes every blocked sender (channel_closed) and every blocked
// receiver (nullopt: a receiver only waits when nothing is buffered).
//
// Guarantees. Blocks: send, recv, iteration, try_*_for. Cancelled: by the
// ambient token (leash::this_task::stop_token()) or an explicit one; a stop
// that races an operation already matched loses, and the value is delivered.
// Throws: channel_closed, cancelled / deadline_exceeded. A send that throws
// leaves the caller's value untouched. Thread-safe: every member, from any
// number of threads. Ordering: FIFO per channel; a send happens-before the
// recv that takes its value. Never allocates after construction.


#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <iterator>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

// ---- leash/detail/ring.hpp ----
// leash/detail/ring.hpp: the lock-free bounded MPMC ring under a buffered channel.
//
// Dmitry Vyukov's bounded queue: each slot carries a sequence number that
// says whose turn it is (a producer of lap k, or the consumer of that value),
// producers claim positions with a CAS on tail, consumers on head. Producers
// and consumers share no word except the slots they hand over, so a buffered
// channel's senders and receivers stop queueing on one lock (with one lock,
// four producers and a consumer spent 3x longer per item on this VM).
//
// Two additions over the textbook queue. Closing sets the low bit of tail, so
// a push either lands before the close or fails with `closed`, atomically.
// And full / empty are exact: a slot whose producer (or consumer) has claimed
// it but not yet published is waited for, not reported as empty (or full), so
// "closed and empty" really means drained. That wait is for another thread's
// two instructions; it yields after a few rounds in case that thread was
// preempted in between.
//
// Memory order: claiming a position (the CAS on tail or head) and reading the
// other end are sequentially consistent, so that a channel's handshake with
// its waiters (channel.hpp) needs no fence: on x86 that costs nothing more,
// a CAS is a full barrier anyway and a load is a load.
//
// Thread-safe: every member. Capacity >= 1; T is nothrow move constructible.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

// ---- leash/detail/spin.hpp ----
// leash/detail/spin.hpp: the two facts every spin loop in leash needs.
//
// cpu_relax() is the CPU's spin-wait hint. usable_cpus() is how many CPUs this
// process may run on: spinning only pays while the thread it waits for runs
// on another CPU, so with one usable CPU (`taskset -c 0`, a one-CPU
// container) leash does not spin at all, as Go's scheduler does not.

#if defined(__linux__)
#include <sched.h>
#endif

#include <algorithm>
#include <thread>

namespace leash::inline v0::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Read once: the affinity mask on Linux (so `taskset -c 0` counts as one CPU),
// else the hardware's count.
inline int usable_cpus() noexcept {
  static const int cpus = [] {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }();
  return cpus;
}

}  // namespace leash::inline v0::detail

namespace leash::inline v0::detail {

template <class T>
class ring {
  static_assert(std::is_nothrow_move_constructible_v<T>);

 public:
  enum class push_result { ok, full, closed };

  explicit ring(std::size_t capacity)
      : capacity_(capacity), slots_(std::make_unique<slot[]>(capacity)) {
    for (std::size_t i = 0; i < capacity_; ++i)
      slots_[i].seq.store(free_for(i), std::memory_order_relaxed);
  }
  ~ring() {
    std::optional<T> v;
    while (try_pop(v))
      v.reset();
  }
  ring(const ring&) = delete;
  ring& operator=(const ring&) = delete;

  // Moves `value` in (only on ok), or says the ring is full or closed.
  push_result try_push(T& value) noexcept {
    std::size_t t = tail_.load(std::memory_order_relaxed);
    for (int round = 0;; ++round) {
      if ((t & closed_bit) != 0) return push_result::closed;
      const std::size_t pos = t >> 1;
      slot& s = slots_[pos % capacity_];
      const std::size_t seq = s.seq.load(std::memory_order_acquire);
      const auto lag = static_cast<std::ptrdiff_t>(seq - free_for(pos));
      if (lag == 0) {  // the slot is free for this position
        if (tail_.compare_exchange_weak(t, t + 2, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
          ::new (static_cast<void*>(s.bytes)) T(std::move(value));
          s.seq.store(holds(pos), std::memory_order_release);
          return push_result::ok;
        }
        continue;  // t was reloaded by the failed CAS
      }
      if (lag < 0) {  // the slot still holds last lap's value
        // Full, unless its consumer has claimed it and is moving it out.
        if (head_.load(std::memory_order_seq_cst) + capacity_ <= pos) return push_result::full;
        pause(round);
      }
      t = tail_.load(std::memory_order_relaxed);
    }
  }

  // Moves the oldest value into `out`; false when the ring is empty.
  bool try_pop(std::optional<T>& out) noexcept {
    std::size_t pos = head_.load(std::memory_order_relaxed);
    for (int round = 0;; ++round) {
      slot& s = slots_[pos % capacity_];
      const std::size_t seq = s.seq.load(std::memory_order_acquire);
      const auto lag = static_cast<std::ptrdiff_t>(seq - holds(pos));
      if (lag == 0) {  // a value is published here
        if (head_.compare_exchange_weak(pos, pos + 1, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
          T* p = std::launder(reinterpret_cast<T*>(s.bytes));
          out.emplace(std::move(*p));
          p->~T();
          s.seq.store(free_for(pos + capacity_), std::memory_order_release);
          return true;
        }
        continue;  // pos was reloaded by the failed CAS
      }
      if (lag < 0) {  // nothing published at pos
        // Empty, unless its producer has claimed it and is writing it.
        if ((tail_.load(std::memory_order_seq_cst) >> 1) == pos) return false;
        pause(round);
      }
      pos = head_.load(std::memory_order_relaxed);
    }
  }

  // Later pushes fail with `closed`; values already in stay poppable.
  void close() noexcept { tail_.fetch_or(closed_bit, std::memory_order_acq_rel); }

  // Snapshots.
  std::size_t size() const noexcept {
    const std::size_t tail = tail_.load(std::memory_order_seq_cst) >> 1;
    const std::size_t head = head_.load(std::memory_order_seq_cst);
    return tail > head ? tail - head : 0;
  }
  bool has_room() const noexcept { return size() < capacity_; }
  bool closed() const noexcept { return (tail_.load(std::memory_order_acquire) & closed_bit) != 0; }

 private:
  static constexpr std::size_t closed_bit = 1;

  // A slot's sequence number: free for the push at position p, or holding
  // the value pushed at p. Even and odd, so that the two never coincide
  // (with pos + 1 for "holds", a ring of capacity 1 could not tell a value
  // from a free slot of the next lap).
  static constexpr std::size_t free_for(std::size_t pos) noexcept { return 2 * pos; }
  static constexpr std::size_t holds(std::size_t pos) noexcept { return 2 * pos + 1; }

  struct slot {
    std::atomic<std::size_t> seq;
    alignas(T) unsigned char bytes[sizeof(T)];
  };

  // Waiting for a claimed slot to be published: pause, then yield.
  static void pause(int round) noexcept {
    if (round < 64) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }

  const std::size_t capacity_;
  std::unique_ptr<slot[]> slots_;
  // Apart, so that producers and consumers do not share a cache line.
  alignas(64) std::atomic<std::size_t> tail_{0};  // next push position * 2 | closed bit
  alignas(64) std::atomic<std::size_t> head_{0};  // next pop position
};

}  // namespace leash::inline v0::detail
// ---- leash/detail/waiter.hpp ----
// leash/detail/waiter.hpp: how a blocked channel operation or select waits.
//
// A blocked send, recv or select owns one `waiter` on its stack and queues one
// `wait_node` per case in the channels involved. Whoever completes it (a
// partner operation, close(), a stop request, the deadline) must first win the
// waiter's single atomic word, so a thread waiting on several channels is
// matched exactly once:
//
//   waiting --partner claims--> busy --partner completed the node--> fired(case)
//   waiting --stop callback / deadline--> stopped / timed_out
//
// `busy` is only ever entered by a partner that holds the channel lock and
// will fire the node: with the value moved, or as closed, or (a buffered
// channel's value or slot taken by a lock-free operation first) with `retry`
// set. There is no way back to `waiting`: a stop that arrives after the claim
// loses, and a moved value is delivered, never dropped.
//
// Waiting spins briefly, then yields, then parks on a mutex + condition
// variable. The parked bit tells a completer that it must wake the waiter
// under the mutex; once parked, the waiter reads its word only under that
// mutex, so it cannot return (and free the waiter) while a completer still
// touches it.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>


namespace leash::inline v0::detail {

// A test-and-test-and-set lock for the tiny critical sections of a channel
// (a few pointer updates and one move of an element). It yields after a short
// spin: on an oversubscribed machine the holder may be preempted, and yielding
// lets it run instead of burning the CPU it needs.
class spinlock {
 public:
  void lock() noexcept {
    while (locked_.exchange(true, std::memory_order_acquire)) {
      for (int spins = 0; locked_.load(std::memory_order_relaxed); ++spins) {
        if (spins < 64) {
          cpu_relax();
        } else {
          std::this_thread::yield();
        }
      }
    }
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};

// How many waiters may pause-spin at once: one fewer than the CPUs this
// process may run on. Spinning only helps while the partner runs on another
// CPU; with more spinners than that (one CPU, or many blocked threads) they
// would only take CPU time from the partners they wait for. Go's runtime
// applies the same rule (no spinning on one CPU, bounded spinning Ms).
class spin_slots {
 public:
  static bool try_acquire() noexcept {
    if (count().fetch_add(1, std::memory_order_relaxed) < usable_cpus() - 1) return true;
    count().fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  static void release() noexcept { count().fetch_sub(1, std::memory_order_relaxed); }

 private:
  static std::atomic<int>& count() noexcept {
    static std::atomic<int> spinning{0};
    return spinning;
  }
};

// How long a waiter of this thread pauses before it parks: long (1024
// pauses, 20-50 us on the development VM) while spinning pays off on this
// thread, short (64) while it does not, with a long probe every
// 16th wait so that a quieter machine is noticed. Measured on unbuffered
// ping-pong: 256 pauses left many hand-offs parked (1.5 us per round trip)
// and 1024 matched Go (0.5 us) on a quiet machine; but on an oversubscribed
// one the partner is often not running at all, and a long spin only delays it
// (35 us per round trip, against 12 us for parking at once).
class spin_budget {
 public:
  static int pause_rounds() noexcept {
    state& s = local();
    s.long_spin = s.score >= 64 || ++s.since_probe % 16 == 0;
    return s.long_spin ? 1024 : 64;
  }
  // Whether the wait ended without parking.
  static void record(bool paid_off) noexcept {
    state& s = local();
    if (paid_off) {
      s.score += (256 - s.score) / 8;
    } else if (s.long_spin) {
      s.score -= s.score / 8;  // a short spin that failed says nothing about a long one
    }
  }

 private:
  struct state {
    int score = 256;  // moving average of long spins that paid off, out of 256
    bool long_spin = true;
    unsigned since_probe = 0;
  };
  static state& local() noexcept {
    thread_local state s;
    return s;
  }
};

// What a thread parks on: made on the thread's first park and reused by all
// its waiters, since a thread waits for one waiter at a time. A waiter is made
// by every blocking-capable channel call, even one that completes at once, and
// destroying a condition variable per call (pthread_cond_destroy) was 17 % of
// a buffered 4x4 MPMC run.
struct parker {
  std::mutex mutex;
  std::condition_variable cv;
  static parker& of_this_thread() noexcept {
    thread_local parker p;
    return p;
  }
};

class waiter {
 public:
  using clock = std::chrono::steady_clock;

  enum class outcome { fired, stopped, timed_out };

  // Partner side, under the lock of a channel where one of this waiter's
  // nodes is queued: claims the waiter if it still waits. Follow with fire()
  // in every case (the node completed, closed, or marked retry).
  bool try_claim() noexcept {
    std::uint32_t s = state_.load(std::memory_order_relaxed);
    while ((s & status_mask) == waiting) {
      if (state_.compare_exchange_weak(s, (s & parked_bit) | busy, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }

  // True while nobody has claimed, stopped or timed out this waiter. A hint
  // under a channel lock: only a stop request can change it meanwhile.
  bool still_waiting() const noexcept {
    return (state_.load(std::memory_order_relaxed) & status_mask) == waiting;
  }

  // Completes a claim: case `index` fired. The waiter may return (and free
  // this object) as soon as it sees the new state, so nothing touches `this`
  // after the final store except under the parker's mutex, which a parked
  // waiter needs to leave (and the parker lives as long as its thread).
  void fire(std::uint32_t index) noexcept {
    const std::uint32_t done = fired | (index << index_shift);
    std::uint32_t expected = busy;
    // Acquire on failure: the parked bit seen then was set after parker_.
    if (state_.compare_exchange_strong(expected, done, std::memory_order_release,
                                       std::memory_order_acquire)) {
      return;  // it was not parked: it sees the store while spinning
    }
    parker& p = *parker_;
    std::lock_guard lock(p.mutex);
    state_.store(done, std::memory_order_release);
    p.cv.notify_one();
  }

  // The index passed to fire(), once wait() returned fired.
  std::uint32_t fired_index() const noexcept {
    return state_.load(std::memory_order_relaxed) >> index_shift;
  }

  // Waits until fired, `token` is stopped, or `deadline` passes. A claim that
  // happened first wins over a stop or a deadline.
  outcome wait(const std::stop_token& token, clock::time_point deadline) {
    // Spin phase (see spin_slots): a partner on another CPU usually answers
    // within a few microseconds, while parking costs a futex wake of 5-10 us
    // on each side. First a quick look of 32 pauses (0.9 us here at 27 ns a
    // pause; ~1.5 us on CPUs with a slower pause), which needs no slot: a
    // partner that is running answers within it (ping-pong: ~0.3 us per round
    // trip), and the shared slot count it avoids is a cache line that both
    // partners would otherwise move on every hand-off (ping-pong took ~0.5 us
    // with it). Then pauses while a spinning slot is free, or a few yields
    // (which hand the CPU to a partner that shares it), then park.
    if (usable_cpus() > 1) {
      for (int i = 0; i < quick_pauses; ++i) {
        const std::uint32_t s = state_.load(std::memory_order_acquire);
        if (terminal(s)) return decode(s);
        cpu_relax();
      }
    }
    bool spins = spin_slots::try_acquire();
    // The slot is often held for a moment by the partner that is about to
    // answer (ping-pong: it was waiting a moment ago and is leaving), so look
    // again a few times, 16 pauses apart (well under a microsecond), before
    // settling for yields. Never with one usable CPU: no slot exists there.
    for (int k = 0; !spins && k < slot_retries && usable_cpus() > 1; ++k) {
      for (int p = 0; p < 16; ++p)
        cpu_relax();
      const std::uint32_t s = state_.load(std::memory_order_acquire);
      if (terminal(s)) return decode(s);
      spins = spin_slots::try_acquire();
    }
    // Either pauses or yields, not both: a yield on a loaded machine hands the
    // CPU to another process for a whole time slice, so it only pays when no
    // CPU is free for spinning and the partner most likely shares ours.
    const int pauses = spins ? spin_budget::pause_rounds() : 0;
    const int yields = spins ? 0 : yield_rounds;
    for (int i = 0; i < pauses + yields; ++i) {
      const std::uint32_t s = state_.load(std::memory_order_acquire);
      if (terminal(s)) {
        if (spins) {
          spin_slots::release();
          spin_budget::record(true);
        }
        return decode(s);
      }
      if (i % 64 == 0) {
        if (token.stop_requested() && give_up(stopped)) break;
        if (deadline != clock::time_point::max() && clock::now() >= deadline &&
            give_up(timed_out)) {
          break;
        }
      }
      if (i < pauses) {
        cpu_relax();
      } else {
        std::this_thread::yield();
      }
    }
    if (spins) spin_slots::release();
    const std::uint32_t s = state_.load(std::memory_order_acquire);
    if (terminal(s)) return decode(s);
    if (spins) spin_budget::record(false);
    return park(token, deadline);
  }

 private:
  static constexpr std::uint32_t waiting = 0, busy = 1, fired = 2, stopped = 3, timed_out = 4;
  static constexpr std::uint32_t status_mask = 0x7, parked_bit = 0x8, index_shift = 4;
  static constexpr int yield_rounds = 8;
  static constexpr int slot_retries = 4;
  static constexpr int quick_pauses = 32;

  static bool terminal(std::uint32_t s) noexcept {
    const std::uint32_t st = s & status_mask;
    return st == fired || st == stopped || st == timed_out;
  }
  static outcome decode(std::uint32_t s) noexcept {
    switch (s & status_mask) {
      case fired:
        return outcome::fired;
      case stopped:
        return outcome::stopped;
      default:
        return outcome::timed_out;
    }
  }

  // waiting -> why, keeping the parked bit out (the waiter is awake).
  bool give_up(std::uint32_t why) noexcept {
    std::uint32_t s = state_.load(std::memory_order_relaxed);
    while ((s & status_mask) == waiting) {
      if (state_.compare_exchange_weak(s, why, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }

  struct on_stop {
    waiter* self;
    // Under the parker's mutex, which the parked waiter needs before it can
    // return (see stop_hook_node for fired()).
    template <class Fired>
    void operator()(Fired mark_fired) const noexcept {
      std::lock_guard lock(self->parker_->mutex);
      if (self->give_up(stopped)) self->parker_->cv.notify_one();
      mark_fired();
    }
  };

  outcome park(const std::stop_token& token, clock::time_point deadline) {
    parker_ = &parker::of_this_thread();
    std::optional<stop_hook<on_stop>> stop_link;
    if (token.stop_possible()) stop_link.emplace(token, on_stop{this});  // may run inline
    std::unique_lock lock(parker_->mutex);
    std::uint32_t s = state_.load(std::memory_order_acquire);
    while (!terminal(s) && (s & parked_bit) == 0) {
      state_.compare_exchange_weak(s, s | parked_bit, std::memory_order_acq_rel);
    }
    while (!terminal(s = state_.load(std::memory_order_acquire))) {
      // A notify meant for an earlier waiter of this thread is harmless: the
      // loop checks this waiter's state.
      if (deadline == clock::time_point::max()) {
        parker_->cv.wait(lock);
      } else if (parker_->cv.wait_until(lock, deadline) == std::cv_status::timeout) {
        // Lost to a claim in progress? Then its fire() will wake us.
        if (!give_up(timed_out)) deadline = clock::time_point::max();
      }
    }
    lock.unlock();
    stop_link.reset();  // waits for a running callback; it needs the mutex
    return decode(s);
  }

  std::atomic<std::uint32_t> state_{waiting};  // status | parked bit | fired index
  // The owning thread's parker, set before it parks; once parked, state_ is
  // read and written under its mutex.
  parker* parker_ = nullptr;
};

// One case of a blocked operation, queued in one channel. Lives on the
// waiting thread's stack (inside the case object), so queuing never allocates.
struct wait_node {
  waiter* owner = nullptr;
  std::uint32_t index = 0;  // the case it stands for
  void* item = nullptr;     // receive: std::optional<T>* to fill; send: T* to move from
  bool closed = false;      // completed by close(): a send fails
  // Woken without a value handed over, so try again: the buffer changed (a
  // value or room arrived but a lock-free operation took it first, or the
  // channel closed with values left).
  bool retry = false;
  // Channel queue links, guarded by the channel's lock.
  wait_node* prev = nullptr;
  wait_node* next = nullptr;
  bool queued = false;
};

// Completes claimed nodes, linked through `next` (the queue links are free
// once a node is dequeued and claimed), after the channel lock is released.
inline void fire_all(wait_node* n) noexcept {
  while (n != nullptr) {
    wait_node* next = n->next;  // read first: once fired, the node may be gone
    n->owner->fire(n->index);
    n = next;
  }
}

// A FIFO of wait nodes; guarded by its channel's lock, except queued(), which
// a lock-free buffer operation reads to learn whether anyone waits.
class wait_queue {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  wait_node* front() const noexcept { return head_; }

  // How many nodes are queued; sequentially consistent, for the handshake
  // between a lock-free push or pop and a waiter queueing (see channel.hpp).
  std::size_t queued() const noexcept { return queued_.load(std::memory_order_seq_cst); }

  void push_back(wait_node* n) noexcept {
    queued_.fetch_add(1, std::memory_order_seq_cst);
    n->prev = tail_;
    n->next = nullptr;
    if (tail_ != nullptr) {
      tail_->next = n;
    } else {
      head_ = n;
    }
    tail_ = n;
    n->queued = true;
  }

  void remove(wait_node* n) noexcept {
    if (!n->queued) return;
    queued_.fetch_sub(1, std::memory_order_relaxed);
    if (n->prev != nullptr) {
      n->prev->next = n->next;
    } else {
      head_ = n->next;
    }
    if (n->next != nullptr) {
      n->next->prev = n->prev;
    } else {
      tail_ = n->prev;
    }
    n->prev = n->next = nullptr;
    n->queued = false;
  }

  // Removes queued nodes until one can be claimed; returns it, or nullptr.
  // Nodes that cannot be claimed belong to waiters already completed through
  // another case, stopped or timed out: they will never be matched again.
  wait_node* claim_front() noexcept {
    while (wait_node* n = head_) {
      remove(n);
      if (n->owner->try_claim()) return n;
    }
    return nullptr;
  }

  // True if some queued node could still be claimed.
  bool has_waiting() const noexcept {
    for (wait_node* n = head_; n != nullptr; n = n->next) {
      if (n->owner->still_waiting()) return true;
    }
    return false;
  }

 private:
  wait_node* head_ = nullptr;
  wait_node* tail_ = nullptr;
  std::atomic<std::size_t> queued_{0};
};

}  // namespace leash::inline v0::detail

namespace leash::inline v0 {

// What a non-blocking or timed channel operation did.
enum class channel_status {
  ok,       // the value was sent or received
  full,     // try_send: no room and no receiver waiting; the value is still yours
  empty,    // try_recv: nothing buffered and no sender waiting
  closed,   // the channel is closed (and, for a receive, drained)
  timeout,  // try_send_for / try_recv_for: the time ran out
};

// The outcome of try_recv / try_recv_for: a value only when status is ok.
template <class T>
struct recv_result {
  channel_status status = channel_status::empty;
  std::optional<T> value;
  explicit operator bool() const noexcept { return status == channel_status::ok; }
};

template <class T>
class channel;

namespace detail {
template <class T>
struct channel_access;

// What an attempt through a channel's lock-free buffer alone found: done, no
// value or no room, or a state only the locked path can judge (unbuffered,
// closed, receivers waiting).
enum class lock_free_result { done, not_ready, ask_lock };
}  // namespace detail

template <class T>
class channel {
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "leash::channel<T>: T must be nothrow move constructible (values move under the "
                "channel's lock, and a throwing move could lose one)");

 public:
  // A channel holding up to `capacity` values; 0 makes every send a
  // rendezvous with a receiver. Allocates the buffer once, here.
  explicit channel(std::size_t capacity = 0)
      : capacity_(capacity),
        ring_(capacity != 0 ? std::make_unique<detail::ring<T>>(capacity) : nullptr) {}

  // Precondition: no operation is blocked on this channel (a blocked call
  // would wait on freed memory); checked, and a violation terminates.
  ~channel() {
    if (!recv_waiters_.empty() || !send_waiters_.empty()) {
      std::fputs("leash::channel: destroyed while a send, recv or select waits on it\n", stderr);
      std::terminate();
    }
  }

  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  // Sends `value`: hands it to a waiting receiver, or buffers it, or waits for
  // either. Blocks; cancellable; throws channel_closed or cancelled, and then
  // `value` is untouched.
  void send(T&& value) { send(std::move(value), detail::ambient_token_ref()); }
  void send(T&& value, const std::stop_token& token) {
    send_until(value, token, clock::time_point::max(), names().send.c_str());
  }
  void send(const T& value) { send(value, detail::ambient_token_ref()); }
  void send(const T& value, const std::stop_token& token) {
    T copy(value);
    send(std::move(copy), token);
  }

  // Receives the oldest value; nullopt once the channel is closed and drained.
  // Blocks; cancellable; throws cancelled.
  std::optional<T> recv() { return recv(detail::ambient_token_ref()); }
  std::optional<T> recv(const std::stop_token& token) {
    std::optional<T> out;
    recv_until(out, token, clock::time_point::max(), names().recv.c_str());
    return out;
  }

  // Sends only if that needs no waiting. Never blocks. Returns ok, full or
  // closed; `value` is moved from only on ok.
  channel_status try_send(T&& value) { return try_send_impl(value); }
  channel_status try_send(const T& value) {
    T copy(value);
    return try_send_impl(copy);
  }

  // Receives only if a value is ready. Never blocks. Status ok, empty or closed.
  recv_result<T> try_recv() {
    recv_result<T> r;
    if (recv_lock_free(r.value) == detail::lock_free_result::done) {
      r.status = channel_status::ok;
      return r;
    }
    detail::wait_node* partner = nullptr;
    {
      std::lock_guard lock(lock_);
      r.status = recv_locked(r.value, partner);
    }
    detail::fire_all(partner);
    return r;
  }

  // send, giving up after `timeout`: ok, closed or timeout. Blocks; cancellable;
  // throws cancelled. `value` is moved from only on ok.
  template <class Rep, class Period>
  channel_status try_send_for(T&& value, std::chrono::duration<Rep, Period> timeout) {
    return try_send_for(std::move(value), timeout, detail::ambient_token_ref());
  }
  template <class Rep, class Period>
  channel_status try_send_for(T&& value, std::chrono::duration<Rep, Period> timeout,
                              const std::stop_token& token) {
    return send_until(value, token, detail::deadline_after(timeout), names().send_for.c_str(),
                      false);
  }

  // recv, giving up after `timeout`: status ok, closed or timeout. Blocks;
  // cancellable; throws cancelled.
  template <class Rep, class Period>
  recv_result<T> try_recv_for(std::chrono::duration<Rep, Period> timeout) {
    return try_recv_for(timeout, detail::ambient_token_ref());
  }
  template <class Rep, class Period>
  recv_result<T> try_recv_for(std::chrono::duration<Rep, Period> timeout,
                              const std::stop_token& token) {
    recv_result<T> r;
    r.status =
        recv_until(r.value, token, detail::deadline_after(timeout), names().recv_for.c_str());
    return r;
  }

  // Closes the channel: later sends throw channel_closed, receivers drain what
  // is buffered and then get nullopt. Wakes every blocked sender and receiver.
  // Returns false if it was already closed. Never blocks.
  bool close() noexcept {
    detail::wait_node* to_fire = nullptr;
    {
      std::lock_guard lock(lock_);
      if (closed_) return false;
      closed_ = true;
      if (ring_) ring_->close();  // a lock-free push now fails with closed
      // Receivers get nullopt at once when nothing is left (size() counts
      // pushes still being written), as on an unbuffered channel; else they
      // try again, to drain the values pushed while they queued.
      const bool drained = !ring_ || ring_->size() == 0;
      // Usually one queue is empty, but a select may sit in both.
      for (detail::wait_queue* q : {&recv_waiters_, &send_waiters_}) {
        while (detail::wait_node* n = q->claim_front()) {
          (q == &recv_waiters_ && !drained ? n->retry : n->closed) = true;
          n->next = to_fire;  // the node is unlinked and claimed: ours until fired
          to_fire = n;
        }
      }
    }
    detail::fire_all(to_fire);
    return true;
  }

  // Snapshots: true by the time they return, perhaps not a moment later.
  std::size_t size() const noexcept { return ring_ ? ring_->size() : 0; }
  std::size_t capacity() const noexcept { return capacity_; }
  bool closed() const noexcept {
    std::lock_guard lock(lock_);
    return closed_;
  }

  // Input iteration: each step is a recv(); the range ends once the channel is
  // closed and drained. Blocks; cancellable by the ambient token.
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = T*;
    using reference = T&;

    iterator() = default;
    T& operator*() const { return *current_; }
    T* operator->() const { return &*current_; }
    iterator& operator++() {
      current_ = channel_->recv();
      if (!current_) channel_ = nullptr;
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(const iterator& other) const noexcept { return channel_ == other.channel_; }

   private:
    friend class channel;
    explicit iterator(channel* c) : channel_(c) { ++*this; }
    channel* channel_ = nullptr;  // nullptr: the end
    mutable std::optional<T> current_;
  };
  iterator begin() { return iterator(this); }
  iterator end() noexcept { return iterator(); }

 private:
  friend struct detail::channel_access<T>;
  using clock = std::chrono::steady_clock;

  // What live_tasks() and leak_check say a blocked call waits in, e.g.
  // "channel<int>::recv"; made once per T, and never freed (they are
  // handed out as const char*).
  struct op_names {
    std::string send, recv, send_for, recv_for;
  };
  static const op_names& names() {
    static const op_names n = [] {
      const std::string_view t = detail::spelled_type_name<T>();
      const std::string c = "channel<" + std::string(t.empty() ? "T" : t) + ">::";
      return op_names{c + "send", c + "recv", c + "try_send_for", c + "try_recv_for"};
    }();
    return n;
  }

  // Senders and receivers of a buffered channel meet in a lock-free ring;
  // the lock guards only the wait queues and closing. The handshake that
  // keeps a value or a free slot from passing by a thread about to wait
  // (Dekker's): a waiter queues (a sequentially consistent count), then looks
  // at the ring once more; a lock-free push or pop changes the ring (a
  // sequentially consistent CAS), then looks at the count and, if anyone is
  // queued, serves the waiters (serve_waiters_locked). In the single order of
  // those four operations, at least one of the two looks sees the other's
  // change.
  void after_push() noexcept {
    if (recv_waiters_.queued() != 0) serve_waiters();
  }
  void after_pop() noexcept {
    if (send_waiters_.queued() != 0) serve_waiters();
  }
  void serve_waiters() noexcept {
    detail::wait_node* served = nullptr;
    {
      std::lock_guard lock(lock_);
      served = serve_waiters_locked();
    }
    detail::fire_all(served);
  }

  // Completes blocked operations of a buffered channel through the ring, as
  // Go's channels do: a blocked sender's value moves into a free slot, the
  // oldest value moves into a blocked receiver, as long as either is
  // possible. The woken thread then finds its operation done; waking it only
  // to try again cost a second round of contention per value (MPMC at cap 1:
  // every value woke a receiver, which then woke a sender). A node whose
  // attempt loses a race with a lock-free operation is woken to retry.
  // Returns the claimed nodes, linked through `next`, to fire once unlocked.
  detail::wait_node* serve_waiters_locked() noexcept {
    detail::wait_node* served = nullptr;
    for (bool moved = true; moved && ring_ != nullptr;) {
      moved = false;
      if (!send_waiters_.empty() && ring_->has_room()) {
        if (detail::wait_node* n = send_waiters_.claim_front()) {
          using push_result = typename detail::ring<T>::push_result;
          // Not closed: close() claims every queued node under this lock.
          moved = ring_->try_push(*static_cast<T*>(n->item)) == push_result::ok;
          n->retry = !moved;
          n->next = served;
          served = n;
        }
      }
      if (!recv_waiters_.empty() && ring_->size() != 0) {
        if (detail::wait_node* n = recv_waiters_.claim_front()) {
          const bool popped = ring_->try_pop(*static_cast<std::optional<T>*>(n->item));
          n->retry = !popped;
          moved = moved || popped;
          n->next = served;
          served = n;
        }
      }
    }
    return served;
  }
  // The ring alone, no lock: every call's first attempt, and select's fast path.
  detail::lock_free_result recv_lock_free(std::optional<T>& out) noexcept {
    if (!ring_) return detail::lock_free_result::ask_lock;
    if (ring_->try_pop(out)) {
      after_pop();
      return detail::lock_free_result::done;
    }
    return ring_->closed() ? detail::lock_free_result::ask_lock
                           : detail::lock_free_result::not_ready;
  }
  detail::lock_free_result send_lock_free(T& value) noexcept {
    if (!ring_ || recv_waiters_.queued() != 0) return detail::lock_free_result::ask_lock;
    switch (ring_->try_push(value)) {
      case detail::ring<T>::push_result::ok:
        after_push();
        return detail::lock_free_result::done;
      case detail::ring<T>::push_result::full:
        return detail::lock_free_result::not_ready;
      case detail::ring<T>::push_result::closed:
        break;
    }
    return detail::lock_free_result::ask_lock;
  }

  // The rest runs with lock_ held. A returned `partner` list was claimed and
  // must be fired (detail::fire_all) once the lock is released.

  bool send_ready_locked() const noexcept {
    return closed_ || (ring_ && ring_->has_room()) || recv_waiters_.has_waiting();
  }
  bool recv_ready_locked() const noexcept {
    return (ring_ && ring_->size() != 0) || closed_ || send_waiters_.has_waiting();
  }

  // ok (value moved from), closed, or full (nothing happened).
  channel_status send_locked(T& value, detail::wait_node*& partner) noexcept {
    if (closed_) return channel_status::closed;
    if (detail::wait_node* r = recv_waiters_.claim_front()) {
      static_cast<std::optional<T>*>(r->item)->emplace(std::move(value));
      partner = r;
      return channel_status::ok;
    }
    if (ring_ && ring_->try_push(value) == detail::ring<T>::push_result::ok) {
      return channel_status::ok;
    }
    return channel_status::full;
  }

  // ok (out holds a value), closed (drained), or empty.
  channel_status recv_locked(std::optional<T>& out, detail::wait_node*& partner) noexcept {
    if (ring_ && ring_->try_pop(out)) {
      partner = serve_waiters_locked();  // room was made: a blocked sender's value moves in
      return channel_status::ok;
    }
    // Unbuffered; or buffered and drained while a sender still waits: its
    // value is the oldest one left, so it is taken straight from the sender.
    if (detail::wait_node* s = send_waiters_.claim_front()) {
      out.emplace(std::move(*static_cast<T*>(s->item)));
      partner = s;
      return channel_status::ok;
    }
    return closed_ ? channel_status::closed : channel_status::empty;
  }

  channel_status try_send_impl(T& value) {
    switch (send_lock_free(value)) {
      case detail::lock_free_result::done:
        return channel_status::ok;
      case detail::lock_free_result::not_ready:
        return channel_status::full;  // the buffer is full and nobody waits to receive
      case detail::lock_free_result::ask_lock:
        break;
    }
    detail::wait_node* partner = nullptr;
    channel_status st;
    {
      std::lock_guard lock(lock_);
      st = send_locked(value, partner);
    }
    detail::fire_all(partner);
    return st;
  }

  // Blocking send with an optional deadline. Returns ok or timeout; throws
  // channel_closed (or returns closed when `throw_closed` is false) and
  // cancelled.
  channel_status send_until(T& value, const std::stop_token& token, clock::time_point deadline,
                            const char* what, bool throw_closed = true) {
    std::optional<channel_status> st;  // nullopt: stopped
    do {
      st = send_once(value, token, deadline, what);
    } while (st == again);
    if (!st) detail::throw_cancelled(token);
    if (*st == channel_status::closed && throw_closed) throw channel_closed();
    return *st;
  }

  // One attempt: lock-free into the buffer when no receiver waits, else under
  // the lock (hand-off to a receiver, or the buffer), else queue and wait.
  std::optional<channel_status> send_once(T& value, const std::stop_token& token,
                                          clock::time_point deadline, const char* what) {
    if (send_lock_free(value) == detail::lock_free_result::done) return channel_status::ok;
    detail::waiter w;
    detail::wait_node node{&w, 0, &value};
    detail::wait_node* partner = nullptr;
    std::optional<channel_status> st;
    {
      std::lock_guard lock(lock_);
      st = send_locked(value, partner);
      if (st == channel_status::full) {
        st = enqueue_or_give_up(send_waiters_, node, token, deadline);
        if (st == channel_status::full && ring_) {  // the handshake: look once more
          if (ring_->try_push(value) == detail::ring<T>::push_result::ok) {
            send_waiters_.remove(&node);
            st = channel_status::ok;
          }
        }
      }
    }
    detail::fire_all(partner);
    if (st == channel_status::full) return block(w, node, send_waiters_, token, deadline, what);
    return st;
  }

  // Blocking receive into `out`. Returns ok, closed or timeout; throws cancelled.
  channel_status recv_until(std::optional<T>& out, const std::stop_token& token,
                            clock::time_point deadline, const char* what) {
    std::optional<channel_status> st;  // nullopt: stopped
    do {
      st = recv_once(out, token, deadline, what);
    } while (st == again);
    if (!st) detail::throw_cancelled(token);
    return *st;
  }

  std::optional<channel_status> recv_once(std::optional<T>& out, const std::stop_token& token,
                                          clock::time_point deadline, const char* what) {
    if (recv_lock_free(out) == detail::lock_free_result::done) return channel_status::ok;
    detail::waiter w;
    detail::wait_node node{&w, 0, &out};
    detail::wait_node* partner = nullptr;
    std::optional<channel_status> st;
    {
      std::lock_guard lock(lock_);
      st = recv_locked(out, partner);
      if (st == channel_status::empty) {
        st = enqueue_or_give_up(recv_waiters_, node, token, deadline);
        if (st == channel_status::empty && ring_) {  // the handshake: look once more
          if (ring_->try_pop(out)) {
            recv_waiters_.remove(&node);
            partner = serve_waiters_locked();
            st = channel_status::ok;
          }
        }
      }
    }
    detail::fire_all(partner);
    if (st == channel_status::empty) return block(w, node, recv_waiters_, token, deadline, what);
    return st;
  }

  // Under the lock, for an operation that cannot complete now: a stop or an
  // expired deadline ends it (nullopt or timeout); otherwise `node` is queued
  // and `full`/`empty` is kept, meaning "block". Checked only here, after the
  // attempt: readiness wins over a stop.
  std::optional<channel_status> enqueue_or_give_up(detail::wait_queue& queue,
                                                   detail::wait_node& node,
                                                   const std::stop_token& token,
                                                   clock::time_point deadline) {
    if (token.stop_requested()) return std::nullopt;
    if (deadline != clock::time_point::max() && deadline <= clock::now()) {
      return channel_status::timeout;
    }
    queue.push_back(&node);
    return &queue == &send_waiters_ ? channel_status::full : channel_status::empty;
  }

  // Waits for the queued `node`. Returns ok, closed (completed by close()),
  // `again` (woken to try again), timeout, or nullopt when stopped; a
  // dequeued node is never left behind.
  std::optional<channel_status> block(detail::waiter& w, detail::wait_node& node,
                                      detail::wait_queue& queue, const std::stop_token& token,
                                      clock::time_point deadline, const char* what) {
    detail::waiter::outcome o;
    {
      detail::channel_wait_scope blocked(what);
      o = w.wait(token, deadline);
    }
    if (o == detail::waiter::outcome::fired) {
      if (node.retry) return again;
      return node.closed ? channel_status::closed : channel_status::ok;
    }
    std::lock_guard lock(lock_);
    queue.remove(&node);
    if (o == detail::waiter::outcome::timed_out) return channel_status::timeout;
    return std::nullopt;
  }

  // What block() returns for a waiter woken to try again; never a final
  // result of a blocking call.
  static constexpr channel_status again = channel_status::empty;

  const std::size_t capacity_;
  const std::unique_ptr<detail::ring<T>> ring_;  // the buffer; none when unbuffered

  mutable detail::spinlock lock_;  // guards everything below
  bool closed_ = false;
  // Blocked operations. Receivers only wait while nothing is buffered and
  // senders only while the buffer is full (but for a moment while a wake-up
  // is on its way), so at most one queue holds plain operations; select
  // cases may sit in both.
  detail::wait_queue recv_waiters_;
  detail::wait_queue send_waiters_;
};

namespace detail {

// The channel internals that select's cases drive (select.hpp).
template <class T>
struct channel_access {
  static spinlock& lock(channel<T>& c) noexcept { return c.lock_; }
  static wait_queue& recv_queue(channel<T>& c) noexcept { return c.recv_waiters_; }
  static wait_queue& send_queue(channel<T>& c) noexcept { return c.send_waiters_; }
  static bool recv_ready_locked(const channel<T>& c) noexcept { return c.recv_ready_locked(); }
  static bool send_ready_locked(const channel<T>& c) noexcept { return c.send_ready_locked(); }
  static bool buffer_has_value(const channel<T>& c) noexcept {
    return c.ring_ && c.ring_->size() != 0;
  }
  static bool buffer_has_room(const channel<T>& c) noexcept {
    return c.ring_ && c.ring_->has_room();
  }
  static channel_status recv_locked(channel<T>& c, std::optional<T>& out,
                                    wait_node*& partner) noexcept {
    return c.recv_locked(out, partner);
  }
  static channel_status send_locked(channel<T>& c, T& value, wait_node*& partner) noexcept {
    return c.send_locked(value, partner);
  }
  static lock_free_result recv_lock_free(channel<T>& c, std::optional<T>& out) noexcept {
    return c.recv_lock_free(out);
  }
  static lock_free_result send_lock_free(channel<T>& c, T& value) noexcept {
    return c.send_lock_free(value);
  }
  static void dequeue(channel<T>& c, wait_queue& q, wait_node& n) noexcept {
    std::lock_guard lock(c.lock_);
    q.remove(&n);
  }
};

}  // namespace detail
}  // namespace leash::inline v0
// ---- leash/cursor.hpp ----
// leash/cursor.hpp: a row-by-row result that must be closed (a database cursor).
// Prevents: the Go Mongo cursor opened with Next() and never closed (and the
// `rows.Err()` nobody checks): server-side cursors and connections pile up.
//
//   leash::cursor<user> users = db.query("SELECT ...");   // opens a statement
//   for (const user& u : users) {
//     if (u.banned) break;          // early exit: the statement is still closed
//   }                               // (by ~cursor, which reports the forgotten close)
//   std::vector<user> all = db.query("...").collect();    // reads all, then closes
//
// A cursor is a must_close handle (leash/must_close.hpp) over a cursor_source:
// a statement, a server-side cursor. Exhausting it closes it; an error from
// the source is thrown by next() after the rows that came before it, and
// closes it too. There is no separate err() to forget.
//
//   state      next()                        close()              destructor
//   open       a row; nullopt = exhausted    closes the source    closes it, reports
//              (closes it); error: closes,
//              throws
//   exhausted  nullopt                       nothing              nothing
//   closed     nullopt                       nothing              nothing
//
// Guarantees. Blocks: as long as the source's next() does. Throws: the
// source's errors from next(); the source's close error from the call that
// closed it (close(), or the next() that reached the end). Thread-safe: no; a
// cursor is used by one thread at a time.


#include <cstddef>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>


namespace leash::inline v0 {

// Where a cursor's rows come from. leash calls close() exactly once.
template <class Row>
class cursor_source {
 public:
  virtual ~cursor_source() = default;
  // The next row, or nullopt after the last one. Throws the source's errors.
  virtual std::optional<Row> next() = 0;
  // Releases the source (finalizes the statement). May throw: the close error.
  virtual void close() = 0;
};

namespace detail {

// A cursor_source from two callables: next() -> std::optional<Row>, close().
template <class Row, class Next, class Close>
class function_cursor_source final : public cursor_source<Row> {
 public:
  function_cursor_source(Next next, Close close)
      : next_(std::move(next)), close_(std::move(close)) {}
  std::optional<Row> next() override { return next_(); }
  void close() override { close_(); }

 private:
  Next next_;
  Close close_;
};

// The resource inside a cursor's must_close handle.
template <class Row>
class cursor_stream {
 public:
  static constexpr const char* must_close_name = "leash::cursor";

  explicit cursor_stream(std::unique_ptr<cursor_source<Row>> source) : source_(std::move(source)) {}

  void close() {
    if (done_) return;
    done_ = true;
    source_->close();
  }
  // Exhausted or failed: the source closed itself by reaching its end.
  bool closed() const noexcept { return done_; }

  cursor_source<Row>& source() { return *source_; }

 private:
  std::unique_ptr<cursor_source<Row>> source_;
  bool done_ = false;  // the source is closed (or being closed)
};

}  // namespace detail

// A must-close sequence of rows. See the table above.
template <class Row>
class [[nodiscard]] cursor {
 public:
  using value_type = Row;

  // An empty cursor: yields nothing.
  cursor() = default;

  // Owns `source`; `site` is reported if the cursor is dropped open.
  [[nodiscard]] explicit cursor(std::unique_ptr<cursor_source<Row>> source,
                                source_location site = source_location::current())
      : handle_(detail::cursor_stream<Row>(std::move(source)), site) {}

  // A cursor over two callables: next() -> std::optional<Row>, and close().
  template <class Next, class Close>
  requires std::is_invocable_r_v<std::optional<Row>, Next&>&&
      std::is_invocable_v<Close&> [[nodiscard]] cursor(
          Next next, Close close, source_location site = source_location::current())
      : cursor(std::make_unique<detail::function_cursor_source<Row, Next, Close>>(std::move(next),
                                                                                  std::move(close)),
               site) {}

  // The next row, or nullopt once exhausted (which closes the cursor and
  // throws the source's close error, if any) or closed. A source error closes
  // the cursor (its close error is dropped) and is thrown.
  std::optional<Row> next() {
    if (!handle_.is_open()) return std::nullopt;
    std::optional<Row> row;
    try {
      row = handle_->source().next();
    } catch (...) {
      (void)handle_.try_close();  // the source's error is the one to report
      throw;
    }
    if (!row) handle_.close();  // exhausted: reaching the end is closing
    return row;
  }

  // Reads every remaining row, then closes the cursor (exhausting it).
  std::vector<Row> collect() {
    std::vector<Row> rows;
    while (std::optional<Row> row = next())
      rows.push_back(std::move(*row));
    return rows;
  }

  // Closes the cursor early; later calls do nothing. Throws the close error
  // (closed anyway).
  void close() { handle_.close(); }
  // close() that returns the error instead of throwing it.
  std::exception_ptr try_close() noexcept { return handle_.try_close(); }

  // True once exhausted, closed or empty.
  bool closed() const noexcept { return !handle_.is_open(); }
  // The line that opened the cursor.
  const source_location& site() const noexcept { return handle_.site(); }

  // Range-for support: an input range that calls next(). Breaking out of the
  // loop leaves the cursor open (close it, or its destructor will).
  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = Row;
    using difference_type = std::ptrdiff_t;

    iterator() = default;
    Row& operator*() const { return *c_->current_; }
    Row* operator->() const { return &*c_->current_; }
    iterator& operator++() {
      c_->current_ = c_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    friend class cursor;
    explicit iterator(cursor* c) : c_(c) {}
    bool at_end() const { return !c_->current_.has_value(); }
    cursor* c_ = nullptr;
  };

  // Fetches the first row.
  iterator begin() {
    current_ = next();
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  must_close<detail::cursor_stream<Row>> handle_;
  std::optional<Row> current_;  // the row a range-for iterator points at
};

}  // namespace leash::inline v0
// ---- leash/leak_check.hpp ----
// leash/leak_check.hpp: goleak for leash.
// Prevents: leaks found only by comparing runtime.NumGoroutine() before and
// after, or never.
//
//   leash::leak_check guard;             // baseline: what is alive now
//   run_the_code_under_test();
//   std::string report = guard.verify(); // waits up to 1 s; "" when clean
//   // else: 2x task "fetch" spawned at fanout.cpp:42, blocked in task::get for 1.2s
//
// It sees tasks, tickers, must-close handles opened while it lives, plain
// threads that blocked in a channel call or select while it lives, and
// pending timer entries (deadlines of scopes and nurseries still alive):
//
//   leash::leak_check: 1 task still running, 1 handle still open
//     1x task "fetch" spawned at fanout.cpp:42, blocked in task::get for 1.2s
//     1x must_close<leash::body> opened at client.cpp:17, open for 1.2s
//
// The baseline is a set of ids, not a count, so one leak cannot hide behind
// another object ending. Idle runtime threads are not leaks (runtime::stats()
// reports them).
//
// Guarantees. Blocks: verify() only, on a condition variable woken by every
// task, ticker, handle and timer entry that ends, for at most the grace
// period. Thread-safe: any number of checks may live at once, on any threads.


#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>


namespace leash::inline v0 {

// One running task, as listed by live_tasks().
struct live_task {
  std::uint64_t id = 0;
  std::string name;
  source_location site;  // where it was spawned
  std::uint64_t nursery_id = 0;
  std::string nursery;  // the nursery's name
  source_location nursery_site;
  std::size_t depth = 0;             // 0: its nursery is not inside another task
  const char* blocked_in = nullptr;  // the leash call it blocks in, or nullptr
  std::chrono::steady_clock::duration blocked_for{};
  std::chrono::steady_clock::duration age{};
};

namespace detail {

inline std::string describe_duration(std::chrono::steady_clock::duration d) {
  const double s = std::chrono::duration<double>(d).count();
  char buf[32];
  if (s < 1.0) {
    std::snprintf(buf, sizeof buf, "%.0fms", s * 1000);
  } else {
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  }
  return buf;
}

inline std::string describe_task(const live_task& t) {
  std::string s = "task";
  if (!t.name.empty()) s += " \"" + t.name + "\"";
  s += " spawned at " + to_string(t.site);
  if (t.blocked_in != nullptr) {
    s += std::string(", blocked in ") + t.blocked_in + " for " + describe_duration(t.blocked_for);
  } else {
    s += ", running for " + describe_duration(t.age);
  }
  return s;
}

// Flattens nursery snapshots into tasks in tree order: each task is followed
// by the tasks of nurseries opened inside it.
inline std::vector<live_task> task_tree(const std::vector<nursery_snapshot>& nurseries) {
  std::map<std::uint64_t, std::vector<const nursery_snapshot*>> children;  // by parent task
  std::set<std::uint64_t> live_ids;
  for (const auto& n : nurseries) {
    for (const auto& t : n.tasks)
      live_ids.insert(t.id);
  }
  std::vector<const nursery_snapshot*> roots;
  for (const auto& n : nurseries) {
    if (live_ids.count(n.parent_task) != 0) {
      children[n.parent_task].push_back(&n);
    } else {
      roots.push_back(&n);
    }
  }
  std::vector<live_task> out;
  auto visit = [&](auto& self, const nursery_snapshot& n, std::size_t depth) -> void {
    for (const auto& t : n.tasks) {
      out.push_back(
          {t.id, t.name, t.site, n.id, n.name, n.site, depth, t.blocked_in, t.blocked_for, t.age});
      for (const nursery_snapshot* c : children[t.id])
        self(self, *c, depth + 1);
    }
  };
  // Oldest nursery first: the registry lists the newest first.
  for (auto it = roots.rbegin(); it != roots.rend(); ++it)
    visit(visit, **it, 0);
  return out;
}

}  // namespace detail

// Every running task of every nursery, in tree order (see live_task::depth).
inline std::vector<live_task> live_tasks() {
  return detail::task_tree(detail::registry::instance().snapshot());
}

// Renders live_tasks() as an indented tree, one line per nursery and task.
inline std::string to_string(const std::vector<live_task>& tasks) {
  std::string out;
  std::uint64_t nursery = 0;
  for (const auto& t : tasks) {
    const std::string indent(4 * t.depth, ' ');
    if (t.nursery_id != nursery) {
      nursery = t.nursery_id;
      out += indent + "nursery";
      if (!t.nursery.empty()) out += " \"" + t.nursery + "\"";
      out += " opened at " + to_string(t.nursery_site) + "\n";
    }
    out += indent + "  " + detail::describe_task(t) + "\n";
  }
  return out;
}

struct leak_check_options {
  // How long verify() waits for new tasks to end before it reports them.
  std::chrono::milliseconds grace{1000};
  // Tasks and tickers with one of these names, and handles of one of these
  // resource types, are never reported.
  std::vector<std::string> ignore_names{};
  // Tasks, tickers and handles started or opened at a site ending with one of
  // these ("file.cpp" or "file.cpp:42") are never reported.
  std::vector<std::string> ignore_sites{};
  // Pending timer entries are reported (a scope or nursery with a deadline
  // still alive); false ignores them.
  bool report_timers = true;
};

class leak_check {
 public:
  // Records the ids of everything alive now: the baseline. Must-close handles
  // are recorded from now on (opened earlier, they are not known).
  [[nodiscard]] explicit leak_check(leak_check_options options = {})
      : options_(std::move(options)) {
    detail::leak_signal::instance().check_started();
    const snapshot now = take();
    for (const auto& t : now.tasks)
      baseline_.insert(t.id);
    for (const auto& o : now.objects)
      baseline_.insert(o.id);
    for (const auto& t : now.timers)
      timer_baseline_.insert(t.id);
  }
  ~leak_check() { detail::leak_signal::instance().check_ended(); }

  leak_check(const leak_check&) = delete;
  leak_check& operator=(const leak_check&) = delete;

  // Waits up to the grace period until nothing outside the baseline is alive,
  // then returns a report grouped by source line; empty when clean.
  std::string verify() const { return verify(options_.grace); }
  std::string verify(std::chrono::milliseconds grace) const {
    const auto deadline = std::chrono::steady_clock::now() + grace;
    auto& signal = detail::leak_signal::instance();
    for (;;) {
      // Generation first: an end after the snapshot changes it, so the wait
      // below cannot sleep through it.
      const std::uint64_t seen = signal.generation();
      snapshot leaked = leaks(take());
      if (leaked.empty() || std::chrono::steady_clock::now() >= deadline) return report(leaked);
      signal.wait_changed(seen, deadline);
    }
  }

 private:
  struct snapshot {
    std::vector<live_task> tasks;
    std::vector<detail::object_snapshot> objects;
    std::vector<detail::timer_handle> timers;
    bool empty() const { return tasks.empty() && objects.empty() && timers.empty(); }
  };

  static snapshot take() {
    return {live_tasks(), detail::object_registry::instance().snapshot(),
            detail::timer_service::instance().snapshot()};
  }

  snapshot leaks(snapshot all) const {
    snapshot out;
    for (auto& t : all.tasks) {
      if (baseline_.count(t.id) == 0 && !ignored(t.name, t.site)) out.tasks.push_back(std::move(t));
    }
    for (auto& o : all.objects) {
      if (baseline_.count(o.id) == 0 && !ignored(o.name, o.site)) {
        out.objects.push_back(std::move(o));
      }
    }
    if (options_.report_timers) {
      for (const auto& t : all.timers) {
        if (timer_baseline_.count(t.id) == 0) out.timers.push_back(t);
      }
    }
    return out;
  }

  bool ignored(const std::string& name, const source_location& where) const {
    if (std::find(options_.ignore_names.begin(), options_.ignore_names.end(), name) !=
        options_.ignore_names.end()) {
      return true;
    }
    const std::string site = to_string(where);
    const std::string file = where.file;
    auto ends_with = [](const std::string& s, const std::string& suffix) {
      return s.size() >= suffix.size() &&
             s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    return std::any_of(
        options_.ignore_sites.begin(), options_.ignore_sites.end(),
        [&](const std::string& p) { return ends_with(site, p) || ends_with(file, p); });
  }

  static std::string count_of(std::size_t n, const char* one, const char* many, const char* what) {
    return std::to_string(n) + " " + (n == 1 ? one : many) + " " + what;
  }

  static std::string report(const snapshot& leaked) {
    if (leaked.empty()) return {};
    // Group by what a reader needs to find the leak: kind, name, site, blocking call.
    std::map<std::tuple<std::string, std::string, std::string>, std::pair<std::size_t, std::string>>
        groups;
    std::map<std::tuple<std::string, std::string, std::string>, std::chrono::steady_clock::duration>
        longest;
    auto add = [&](std::tuple<std::string, std::string, std::string> key,
                   std::chrono::steady_clock::duration d, const std::string& line) {
      auto [it, fresh] = groups.try_emplace(key, 0, line);
      ++it->second.first;
      auto& l = longest[key];
      if (fresh || d > l) {
        l = d;
        it->second.second = line;
      }
    };
    const auto now = std::chrono::steady_clock::now();
    std::size_t tickers = 0;
    std::size_t handles = 0;
    std::size_t threads = 0;
    for (const auto& t : leaked.tasks) {
      add({to_string(t.site), "task " + t.name, t.blocked_in ? t.blocked_in : ""}, t.blocked_for,
          detail::describe_task(t));
    }
    for (const auto& o : leaked.objects) {
      std::string line;
      if (o.kind == detail::object_snapshot::ticker) {
        ++tickers;
        line = "ticker";
        if (!o.name.empty()) line += " \"" + o.name + "\"";
        line += " started at " + to_string(o.site) + ", running for ";
      } else if (o.kind == detail::object_snapshot::handle) {
        ++handles;
        line = "must_close<" + o.name + "> opened at " + to_string(o.site) + ", open for ";
      } else {
        ++threads;
        line = "thread (not a leash task) blocked in " + o.name + " for ";
      }
      line += detail::describe_duration(now - o.since);
      add({to_string(o.site), std::to_string(o.kind) + o.name, ""}, now - o.since, line);
    }
    for (const auto& t : leaked.timers) {
      const auto left = t.when > now ? t.when - now : std::chrono::steady_clock::duration{};
      add({"", "timer", ""}, left,
          "pending timer due in " + detail::describe_duration(left) +
              " (a cancel_scope or nursery deadline still alive)");
    }
    std::vector<std::string> parts;
    if (!leaked.tasks.empty()) {
      parts.push_back(count_of(leaked.tasks.size(), "task", "tasks", "still running"));
    }
    if (tickers != 0) parts.push_back(count_of(tickers, "ticker", "tickers", "still running"));
    if (handles != 0) parts.push_back(count_of(handles, "handle", "handles", "still open"));
    if (threads != 0) parts.push_back(count_of(threads, "thread", "threads", "still blocked"));
    if (!leaked.timers.empty()) {
      parts.push_back(count_of(leaked.timers.size(), "timer", "timers", "still pending"));
    }
    std::string out = "leash::leak_check: ";
    for (std::size_t i = 0; i < parts.size(); ++i)
      out += (i == 0 ? "" : ", ") + parts[i];
    out += "\n";
    for (const auto& [key, group] : groups) {
      out += "  " + std::to_string(group.first) + "x " + group.second + "\n";
    }
    return out;
  }

  leak_check_options options_;
  std::set<std::uint64_t> baseline_;        // task, ticker and handle ids alive at construction
  std::set<std::uint64_t> timer_baseline_;  // timer entry ids (their own id space)
};

}  // namespace leash::inline v0
// ---- leash/nursery.hpp ----
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
// Guarantees. Blocks: wait(), the destructor, task::get(), and spawn() while
// `limit` tasks run. Cancelled: spawn's and get()'s waits by the ambient token;
// wait() joins regardless (cancellation reaches the tasks through the token).
// Throws: the first failure, cancelled / deadline_exceeded, usage_error on
// misuse. Thread-safe: spawn, try_spawn, cancel, failures from any thread;
// construct, wait and destroy on one thread, innermost scope first.


#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

// ---- leash/detail/task_record.hpp ----
// leash/detail/task_record.hpp: the shared state of one spawned task.
//
// A record is owned jointly by its nursery (while the task runs) and by any
// task<T> handles, through a shared_ptr. It holds the callable until the task
// has run (then destroys it on the task's thread, so captures die promptly),
// the outcome, and a completion flag that get() can wait on cancellably.

#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <type_traits>

// ---- leash/detail/thread_cache.hpp ----
// leash/detail/thread_cache.hpp: the elastic cache of OS threads that runs tasks.
//
// A submitted job starts at once, on a thread that runs nothing else first:
//   1. a returning thread: one that has finished its job's user code and is
//      on its way back (it runs only leash bookkeeping until it checks the
//      hand-off list, so the job waits behind no task); or
//   2. the spinning idle thread (no system call); or, after a short bounded
//      spin of the submitter for 1. or 2. while other jobs run,
//   3. a parked idle thread (a futex wake), or a new thread.
// A job is put on the hand-off list only while more threads are returning
// than jobs wait there, so each listed job has a thread bound to take it.
// There is no other queue: a job never waits behind blocked tasks and channel
// code cannot deadlock a fixed-size pool.
//
// One idle thread at a time spins on its slot (idle_spin), the others park at
// once on their own condition variable; a parked thread exits after
// `keep_alive`. At most `max_idle` threads idle for that long; threads beyond
// it linger briefly (a burst's next spawns reuse them instead of creating
// threads), then exit. Threads are detached:
// an exiting thread touches nothing shared after it has unlinked itself under
// the cache's mutex.
//
// Lock order: a worker may take the cache's mutex while holding its own
// mutex; a submitter never holds the cache's mutex while taking a worker's.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

// ---- leash/runtime_options.hpp ----
// leash/runtime_options.hpp: the settings and counters of leash's runtime.
//
// runtime::configure() takes a runtime_options; runtime::stats() returns a
// runtime_stats (both in runtime.hpp). Fields are in declaration order, so
// designated initializers follow it:
//
//   leash::runtime::configure({.keep_alive = 500ms, .max_threads = 2000});


#include <chrono>
#include <cstddef>
#include <cstdint>

namespace leash::inline v0 {

// Settings of the process-wide runtime; see runtime::configure.
struct runtime_options {
  // How long an idle thread waits for new work before it exits.
  std::chrono::milliseconds keep_alive{2000};
  // How many idle threads are kept at most; 0 means 2 x hardware threads.
  std::size_t max_idle = 0;
  // How many threads the runtime may own at once. A spawn that needs a new
  // thread beyond it throws resource_exhausted (try_spawn returns empty).
  // 0 means derived from the OS: the smallest of RLIMIT_NPROC,
  // kernel.threads-max, kernel.pid_max and vm.max_map_count / 2 (each thread
  // maps its stack and a guard page), less 10 % for threads leash does not
  // own and for other processes.
  std::size_t max_threads = 0;
};

// A snapshot of the runtime's counters; see runtime::stats.
struct runtime_stats {
  std::size_t threads_alive = 0;  // OS threads owned by the runtime (idle or running)
  std::size_t threads_idle = 0;   // of those, waiting for work
  std::size_t tasks_running = 0;  // jobs executing now
  std::size_t peak_threads = 0;   // most threads alive at once since start
  std::uint64_t tasks_started = 0;
  std::size_t pending_timers = 0;    // deadlines registered with the timer thread
  std::size_t max_threads = 0;       // the cap in force (configured or derived)
  std::uint64_t spawns_refused = 0;  // spawns that found no thread (resource_exhausted)
};

}  // namespace leash::inline v0
// ---- leash/detail/thread_limits.hpp ----
// leash/detail/thread_limits.hpp: how many threads the OS lets this process have.
//
// The runtime's default max_threads. Each source is read where the platform
// has it and skipped where it does not; with none, there is no cap beyond the
// OS refusing a thread (which leash reports the same way).

#include <cstddef>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>

#if __has_include(<sys/resource.h>)
#include <sys/resource.h>
#endif

namespace leash::inline v0::detail {

struct thread_limit {
  std::size_t value = std::numeric_limits<std::size_t>::max();
  std::string source = "no OS limit found";  // which limit it comes from, for messages
};

// The part of the smallest OS limit left to leash: the rest is headroom for
// the process's other threads and for other processes of the same user.
inline constexpr std::size_t thread_limit_share_percent = 90;

// One number from a /proc file, or 0 when there is none.
inline std::size_t read_proc_number(const char* path) {
  std::FILE* f = std::fopen(path, "r");
  if (f == nullptr) return 0;
  unsigned long long v = 0;
  const bool ok = std::fscanf(f, "%llu", &v) == 1;
  std::fclose(f);
  return ok ? static_cast<std::size_t>(v) : 0;
}

inline void consider_limit(thread_limit& smallest, std::size_t value, std::string source) {
  if (value != 0 && value < smallest.value) smallest = {value, std::move(source)};
}

// The smallest of the OS's thread limits, unscaled.
inline thread_limit os_thread_limit() {
  thread_limit smallest;
#if __has_include(<sys/resource.h>) && defined(RLIMIT_NPROC)
  rlimit nproc{};
  if (getrlimit(RLIMIT_NPROC, &nproc) == 0 && nproc.rlim_cur != RLIM_INFINITY) {
    consider_limit(smallest, static_cast<std::size_t>(nproc.rlim_cur), "RLIMIT_NPROC");
  }
#endif
  consider_limit(smallest, read_proc_number("/proc/sys/kernel/threads-max"), "kernel.threads-max");
  consider_limit(smallest, read_proc_number("/proc/sys/kernel/pid_max"), "kernel.pid_max");
  consider_limit(smallest, read_proc_number("/proc/sys/vm/max_map_count") / 2,
                 "vm.max_map_count / 2");
  return smallest;
}

// The default max_threads: the smallest OS limit, less the headroom.
inline thread_limit derived_thread_limit() {
  thread_limit l = os_thread_limit();
  if (l.value == std::numeric_limits<std::size_t>::max()) return l;
  l.source = std::to_string(thread_limit_share_percent) + " % of " + l.source + " (" +
             std::to_string(l.value) + ")";
  l.value -= l.value / 100 * (100 - thread_limit_share_percent);
  return l;
}

}  // namespace leash::inline v0::detail

namespace leash::inline v0 {

namespace detail {

// A unit of work. run() must not throw and must not touch the job after it
// signalled completion to whoever owns it.
class job {
 public:
  virtual void run() noexcept = 0;

 protected:
  // Virtual as well as protected: the friend below can reach it, so even a
  // destruction through this base must run the derived destructor.
  virtual ~job() = default;

 private:
  friend class thread_cache;
  job* next_ = nullptr;  // the cache's hand-off list, guarded by its mutex
};

class thread_cache {
 public:
  static thread_cache& instance() {
    static auto* cache = new thread_cache;  // immortal: no static-destruction-order crash
    static exit_guard guard{cache};
    return *cache;
  }

  // Runs `j` on a returning, idle or new thread (see the top of this file).
  // Throws resource_exhausted, naming `what` (the task), when it needs a new
  // thread and max_threads are alive or the OS refuses one.
  void submit(job* j, std::string_view what) {
    worker* w = nullptr;
    bool was_spinning = false;
    for (bool waited = false;; waited = true) {
      {
        std::lock_guard lock(mutex_);
        if (!waited) ++started_;
        if (returning_.load(std::memory_order_relaxed) > queued_.load(std::memory_order_relaxed)) {
          j->next_ = handoff_;
          handoff_ = j;
          queued_.store(queued_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
          note_wait_pays(true);
          return;
        }
        // Wait for a returning thread only while jobs run (one may finish)
        // and such waits paid off lately.
        const bool may_wait = !waited && wait_pays_.load(std::memory_order_relaxed) &&
                              running_.load(std::memory_order_relaxed) != 0;
        if (idle_ != nullptr && (idle_->spinning || !may_wait)) {
          w = idle_;
          was_spinning = claim_locked(w);
          if (was_spinning) note_wait_pays(true);
          break;
        }
        if (!may_wait) {
          if (alive_ >= max_threads_) refuse_locked(what, "");
          ++alive_;
          peak_ = std::max(peak_, alive_);
          break;
        }
      }
      if (!await_free_thread()) note_wait_pays(false);
    }
    if (w != nullptr) {
      hand_off(w, was_spinning, j);
      return;
    }
    try {
      std::thread([this, j] { work(j); }).detach();
    } catch (const std::system_error& e) {
      std::lock_guard lock(mutex_);
      --alive_;
      refuse_locked(what, e.what());
    }
  }

  // Called by a job on its runtime thread once it will run no more user code
  // (nor destroy anything whose destructor is user code): from then on the
  // thread counts as returning and may be handed the next job.
  static void mark_returning() noexcept {
    worker* w = current_worker_;
    if (w == nullptr || w->returning) return;
    w->returning = true;
    instance().returning_.fetch_add(1, std::memory_order_relaxed);
  }

  void configure(const runtime_options& o) {
    std::lock_guard lock(mutex_);
    keep_alive_ = o.keep_alive;
    max_idle_ = o.max_idle != 0 ? o.max_idle : default_max_idle();
    set_max_threads_locked(o.max_threads);
  }

  runtime_stats stats() const {
    runtime_stats s;
    {
      std::lock_guard lock(mutex_);
      s.threads_alive = alive_;
      s.threads_idle = idle_count_;
      s.peak_threads = peak_;
      s.tasks_started = started_;
      s.max_threads = max_threads_;
      s.spawns_refused = refused_;
    }
    s.tasks_running = running_.load(std::memory_order_relaxed);
    s.pending_timers = timer_service::instance().pending();
    return s;
  }

 private:
  using clock = std::chrono::steady_clock;

  // How long a thread beyond max_idle stays idle (at most keep_alive): long
  // enough to serve the rest of a spawn burst, short enough that the burst's
  // stacks are soon unmapped.
  static constexpr std::chrono::milliseconds surplus_linger{50};
  // How long the spinning idle thread polls before it parks. A spawn loop's
  // submitter is often held up for tens of microseconds (a preempted VM CPU,
  // an allocation); a spinner that is still there spares it a futex wake.
  // Measured on the 2-core VM: 64 pauses (3 us there) gave 4-7 us per
  // spawn+join, 50 us gave 1-2 us. Costs one CPU for that long after the
  // last task ends.
  static constexpr std::chrono::microseconds idle_spin{50};
  // How long a submitter waits at most for a thread to start returning (or
  // spinning) before it wakes a parked thread or creates one. Far below the
  // cost of a thread creation (~50 us) and of the order of a futex wake.
  static constexpr std::chrono::microseconds submit_spin{10};

  // A thread's record; lives on that thread's stack.
  struct worker {
    worker* prev = nullptr;  // idle list links, guarded by the cache's mutex
    worker* next = nullptr;
    bool in_idle = false;   // guarded by the cache's mutex
    bool spinning = false;  // in the spin phase, not yet claimed; guarded by the cache's mutex
    bool claimed_spinning = false;  // shutdown's note for hand_off; guarded by the cache's mutex
    bool returning = false;         // counted in returning_; only this thread touches it
    std::atomic<job*> slot{nullptr};
    std::mutex mutex;  // guards `parked`, orders a hand-off to a parked thread against its exit
    std::condition_variable wake;
    bool parked = false;
  };

  struct exit_guard {
    thread_cache* cache;
    ~exit_guard() { cache->shutdown(); }
  };

  // Does nothing: handed to idle threads at exit so they wake and leave.
  struct noop_job final : job {
    void run() noexcept override {}
  };

  thread_cache() {
    max_idle_ = default_max_idle();
    set_max_threads_locked(0);  // no other thread can see the cache yet
  }

  void set_max_threads_locked(std::size_t configured) {
    if (configured != 0) {
      max_threads_ = configured;
      limit_source_ = "runtime_options::max_threads = " + std::to_string(configured);
      return;
    }
    const thread_limit derived = derived_thread_limit();
    max_threads_ = derived.value;
    limit_source_ = "runtime_options::max_threads = " + std::to_string(derived.value) +
                    ", derived from " + derived.source;
  }

  // Counts and reports a spawn that found no thread. `os_error` is the OS's
  // refusal, or empty when the cap refused it.
  [[noreturn]] void refuse_locked(std::string_view what, std::string_view os_error) {
    ++refused_;
    --started_;
    std::string m = "leash::runtime: could not start a thread for task \"";
    m.append(what);
    m += "\": " + std::to_string(alive_) + " threads alive";
    if (os_error.empty()) {
      m += ", at the cap (" + limit_source_ + ")";
    } else {
      m += ", and the OS refused another (";
      m.append(os_error);
      m += "; " + limit_source_ + ")";
    }
    throw resource_exhausted(m);
  }

  static std::size_t default_max_idle() {
    return 2 * std::max<std::size_t>(1, std::thread::hardware_concurrency());
  }

  void work(job* j) {
    worker self;
    current_worker_ = &self;
    while (j != nullptr) {
      running_.fetch_add(1, std::memory_order_relaxed);
      j->run();
      running_.fetch_sub(1, std::memory_order_relaxed);
      j = next_job(self);
    }
  }

  void note_wait_pays(bool pays) noexcept {
    if (wait_pays_.load(std::memory_order_relaxed) != pays) {
      wait_pays_.store(pays, std::memory_order_relaxed);
    }
  }

  // The submitter's bounded wait for a returning or spinning thread: a few
  // pauses, then yields (a submitter sharing one CPU with the thread it waits
  // for gives it the CPU). True when one appeared.
  bool await_free_thread() const {
    const auto until = clock::now() + submit_spin;
    for (int i = 0;; ++i) {
      if (returning_.load(std::memory_order_relaxed) > queued_.load(std::memory_order_relaxed) ||
          spinning_.load(std::memory_order_relaxed) != 0) {
        return true;
      }
      if (i < 32) {
        cpu_relax();
      } else if (clock::now() > until) {
        return false;
      } else {
        std::this_thread::yield();
      }
    }
  }

  // The next job for `w`: from the hand-off list, else after idling in the
  // idle list; nullptr means exit.
  job* next_job(worker& w) {
    std::chrono::milliseconds idle_for;
    bool spins = false;
    {
      std::lock_guard lock(mutex_);
      if (w.returning) {
        w.returning = false;
        returning_.fetch_sub(1, std::memory_order_relaxed);
      }
      if (handoff_ != nullptr) {
        job* j = handoff_;
        handoff_ = j->next_;
        queued_.store(queued_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
        return j;
      }
      if (stopping_) return retire_locked();
      const bool surplus = idle_count_ >= max_idle_;
      idle_for = surplus ? std::min(keep_alive_, surplus_linger) : keep_alive_;
      // One idle thread spins at a time, at the front of the list where the
      // next submit finds it; the others park at once, at the back. Many
      // spinners would only take CPU from the thread that submits, and so
      // would one on a single usable CPU.
      spins = spinning_.load(std::memory_order_relaxed) == 0 && usable_cpus() > 1;
      if (spins) {
        spinning_.store(1, std::memory_order_relaxed);
        w.spinning = true;
        w.next = idle_;
        if (idle_ != nullptr) idle_->prev = &w;
        idle_ = &w;
        if (idle_tail_ == nullptr) idle_tail_ = &w;
      } else {
        w.prev = idle_tail_;
        if (idle_tail_ != nullptr) idle_tail_->next = &w;
        idle_tail_ = &w;
        if (idle_ == nullptr) idle_ = &w;
      }
      w.in_idle = true;
      ++idle_count_;
    }
    if (spins) {
      // Spin phase: pauses for idle_spin, then up to 64 yields. The yields
      // keep a spinner that shares one CPU with the thread about to hand it
      // work (both pinned to one CPU) from holding that CPU for long. Yields
      // among the pauses cost more than they give: on a loaded machine each
      // one may hand the CPU to another process.
      const auto until = clock::now() + idle_spin;
      for (int i = 1;; ++i) {
        if (job* j = take(w)) return j;
        if (i % 16 == 0 && clock::now() > until) break;
        cpu_relax();
      }
      for (int i = 0; i < 64; ++i) {
        if (job* j = take(w)) return j;
        std::this_thread::yield();
      }
      bool claimed = false;
      {
        std::lock_guard lock(mutex_);
        claimed = !w.spinning;
        if (!claimed) {
          w.spinning = false;
          spinning_.store(0, std::memory_order_relaxed);
        }
      }
      // Claimed while spinning: the submitter stores the job right after its
      // unlock, without a wake-up.
      while (claimed) {
        if (job* j = take(w)) return j;
        std::this_thread::yield();
      }
    }
    auto deadline = clock::now() + idle_for;
    std::unique_lock lock(w.mutex);
    w.parked = true;
    for (;;) {
      if (job* j = take(w)) {
        w.parked = false;
        return j;
      }
      if (w.wake.wait_until(lock, deadline) == std::cv_status::timeout) {
        std::lock_guard cache_lock(mutex_);
        if (w.in_idle) {
          unlink_idle_locked(&w);
          return retire_locked();
        }
        // A submitter claimed this thread; its job is on the way.
        deadline = clock::time_point::max();
      }
    }
  }

  // The job in w's slot, if any. Only w empties its slot; only the one
  // submitter that claimed w fills it.
  static job* take(worker& w) noexcept {
    job* j = w.slot.load(std::memory_order_acquire);
    if (j != nullptr) w.slot.store(nullptr, std::memory_order_relaxed);
    return j;
  }

  job* retire_locked() {
    --alive_;
    if (stopping_) exited_.notify_all();
    return nullptr;
  }

  // Takes `w` off the idle list for a hand-off; true if it was still spinning
  // (it polls its slot and needs no wake-up).
  bool claim_locked(worker* w) {
    const bool was_spinning = w->spinning;
    unlink_idle_locked(w);
    return was_spinning;
  }

  // Gives `j` to the claimed thread `w`. A parked thread is woken under its
  // own mutex, so that it cannot time out and leave (freeing its record)
  // while the submitter still touches it; a spinning thread only polls.
  static void hand_off(worker* w, bool was_spinning, job* j) {
    if (was_spinning) {
      w->slot.store(j, std::memory_order_release);  // w may be gone right after
      return;
    }
    std::lock_guard lock(w->mutex);
    w->slot.store(j, std::memory_order_release);
    if (w->parked) w->wake.notify_one();
  }

  void unlink_idle_locked(worker* w) {
    if (w->prev != nullptr) w->prev->next = w->next;
    if (w->next != nullptr) w->next->prev = w->prev;
    if (idle_ == w) idle_ = w->next;
    if (idle_tail_ == w) idle_tail_ = w->prev;
    w->prev = w->next = nullptr;
    w->in_idle = false;
    if (w->spinning) {
      w->spinning = false;
      spinning_.store(0, std::memory_order_relaxed);
    }
    --idle_count_;
  }

  // At exit: wakes every idle thread and waits (bounded) until they left, so
  // no runtime thread is alive after static destruction except ones still
  // running user code (a nursery alive during static destruction).
  void shutdown() {
    static noop_job& noop = *new noop_job;  // immortal: a woken thread may run it after exit
    std::unique_lock lock(mutex_);
    stopping_ = true;
    const std::size_t busy = alive_ - idle_count_;
    // Claim every idle thread first, then hand each a no-op outside the
    // cache's mutex (the lock order forbids taking a worker's mutex under it).
    worker* claimed = nullptr;
    while (idle_ != nullptr) {
      worker* w = idle_;
      w->claimed_spinning = claim_locked(w);
      w->next = claimed;
      claimed = w;
    }
    lock.unlock();
    while (claimed != nullptr) {
      worker* w = claimed;
      claimed = w->next;  // read before the hand-off: afterwards w may be gone
      hand_off(w, w->claimed_spinning, &noop);
    }
    lock.lock();
    exited_.wait_for(lock, std::chrono::seconds(2), [&] { return alive_ <= busy; });
  }

  mutable std::mutex mutex_;
  std::condition_variable exited_;  // shutdown waits here for idle threads to leave
  worker* idle_ = nullptr;          // the spinning thread first, if any
  worker* idle_tail_ = nullptr;
  std::size_t idle_count_ = 0;
  std::size_t alive_ = 0;
  std::size_t peak_ = 0;
  std::uint64_t started_ = 0;
  std::chrono::milliseconds keep_alive_{2000};
  std::size_t max_idle_ = 0;
  std::size_t max_threads_ = 0;  // alive_ never exceeds it
  std::string limit_source_;     // where max_threads_ comes from, for messages
  std::uint64_t refused_ = 0;
  bool stopping_ = false;
  job* handoff_ = nullptr;  // jobs bound for returning threads (a stack)
  // Written under mutex_ only, read without it by a waiting submitter.
  std::atomic<std::size_t> queued_{0};    // jobs in handoff_; never more than returning_
  std::atomic<std::size_t> spinning_{0};  // idle threads in their spin phase (0 or 1)
  // Threads between mark_returning() and their next look at handoff_.
  // Incremented without the mutex (it only grows there), decremented under it.
  std::atomic<std::size_t> returning_{0};
  std::atomic<std::size_t> running_{0};
  // Whether a submitter lately found a returning or spinning thread. When a
  // wait for one times out, submitters stop waiting until one is found again,
  // so a burst of blocking tasks does not pay submit_spin per spawn.
  std::atomic<bool> wait_pays_{true};
  static inline thread_local worker* current_worker_ = nullptr;
};

}  // namespace detail
}  // namespace leash::inline v0

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

class task_record : public job, public task_identity {
 public:
  void run() noexcept override;  // defined in nursery.hpp, where the nursery is complete

  // Runs the callable and stores its value; exceptions propagate to run().
  virtual void invoke(const std::stop_token& token) = 0;

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

  void mark_done() {
    std::lock_guard lock(mutex_);
    done_ = true;
    cv_.notify_all();
  }

  nursery* owner = nullptr;
  task_record* prev = nullptr;  // owner's list of running tasks, guarded by its mutex
  task_record* next = nullptr;
  std::shared_ptr<task_record> keep_alive;  // set while the task runs

  // Outcome, written before mark_done().
  std::exception_ptr error;
  bool quiet = false;                 // a cancelled that escaped while the nursery was stopped
  std::atomic<bool> observed{false};  // error seen through get(), failures() or wait()

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
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

namespace leash::inline v0 {

// A handle to a spawned task's outcome. Cheap to copy; valid even after the
// nursery is gone (the nursery joined the task, so the outcome is final).
template <class T>
class task {
 public:
  task() = default;

  // Waits until the task finished (blocks; cancellable by the ambient or the
  // given token), then returns its value or rethrows its exception. A task
  // spawned into a cancelled nursery throws cancelled.
  std::add_lvalue_reference_t<T> get() { return get(this_task::stop_token()); }
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

  // True once the task has finished (a snapshot).
  bool done() const { return state_ != nullptr && state_->done(); }
  bool valid() const noexcept { return state_ != nullptr; }
  const std::string& name() const { return record().name; }
  source_location site() const { return record().site; }

 private:
  friend class nursery;
  explicit task(std::shared_ptr<detail::task_result<T>> s) : state_(std::move(s)) {}

  detail::task_result<T>& record() const {
    if (state_ == nullptr) throw usage_error("leash::task: get() on an empty task handle");
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
        state_(detail::ambient, {}, deadline_of(options_), options_.name),
        installed_(&state_, "leash::nursery") {
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
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return running_ == 0; });
      closed_ = true;
    }
    detail::registry::instance().remove(this);
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
      changed_.wait(lock, [&] { return running_ == 0; });
    }
    closed_ = true;
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

  // Requests stop on every task (and on nurseries nested in them). Never blocks.
  void cancel(std::string message = {}) {
    state_.request(stop_reason::cancelled, std::move(message));
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

  struct wake {
    nursery* self;
    void operator()() const noexcept {
      std::lock_guard lock(self->mutex_);
      self->changed_.notify_all();
    }
  };

  // True if the calling thread runs one of this nursery's tasks, directly or
  // in a nursery nested inside one: waiting for them would wait for itself.
  bool runs_current_task() const noexcept {
    for (const detail::task_identity* t = detail::current_task; t != nullptr;
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
    auto record = std::make_shared<detail::task_impl<result, fn_type>>(std::forward<F>(f));
    record->id = detail::next_id();
    record->name = std::move(name);
    record->site = site;
    record->owner_nursery = this;
    record->owner = this;
    std::optional<task<result>> handle;
    try {
      if (admit(record, try_only)) handle = task<result>(std::move(record));
    } catch (const resource_exhausted&) {
      if (!try_only) throw;
    }
    return handle;
  }

  // Starts `record`, or finishes it as cancelled when the nursery is stopped.
  // false only when try_only and the nursery is full.
  bool admit(const std::shared_ptr<detail::task_record>& record, bool try_only) {
    record->started = std::chrono::steady_clock::now();  // outside the lock tasks contend for
    std::unique_lock lock(mutex_);
    throw_if_closed();
    if (try_only && running_ >= options_.limit && !state_.stop_requested()) return false;
    if (running_ >= options_.limit && !state_.stop_requested()) {
      const std::stop_token token = this_task::stop_token();
      detail::blocked_scope blocked("nursery::spawn (at limit)");
      // A loop: several spawners may wake for one free slot.
      while (running_ >= options_.limit && !state_.stop_requested()) {
        const auto status = detail::wait(lock, changed_, token, [&] {
          return running_ < options_.limit || state_.stop_requested() || closed_;
        });
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
      record->mark_done();
      return true;
    }
    record->next = live_;
    if (live_ != nullptr) live_->prev = record.get();
    live_ = record.get();
    ++running_;
    record->keep_alive = record;
    lock.unlock();
    try {
      detail::thread_cache::instance().submit(record.get(), record->name);
    } catch (...) {
      record->keep_alive.reset();
      lock.lock();
      unlink(record.get());
      --running_;
      changed_.notify_all();
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
    record->mark_done();
    record.reset();
    // Only leash bookkeeping is left, unless a failure cancelled siblings
    // above (stop callbacks): the thread may take the next job early.
    if (!failed) detail::thread_cache::mark_returning();
    {
      std::lock_guard lock(mutex_);
      if (--running_ == 0 && state_.stop_requested()) cut_short_ = true;
      changed_.notify_all();
    }
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
  detail::cancel_state state_;
  detail::ambient_guard installed_;

  mutable std::mutex mutex_;             // guards everything below
  std::condition_variable changed_;      // a task ended, or the nursery was stopped
  detail::task_record* live_ = nullptr;  // running tasks
  std::size_t running_ = 0;
  bool closed_ = false;     // wait() returned or the destructor joined: no more spawns
  bool cut_short_ = false;  // a stop arrived while tasks ran (or refused a spawn)
  std::vector<std::shared_ptr<detail::task_record>> failures_;  // in order
  std::optional<std::stop_callback<wake>> wake_on_stop_;        // wakes spawns waiting at the limit
};

inline void detail::task_record::run() noexcept {
  std::shared_ptr<task_record> self = std::move(keep_alive);
  nursery& n = *owner;
  current_task = this;
  ambient = &n.state_;
  try {
    invoke(n.state_.token());
  } catch (const cancelled&) {
    error = std::current_exception();
    quiet = n.state_.stop_requested();
  } catch (...) {
    error = std::current_exception();
  }
  ambient = nullptr;
  current_task = nullptr;
  n.task_finished(std::move(self));
}

// Opens a nursery, runs body(nursery&), and waits. Returns the body's value.
// Rethrows the first failure; the body's own cancelled (the nursery was
// cancelled) is absorbed, but a deadline or an outer cancellation propagates.
template <class F>
auto run_nursery(nursery_options options, F&& body,
                 source_location site = source_location::current()) {
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

}  // namespace leash::inline v0
// ---- leash/runtime.hpp ----
// leash/runtime.hpp: where leash tasks run, and what that costs.
// Prevents: 10 000 sleeping goroutines leaving tens of MB that Go never
// returns to the OS.
//
// Every task runs on an OS thread from one process-wide elastic cache. A
// spawned task starts at once on an idle thread or on a new one: it never
// queues behind blocked tasks. Idle threads wait `keep_alive` for work, then
// exit, so a burst's stacks go back to the OS. The cache is created on first
// use; at exit its idle threads are woken and leave before static destruction
// ends.
//
//   leash::runtime::configure({.keep_alive = std::chrono::milliseconds(500)});
//   ... a burst of tasks ...
//   auto s = leash::runtime::stats();  // threads_alive, threads_idle, peak_threads, ...
//
// Guarantees. Blocks: neither call blocks on tasks. Thread-safe: both may be
// called from any thread at any time; stats() is a snapshot.



namespace leash::inline v0::runtime {

// Applies new settings. Threads already idle keep the keep-alive they started
// with; max_idle applies to the next thread that becomes idle.
inline void configure(const runtime_options& options) {
  detail::thread_cache::instance().configure(options);
}

// A consistent-enough snapshot of the runtime's counters (each one is exact at
// some instant during the call).
inline runtime_stats stats() {
  return detail::thread_cache::instance().stats();
}

}  // namespace leash::inline v0::runtime
// ---- leash/select.hpp ----
// leash/select.hpp: wait on several channel operations at once, as Go's select.
// Prevents: a goroutine stuck in a receive that can never be served, because
// it could not also wait for "done" or a timeout.
//
//   std::size_t fired = leash::select(
//       leash::on_recv(jobs, [&](std::optional<job> j) { if (j) run(*j); }),
//       leash::on_send(results, r, [&] { ++sent; }),
//       leash::on_after(100ms, [&] { idle(); }));
//
// Semantics (Go's):
//   - Among the cases ready at the moment select looks, one is chosen
//     uniformly at random (select_biased: the first in argument order). Only
//     the chosen case has any effect.
//   - A send case references the caller's value (an lvalue, or an rvalue such
//     as std::move(p)) and moves from it only when it delivers it: a losing
//     case, or one chosen on a closed channel (which throws channel_closed),
//     leaves it as it was. Cases are therefore temporaries of the select
//     expression: build them inside the select call.
//   - A receive callback takes the value (T, const T&, T&&), or
//     std::optional<T> (by value, const& or &&), or nothing; any other shape
//     is a compile error, never a value dropped. A receive case on a closed,
//     drained channel is ready: an optional callback gets nullopt, a T
//     callback makes select throw channel_closed.
//   - `.when(false)` disables a case (Go's nil channel). A select with no
//     enabled case blocks until cancelled.
//   - The same channel may appear in several cases. A send and a receive case
//     of one select never match each other.
//   - on_after(d) fires if nothing else did within d; it arms no timer (the
//     wait itself has the deadline), so nothing is left behind. Its callback
//     takes nothing or the time point it fired at.
//   - try_select never blocks: it returns nullopt when no case was ready
//     (Go's default).
//   - The callback of the chosen case runs after the operation completed,
//     outside every lock; select returns the case's index.
//   - select(range) takes a random-access range of cases of one type: fan-in
//     over N channels, e.g. `std::vector<leash::recv_case<int>>` built with
//     on_recv(ch) (no callback; read the value with take()).
//
// Guarantees. Blocks: select, select_biased. Cancelled: by the ambient token or
// an explicit first argument; a case that was already matched wins over the
// stop. Throws: cancelled, channel_closed, whatever a callback throws.
// Allocates: nothing (the variadic form) or, for a range of more than 64
// distinct channels, one array of lock pointers.


#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <optional>
#include <ranges>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <vector>


namespace leash::inline v0 {
namespace detail {

// What the select engine needs from a case; every case type implements it.
class select_case {
 public:
  using clock = std::chrono::steady_clock;

  // The lock of the case's channel, nullptr for on_after.
  virtual spinlock* lock() const noexcept = 0;
  // Without any lock: tries to complete the case through its channel's
  // lock-free buffer alone (see run_select's fast path).
  virtual lock_free_result try_lock_free() noexcept { return lock_free_result::ask_lock; }
  // With every lock held: could the case complete now?
  virtual bool ready_locked(clock::time_point now) const noexcept = 0;
  // With every lock held: does the channel's buffer have a value (receive)
  // or room (send)? The one part of readiness that lock-free operations
  // change without the lock.
  virtual bool buffer_ready_locked() const noexcept { return false; }
  // With every lock held: completes the case. False if it turned out not ready
  // (the partner it counted on was stopped meanwhile). The returned
  // `partner` list must be fired (fire_all) once the locks are released.
  virtual bool complete_locked(wait_node*& partner) noexcept = 0;
  // With every lock held: queues the case's node for `w`.
  virtual void enqueue_locked(waiter& w, std::uint32_t index) noexcept = 0;
  // With every lock held: removes the node queued by enqueue_locked.
  virtual void dequeue_locked() noexcept {}
  // After waiting: removes the node if still queued (takes the lock).
  virtual void dequeue() noexcept = 0;
  // After the case fired: true if its channel woke it to try again (the
  // buffer changed) rather than completing it.
  virtual bool woken_to_retry() const noexcept { return false; }
  // After the case fired, outside every lock: runs its callback.
  virtual void finish() = 0;
  // on_after's deadline; max for channel cases.
  virtual clock::time_point deadline() const noexcept { return clock::time_point::max(); }

  bool enabled = true;

 protected:
  ~select_case() = default;
};

template <class T>
concept select_case_type = std::is_base_of_v<select_case, std::remove_cvref_t<T>>;

// The callback of a receive case without one: the value stays in the case.
struct keep_value {};

// The callback shapes a receive case accepts, in the order it tries them: a
// callback that can take std::optional<T> gets it (nullopt: closed), one that
// takes the value gets it, and one without parameters is only told. Both are
// passed as rvalues (is_invocable with a non-reference type tests exactly
// that), so T& and std::optional<T>& parameters are rejected.
template <class F, class T>
concept recv_takes_optional = std::is_invocable_v<F&, std::optional<T>>;
template <class F, class T>
concept recv_takes_value = std::is_invocable_v<F&, T>;
template <class F, class T>
concept recv_callback = std::is_same_v<F, keep_value> || recv_takes_optional<F, T> ||
    recv_takes_value<F, T> || std::is_invocable_v<F&>;

// What select throws when a receive case whose callback takes T (not
// std::optional<T>) is chosen on a closed, drained channel: there is no value
// to pass, and dropping the case silently would hide the end of the channel.
class recv_on_closed final : public channel_closed {
 public:
  const char* what() const noexcept override {
    return "leash::select: a receive case's channel is closed and its callback takes a value; "
           "take std::optional<T> to be told of the close";
  }
};

// Where a send case's value lives (Stored: T&, T&& or T). The caller's object
// of the channel's type, lvalue or rvalue, is referenced and moved from only
// when the case delivers it; anything else (a const object, another type) is
// converted into the case when the case is built.
template <class T, class Stored>
class send_value;
template <class T>
class send_value<T, T&> {
 public:
  explicit send_value(T& v) noexcept : item_(&v) {}
  T& get() noexcept { return *item_; }

 private:
  T* item_;
};
// An rvalue argument is referenced too, so the case may be neither copied nor
// moved: it cannot be kept past the full-expression that made it (and with
// it, the temporary it may reference).
template <class T>
class send_value<T, T&&> {
 public:
  explicit send_value(T&& v) noexcept : item_(&v) {}
  send_value(const send_value&) = delete;
  send_value& operator=(const send_value&) = delete;
  T& get() noexcept { return *item_; }

 private:
  T* item_;
};
template <class T>
class send_value<T, T> {
 public:
  template <class V>
  explicit send_value(V&& v) : item_(std::forward<V>(v)) {}
  T& get() noexcept { return item_; }

 private:
  T item_;
};

// A fast per-thread generator for the random choice among ready cases.
inline std::uint64_t random_next() noexcept {
  thread_local std::uint64_t state = [] {
    std::uint64_t seed = reinterpret_cast<std::uintptr_t>(&state) ^
                         static_cast<std::uint64_t>(clock::now().time_since_epoch().count());
    return seed | 1;
  }();
  state ^= state << 13;  // xorshift64
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}

// The distinct channel locks of a select, in address order: locking every
// select's channels in one global order is what makes it deadlock-free.
template <std::size_t Inline>
class lock_set {
 public:
  template <class At>
  lock_set(std::size_t n, At at) {
    spinlock** out = inline_.data();
    if (n > Inline) {
      heap_.resize(n);
      out = heap_.data();
    }
    for (std::size_t i = 0; i < n; ++i) {
      const select_case& c = at(i);
      if (c.enabled && c.lock() != nullptr) out[size_++] = c.lock();
    }
    // Insertion sort: a select has a handful of channels, usually two or three.
    std::less<spinlock*> before;
    for (std::size_t i = 1; i < size_; ++i) {
      for (std::size_t j = i; j > 0 && before(out[j], out[j - 1]); --j)
        std::swap(out[j], out[j - 1]);
    }
    size_ = static_cast<std::size_t>(std::unique(out, out + size_) - out);
    locks_ = out;
  }
  void lock() noexcept {
    for (std::size_t i = 0; i < size_; ++i)
      locks_[i]->lock();
  }
  void unlock() noexcept {
    for (std::size_t i = size_; i-- > 0;)
      locks_[i]->unlock();
  }

 private:
  std::array<spinlock*, Inline> inline_{};
  std::vector<spinlock*> heap_;
  spinlock** locks_ = nullptr;
  std::size_t size_ = 0;
};

enum class select_mode { random, biased, nonblocking };

// The fast path of a select whose cases are all on buffered channels (the
// common fan-in): Go's poll order, without locks. The cases are tried in a
// random order (argument order for select_biased) through the channels'
// lock-free buffers, and the first that completes is the choice: the first
// ready case of a uniformly random order is a uniformly random ready case.
// Returns that case's index, or nullopt when the locked path must decide (a
// case this path cannot judge, none ready, more than 8 cases).
template <class At>
std::optional<std::size_t> try_lock_free_cases(std::size_t n, At at, select_mode mode) {
  constexpr std::size_t max_cases = 8;
  if (n == 0 || n > max_cases) return std::nullopt;
  std::array<std::uint8_t, max_cases> order;
  for (std::size_t i = 0; i < n; ++i) {
    order[i] = static_cast<std::uint8_t>(i);
    if (mode != select_mode::biased) {  // Fisher-Yates, drawing as it goes
      const std::size_t j = random_next() % (i + 1);
      std::swap(order[i], order[j]);
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    select_case& c = at(order[i]);
    if (!c.enabled) continue;
    switch (c.try_lock_free()) {
      case lock_free_result::done:
        return order[i];
      case lock_free_result::not_ready:
        break;
      case lock_free_result::ask_lock:
        return std::nullopt;
    }
  }
  return std::nullopt;
}

// "No case": an index no select has.
inline constexpr std::size_t no_case = std::numeric_limits<std::size_t>::max();

// The earliest deadline among the enabled on_after cases, and its case's
// index (time_point::max() and no_case when there is none).
template <class At>
std::pair<select_case::clock::time_point, std::size_t> earliest_deadline(std::size_t n, At at) {
  std::pair<select_case::clock::time_point, std::size_t> earliest{
      select_case::clock::time_point::max(), no_case};
  for (std::size_t i = 0; i < n; ++i) {
    const select_case& c = at(i);
    if (c.enabled && c.deadline() < earliest.first) earliest = {c.deadline(), i};
  }
  return earliest;
}

// Step 1, every lock held: the ready case to complete, or no_case. Random
// among the ready ones, or the first in argument order.
template <class At>
std::size_t poll_locked(std::size_t n, At at, select_mode mode,
                        select_case::clock::time_point now) {
  std::size_t chosen = no_case;
  std::uint64_t ready = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const select_case& c = at(i);
    if (!c.enabled || !c.ready_locked(now)) continue;
    if (mode != select_mode::random) return i;
    // Reservoir sampling: each of the k ready cases is kept with chance 1/k.
    if (random_next() % ++ready == 0) chosen = i;
  }
  return chosen;
}

// Step 2, every lock held: queues a node for `w` in every enabled channel case.
template <class At>
void enqueue_all_locked(std::size_t n, At at, waiter& w) {
  for (std::size_t i = 0; i < n; ++i) {
    select_case& c = at(i);
    if (c.enabled && c.lock() != nullptr) c.enqueue_locked(w, static_cast<std::uint32_t>(i));
  }
}

// Step 3, every lock held, nodes queued: the handshake with lock-free buffer
// operations (channel.hpp). A value or room that arrived in a buffer before
// the nodes were queued means go round again. Only the buffers: the rest of
// readiness cannot change while every lock is held, and this select's own
// nodes (now queued) must not count as partners.
template <class At>
bool buffers_ready_locked(std::size_t n, At at) {
  for (std::size_t i = 0; i < n; ++i) {
    const select_case& c = at(i);
    if (c.enabled && c.buffer_ready_locked()) return true;
  }
  return false;
}

// Step 4: removes the nodes queued in step 2, with every lock held
// (dequeue_all_locked) or after the wait, taking each lock (dequeue_all).
template <class At>
void dequeue_all_locked(std::size_t n, At at) {
  for (std::size_t i = 0; i < n; ++i) {
    select_case& c = at(i);
    if (c.enabled && c.lock() != nullptr) c.dequeue_locked();
  }
}
template <class At>
void dequeue_all(std::size_t n, At at) {
  for (std::size_t i = 0; i < n; ++i) {
    select_case& c = at(i);
    if (c.enabled && c.lock() != nullptr) c.dequeue();
  }
}

// The engine: Go's select. Poll every enabled case under all locks; complete
// one ready case, or queue a node in every channel and wait for a partner, a
// stop or the earliest on_after deadline.
template <std::size_t Inline, class At>
std::optional<std::size_t> run_select(std::size_t n, At at, select_mode mode,
                                      const std::stop_token& token) {
  using case_clock = select_case::clock;
  if (std::optional<std::size_t> k = try_lock_free_cases(n, at, mode)) {
    at(*k).finish();
    return *k;
  }
  lock_set<Inline> locks(n, at);
  const auto [deadline, deadline_case] = earliest_deadline(n, at);
  for (;;) {
    locks.lock();
    const case_clock::time_point now =
        deadline != case_clock::time_point::max() ? case_clock::now() : case_clock::time_point{};
    if (const std::size_t chosen = poll_locked(n, at, mode, now); chosen != no_case) {
      wait_node* partner = nullptr;
      const bool done = at(chosen).complete_locked(partner);
      locks.unlock();
      fire_all(partner);
      if (!done) continue;
      at(chosen).finish();
      return chosen;
    }
    if (mode == select_mode::nonblocking) {
      locks.unlock();
      return std::nullopt;
    }
    if (token.stop_requested()) {
      locks.unlock();
      throw_cancelled(token);
    }
    waiter w;
    enqueue_all_locked(n, at, w);
    if (buffers_ready_locked(n, at)) {
      dequeue_all_locked(n, at);
      locks.unlock();
      continue;
    }
    locks.unlock();
    waiter::outcome o;
    {
      channel_wait_scope blocked("select");
      o = w.wait(token, deadline);
    }
    dequeue_all(n, at);
    switch (o) {
      case waiter::outcome::fired: {
        const std::size_t k = w.fired_index();
        if (at(k).woken_to_retry()) continue;
        at(k).finish();
        return k;
      }
      case waiter::outcome::timed_out:
        at(deadline_case).finish();
        return deadline_case;
      case waiter::outcome::stopped:
        break;
    }
    throw_cancelled(token);
  }
}

template <class... Cases>
std::optional<std::size_t> select_pack(select_mode mode, const std::stop_token& token,
                                       Cases&... cases) {
  // The lock set's inline size: one slot per case (at least one).
  constexpr std::size_t inline_locks = sizeof...(Cases) == 0 ? 1 : sizeof...(Cases);
  std::array<select_case*, sizeof...(Cases)> all{static_cast<select_case*>(&cases)...};
  return run_select<inline_locks>(
      all.size(), [&](std::size_t i) -> select_case& { return *all[i]; }, mode, token);
}

template <class R>
std::optional<std::size_t> select_range(select_mode mode, const std::stop_token& token, R& cases) {
  auto first = std::ranges::begin(cases);
  return run_select<64>(
      static_cast<std::size_t>(std::ranges::size(cases)),
      [&](std::size_t i) -> select_case& {
        return first[static_cast<std::ranges::range_difference_t<R>>(i)];
      },
      mode, token);
}

template <class R>
concept select_case_range = std::ranges::random_access_range<R> && std::ranges::sized_range<R> &&
    select_case_type<std::ranges::range_value_t<R>>;

}  // namespace detail

// Base of the case types: `.when(false)` disables a case (Go's nil channel).
template <class Derived>
class case_base : public detail::select_case {
 public:
  Derived& when(bool enabled_) & noexcept {
    enabled = enabled_;
    return static_cast<Derived&>(*this);
  }
  Derived&& when(bool enabled_) && noexcept {
    enabled = enabled_;
    return static_cast<Derived&&>(*this);
  }

 protected:
  ~case_base() = default;  // cases are values: never destroyed through this base
};

// A receive case: on_recv(ch, fn). fn takes std::optional<T> (nullopt: closed
// and drained), the value (T, const T&, T&&; closed: select throws
// channel_closed) or nothing; without fn the value stays in the case (take()).
template <class T, class F = detail::keep_value>
class recv_case final : public case_base<recv_case<T, F>> {
  static_assert(detail::recv_callback<F, T>,
                "leash::on_recv: the callback must be callable as f(T), f(const T&), f(T&&), "
                "f(std::optional<T>) (by value, const& or &&) or f(), with T the channel's value "
                "type; T& and std::optional<T>& cannot bind the value a receive delivers");

 public:
  recv_case(channel<T>& ch, F fn) : channel_(&ch), fn_(std::move(fn)) {}

  // The value received when this case fired (nullopt: closed); moves it out.
  std::optional<T> take() noexcept { return std::move(value_); }

 private:
  using access = detail::channel_access<T>;
  using clock = detail::select_case::clock;

  detail::spinlock* lock() const noexcept override { return &access::lock(*channel_); }
  detail::lock_free_result try_lock_free() noexcept override {
    value_.reset();
    return access::recv_lock_free(*channel_, value_);
  }
  bool ready_locked(clock::time_point) const noexcept override {
    return access::recv_ready_locked(*channel_);
  }
  bool buffer_ready_locked() const noexcept override { return access::buffer_has_value(*channel_); }
  bool complete_locked(detail::wait_node*& partner) noexcept override {
    value_.reset();
    return access::recv_locked(*channel_, value_, partner) != channel_status::empty;
  }
  void enqueue_locked(detail::waiter& w, std::uint32_t index) noexcept override {
    value_.reset();
    node_ = detail::wait_node{&w, index, &value_};
    access::recv_queue(*channel_).push_back(&node_);
  }
  void dequeue_locked() noexcept override { access::recv_queue(*channel_).remove(&node_); }
  void dequeue() noexcept override {
    access::dequeue(*channel_, access::recv_queue(*channel_), node_);
  }
  bool woken_to_retry() const noexcept override { return node_.retry; }
  void finish() override {
    if constexpr (std::is_same_v<F, detail::keep_value>) {
      return;  // the value stays for take()
    } else if constexpr (detail::recv_takes_optional<F, T>) {
      std::invoke(fn_, std::move(value_));
    } else if constexpr (detail::recv_takes_value<F, T>) {
      if (!value_) throw detail::recv_on_closed();
      std::invoke(fn_, std::move(*value_));
    } else if constexpr (std::is_invocable_v<F&>) {
      std::invoke(fn_);
    }
  }

  channel<T>* channel_;
  F fn_;
  std::optional<T> value_;
  detail::wait_node node_;
};

// A send case: on_send(ch, value, fn). A `value` of type T, lvalue or rvalue,
// is referenced and moved from only if this case delivers it; a const or
// converted value is stored in the case (Stored: T&, T&& or T). A case
// referencing an rvalue can be neither copied nor moved.
template <class T, class Stored, class F>
class send_case final : public case_base<send_case<T, Stored, F>> {
 public:
  template <class V>
  send_case(channel<T>& ch, V&& value, F fn)
      : channel_(&ch), value_(std::forward<V>(value)), fn_(std::move(fn)) {}

 private:
  using access = detail::channel_access<T>;
  using clock = detail::select_case::clock;

  T& item() noexcept { return value_.get(); }

  detail::spinlock* lock() const noexcept override { return &access::lock(*channel_); }
  detail::lock_free_result try_lock_free() noexcept override {
    closed_ = false;
    return access::send_lock_free(*channel_, item());
  }
  bool ready_locked(clock::time_point) const noexcept override {
    return access::send_ready_locked(*channel_);
  }
  bool buffer_ready_locked() const noexcept override { return access::buffer_has_room(*channel_); }
  bool complete_locked(detail::wait_node*& partner) noexcept override {
    const channel_status st = access::send_locked(*channel_, item(), partner);
    closed_ = st == channel_status::closed;
    return st != channel_status::full;
  }
  void enqueue_locked(detail::waiter& w, std::uint32_t index) noexcept override {
    node_ = detail::wait_node{&w, index, &item()};
    access::send_queue(*channel_).push_back(&node_);
  }
  void dequeue_locked() noexcept override { access::send_queue(*channel_).remove(&node_); }
  void dequeue() noexcept override {
    access::dequeue(*channel_, access::send_queue(*channel_), node_);
  }
  bool woken_to_retry() const noexcept override { return node_.retry; }
  void finish() override {
    if (closed_ || node_.closed) throw channel_closed();
    std::invoke(fn_);
  }

  channel<T>* channel_;
  detail::send_value<T, Stored> value_;
  F fn_;
  bool closed_ = false;
  detail::wait_node node_;
};

// A timeout case: fires when nothing else did within the duration. Arms no
// timer; the select's own wait carries the deadline.
template <class F>
class after_case final : public case_base<after_case<F>> {
  static_assert(std::is_invocable_v<F&> ||
                    std::is_invocable_v<F&, std::chrono::steady_clock::time_point>,
                "leash::on_after: the callback must be callable as f() or "
                "f(std::chrono::steady_clock::time_point) (by value or const&)");

 public:
  after_case(std::chrono::steady_clock::time_point deadline, F fn)
      : deadline_(deadline), fn_(std::move(fn)) {}

 private:
  using clock = detail::select_case::clock;

  detail::spinlock* lock() const noexcept override { return nullptr; }
  bool ready_locked(clock::time_point now) const noexcept override { return deadline_ <= now; }
  bool complete_locked(detail::wait_node*&) noexcept override { return true; }
  void enqueue_locked(detail::waiter&, std::uint32_t) noexcept override {}
  void dequeue() noexcept override {}
  void finish() override {
    if constexpr (std::is_invocable_v<F&>) {
      std::invoke(fn_);
    } else if constexpr (std::is_invocable_v<F&, clock::time_point>) {
      std::invoke(fn_, clock::now());  // the moment it fired: at or after the deadline
    }
  }
  clock::time_point deadline() const noexcept override { return deadline_; }

  clock::time_point deadline_;
  F fn_;
};

// A receive case on `ch`; fn(std::optional<T>), fn(T) or fn() runs if it is
// chosen (the shapes recv_case lists).
template <class T, class F>
recv_case<T, F> on_recv(channel<T>& ch, F fn) {
  return recv_case<T, F>(ch, std::move(fn));
}
// A receive case without callback: read the value with take().
template <class T>
recv_case<T> on_recv(channel<T>& ch) {
  return recv_case<T>(ch, detail::keep_value{});
}

// A send case of `value` on `ch`; fn() runs if it is chosen. `value` of type T
// (an lvalue or std::move(x)) stays the caller's unless the case delivers it,
// so the case must not outlive it: build the case inside the select call.
template <class T, class V, class F>
requires std::is_same_v<V, T&> || std::is_same_v<V, T> || std::is_constructible_v<T, V&&>
auto on_send(channel<T>& ch, V&& value, F fn) {
  using stored = std::conditional_t<std::is_same_v<V, T&>, T&,
                                    std::conditional_t<std::is_same_v<V, T>, T&&, T>>;
  return send_case<T, stored, F>(ch, std::forward<V>(value), std::move(fn));
}

// A case that fires after `d` if nothing else fired first; fn() or
// fn(time_point) runs then.
template <class Rep, class Period, class F>
after_case<F> on_after(std::chrono::duration<Rep, Period> d, F fn) {
  return after_case<F>(detail::deadline_after(d), std::move(fn));
}

// Waits until one case can proceed, completes it, runs its callback and
// returns its index; random among ready cases. Blocks; cancellable; throws
// cancelled, channel_closed (a chosen send on a closed channel).
template <detail::select_case_type... Cases>
std::size_t select(const std::stop_token& token, Cases&&... cases) {
  return *detail::select_pack(detail::select_mode::random, token, cases...);
}
template <detail::select_case_type... Cases>
std::size_t select(Cases&&... cases) {
  return select(detail::ambient_token_ref(), cases...);
}

// select, but the first ready case in argument order wins (priorities).
template <detail::select_case_type... Cases>
std::size_t select_biased(const std::stop_token& token, Cases&&... cases) {
  return *detail::select_pack(detail::select_mode::biased, token, cases...);
}
template <detail::select_case_type... Cases>
std::size_t select_biased(Cases&&... cases) {
  return select_biased(detail::ambient_token_ref(), cases...);
}

// Completes a ready case if there is one (random among them) and returns its
// index; nullopt if none was ready (Go's default). Never blocks.
template <detail::select_case_type... Cases>
std::optional<std::size_t> try_select(Cases&&... cases) {
  return detail::select_pack(detail::select_mode::nonblocking, std::stop_token(), cases...);
}

// The dynamic forms, over a random-access range of cases of one type.
template <detail::select_case_range R>
std::size_t select(const std::stop_token& token, R&& cases) {
  return *detail::select_range(detail::select_mode::random, token, cases);
}
template <detail::select_case_range R>
std::size_t select(R&& cases) {
  return select(detail::ambient_token_ref(), cases);
}
template <detail::select_case_range R>
std::optional<std::size_t> try_select(R&& cases) {
  return detail::select_range(detail::select_mode::nonblocking, std::stop_token(), cases);
}

}  // namespace leash::inline v0
// ---- leash/ticker.hpp ----
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
class ticker_core final : public job {
 public:
  using clock = std::chrono::steady_clock;

  ticker_core(tick_callback* fn, tick_schedule schedule, std::stop_token parent, std::string name)
      : fn_(fn),
        schedule_(schedule),
        state_(nullptr, std::move(parent), clock::time_point::max(), std::move(name)) {}

  // The loop. Runs on a runtime thread (a job, or a nursery task).
  void run() noexcept override {
    std::shared_ptr<ticker_core> self = std::move(keep_alive);  // may be the last owner
    {
      ambient_guard installed(&state_, "leash::ticker");  // callbacks see the ticker's token
      loop();
    }
    object_registry::instance().remove(registry_id);
    std::lock_guard lock(mutex_);
    exited_ = true;
    loop_thread_ = {};  // the thread goes back to the cache: it may run another ticker
    changed_.notify_all();
  }

  // Stops the loop; unless called from the loop's own thread (a callback),
  // waits until it ended.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      changed_.notify_all();
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
    schedule_.reset(period, clock::now());
    ++generation_;
    changed_.notify_all();
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
      const clock::time_point now = clock::now();
      if (now < schedule_.deadline()) {
        // leash's stop-aware wait: wakes for stop(), reset(), or the parent token.
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
      if (generation_ == generation) schedule_.done(clock::now());  // else reset() moved it
    }
  }

  tick_callback* fn_;                // owned by the ticker; not touched after exited_
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
    auto core = std::make_shared<detail::ticker_core>(
        fn_.get(), detail::tick_schedule(options_.policy, period, clock::now(), options_.first),
        parent, options_.name);
    core->registry_id = detail::object_registry::instance().add(detail::object_snapshot::ticker,
                                                                options_.name, site_);
    // Published before the loop starts: a callback may call stop() or reset() at once.
    std::shared_ptr<detail::ticker_core> previous = std::exchange(core_, core);
    observed_ = false;
    try {
      if (nursery_ == nullptr) {
        core->keep_alive = core;  // the job owns itself until its loop ends
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
// ---- leash/timer_channel.hpp ----
// leash/timer_channel.hpp: time as a channel, Go's time.After and time.Tick.
// Prevents: time.Tick's ticker that can never be stopped, and time.After in a
// loop keeping a timer alive per iteration until it fires. Here both are scope
// objects: the timer is removed when the object dies.
//
//   auto tick = leash::tick(100ms);
//   auto give_up = leash::after(2s);
//   for (bool done = false; !done;) {
//     leash::select(leash::on_recv(tick, [&] { poll(); }),
//                   leash::on_recv(give_up, [&] { done = true; }));
//   }  // ~timer_channel: no timer left behind
//
// after(d) delivers one time point, d from now. tick(p) delivers one every p,
// on the grid start + k*p; the channel holds one value, so a slow reader drops
// ticks instead of queuing them (Go's behaviour). Neither is ever closed.
//
// Guarantees. Blocks: recv (cancellable; throws cancelled). The timer callback
// runs on leash's shared timer thread and never blocks. Thread-safe: recv and
// try_recv from any thread; construct and destroy on one. After the destructor
// returns, the timer thread no longer touches the object.


#include <chrono>
#include <mutex>
#include <optional>
#include <stop_token>


namespace leash::inline v0 {

class timer_channel final : detail::timer_client {
 public:
  using clock = std::chrono::steady_clock;

  ~timer_channel() {
    detail::timer_handle h;
    {
      std::lock_guard lock(mutex_);
      stopped_ = true;  // a callback running now will not re-arm
      h = handle_;
    }
    detail::timer_service::instance().cancel(h);  // waits for a running callback
  }
  timer_channel(const timer_channel&) = delete;
  timer_channel& operator=(const timer_channel&) = delete;

  // Receives the next time point (when the timer fired). Blocks; cancellable;
  // throws cancelled.
  clock::time_point recv() { return recv(detail::ambient_token_ref()); }
  clock::time_point recv(const std::stop_token& token) { return *channel_.recv(token); }
  // The time point if one is ready. Never blocks.
  recv_result<clock::time_point> try_recv() { return channel_.try_recv(); }

  // The underlying channel, for select (on_recv accepts the timer_channel too).
  leash::channel<clock::time_point>& channel() noexcept { return channel_; }

 private:
  friend timer_channel after_until(clock::time_point);
  template <class Rep, class Period>
  friend timer_channel tick(std::chrono::duration<Rep, Period>);

  timer_channel(clock::time_point first, clock::duration period) : period_(period) {
    std::lock_guard lock(mutex_);
    handle_ = detail::timer_service::instance().schedule(first, this);
  }

  void on_timer() noexcept override {
    const clock::time_point now = clock::now();
    channel_.try_send(now);  // full: the reader is slow, the tick is dropped
    if (period_ == clock::duration::zero()) return;
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    // Skip missed ticks: the next one lands on the grid, after now.
    clock::time_point next = handle_.when + period_;
    if (next <= now) next += ((now - next) / period_ + 1) * period_;
    handle_ = detail::timer_service::instance().schedule(next, this);
  }

  const clock::duration period_;  // zero: one-shot
  leash::channel<clock::time_point> channel_{1};
  std::mutex mutex_;  // guards handle_ and stopped_ against the timer thread
  detail::timer_handle handle_;
  bool stopped_ = false;
};

// A channel that receives one time point at `deadline`.
[[nodiscard]] inline timer_channel after_until(timer_channel::clock::time_point deadline) {
  return timer_channel(deadline, timer_channel::clock::duration::zero());
}

// A channel that receives one time point `d` from now (Go's time.After).
template <class Rep, class Period>
[[nodiscard]] timer_channel after(std::chrono::duration<Rep, Period> d) {
  return after_until(detail::deadline_after(d));
}

// A channel that receives a time point every `period` until destroyed (Go's
// time.Tick, but stoppable). Throws usage_error if period is not positive.
template <class Rep, class Period>
[[nodiscard]] timer_channel tick(std::chrono::duration<Rep, Period> period) {
  const auto p = std::chrono::ceil<timer_channel::clock::duration>(period);
  if (p <= p.zero()) throw usage_error("leash::tick: the period must be positive");
  return timer_channel(detail::deadline_after(p), p);
}

// A select case receiving from a timer channel.
template <class F>
auto on_recv(timer_channel& t, F fn) {
  return on_recv(t.channel(), std::move(fn));
}

}  // namespace leash::inline v0
