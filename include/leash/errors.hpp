// SPDX-License-Identifier: BSL-1.0
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
#pragma once

#include "detail/config.hpp"

#include <cstdio>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "detail/source_location.hpp"

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

// Every task of a virtual_time scope is blocked in a leash call that no timer
// can wake: the scope's tasks are cancelled and virtual_time::run throws this.
// what() lists each blocked task, its spawn site and the call it waits in.
class deadlock : public error {
 public:
  using error::error;
};

// A send on a closed channel (or a chosen select send case whose channel is
// closed). The value passed to send stays the caller's: it was not moved.
class channel_closed : public error {
 public:
  channel_closed() : error("leash::channel: send on closed channel") {}
  explicit channel_closed(const std::string& message) : error(message) {}
};

// Several tasks failed together: every task of a race, fewer successes than
// first_n needed, or rethrow_failures over all_settled's outcomes. Holds each
// failure, in the order they happened, with the task's name and spawn site;
// what() lists them all.
class failures : public error {
 public:
  struct entry {
    std::exception_ptr error;
    std::string task_name;
    source_location site;
  };

  failures(std::string context, std::vector<entry> entries)
      : error(describe(context, entries)), entries_(std::move(entries)) {}

  const std::vector<entry>& entries() const noexcept { return entries_; }
  std::size_t size() const noexcept { return entries_.size(); }

 private:
  static std::string describe(const std::string& context, const std::vector<entry>& entries) {
    std::string s = context + ": " + std::to_string(entries.size()) +
                    (entries.size() == 1 ? " task failed" : " tasks failed");
    for (const entry& e : entries) {
      s += "\n  task \"" + e.task_name + "\"";
      if (!e.site.empty()) s += " spawned at " + to_string(e.site);
      s += ": " + message_of(e.error);
    }
    return s;
  }

  static std::string message_of(const std::exception_ptr& p) {
    try {
      std::rethrow_exception(p);
    } catch (const std::exception& e) {
      return e.what();
    } catch (...) {
      return "a non-standard exception";
    }
  }

  std::vector<entry> entries_;
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
