// SPDX-License-Identifier: BSL-1.0
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
#pragma once

#include "detail/config.hpp"

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

#include "detail/leak_signal.hpp"
#include "detail/registry.hpp"
#include "detail/source_location.hpp"
#include "detail/type_name.hpp"
#include "detail/uncaught.hpp"
#include "errors.hpp"

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
