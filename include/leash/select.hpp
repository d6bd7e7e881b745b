// SPDX-License-Identifier: BSL-1.0
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
//   - A timer channel case (on_recv(after(d), fn), on_recv(tick(p), fn)) is
//     a receive case of std::chrono::steady_clock::time_point with the same
//     shapes; the channel is never closed, so an optional callback always
//     gets a value.
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
#pragma once

#include "detail/config.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <vector>

#include "channel.hpp"
#include "detail/virtual_clock.hpp"
#include "detail/waiter.hpp"

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
  virtual bool complete_locked(fire_link*& partner) noexcept = 0;
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
[[noreturn]] inline void throw_recv_on_closed() {
  throw channel_closed(
      "leash::select: a receive case's channel is closed and its callback takes a value; "
      "take std::optional<T> to be told of the close");
}

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

// Marsaglia's xorshift64 shift triple: one of the triples with the full
// period 2^64 - 1.
inline constexpr int xorshift_a = 13, xorshift_b = 7, xorshift_c = 17;

// A fast per-thread generator for the random choice among ready cases.
inline std::uint64_t random_next() noexcept {
  thread_local std::uint64_t state = [] {
    std::uint64_t seed = reinterpret_cast<std::uintptr_t>(&state) ^
                         static_cast<std::uint64_t>(clock::now().time_since_epoch().count());
    return seed | 1;
  }();
  state ^= state << xorshift_a;
  state ^= state >> xorshift_b;
  state ^= state << xorshift_c;
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

// How a select chooses among ready cases.
enum class select_mode { random, biased };

// The fast path of a select whose cases are all on buffered channels (the
// common fan-in): Go's poll order, without locks. The cases are tried in a
// random order (argument order for select_biased) through the channels'
// lock-free buffers, and the first that completes is the choice: the first
// ready case of a uniformly random order is a uniformly random ready case.
// Returns that case's index, or nullopt when the locked path must decide (a
// case this path cannot judge, none ready, more than lock_free_max_cases).
// A fan-in select has few cases; the order array then fits on the stack, and
// a larger select is served by the locked path, which scales with its cases.
inline constexpr std::size_t lock_free_max_cases = 8;

template <class At>
std::optional<std::size_t> try_lock_free_cases(std::size_t n, At at, select_mode mode) {
  if (n == 0 || n > lock_free_max_cases) return std::nullopt;
  std::array<std::uint8_t, lock_free_max_cases> order;
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
    if (mode == select_mode::biased) return i;
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

// What one pass of the engine did.
struct select_step {
  enum kind_t {
    chosen,   // case `index` completed: run its callback
    retry,    // go round again (a partner vanished, a buffer changed, a retry wake-up)
    queued,   // a node waits in every channel: wait, then select_after_wait
    stopped,  // the token stopped before any case could complete
    none,     // nothing was ready and the select may not wait (try_select)
  } kind;
  std::size_t index = no_case;
};

// One pass under every lock: complete a ready case (poll), or else, when `w`
// is given and the token has not stopped, queue a node for `w` in every
// channel (enqueue) and look at the buffers once more (recheck).
template <std::size_t Inline, class At>
select_step select_attempt(std::size_t n, At at, select_mode mode, lock_set<Inline>& locks,
                           bool timed, const std::stop_token& token, waiter* w) {
  using case_clock = select_case::clock;
  locks.lock();
  const case_clock::time_point now = timed ? case_clock::now() : case_clock::time_point{};
  if (const std::size_t chosen = poll_locked(n, at, mode, now); chosen != no_case) {
    fire_link* partner = nullptr;
    const bool done = at(chosen).complete_locked(partner);
    locks.unlock();
    fire_all(partner);
    return done ? select_step{select_step::chosen, chosen} : select_step{select_step::retry};
  }
  select_step::kind_t kind = select_step::queued;
  if (w == nullptr) {
    kind = select_step::none;
  } else if (token.stop_requested()) {
    kind = select_step::stopped;
  } else {
    enqueue_all_locked(n, at, *w);
    if (buffers_ready_locked(n, at)) {
      dequeue_all_locked(n, at);
      kind = select_step::retry;
    }
  }
  locks.unlock();
  return {kind};
}

// After the wait for the nodes queued by select_attempt: removes them all
// (dequeue) and says what the wait chose.
template <class At>
select_step select_after_wait(std::size_t n, At at, waiter::outcome o, const waiter& w,
                              std::size_t deadline_case) {
  dequeue_all(n, at);
  switch (o) {
    case waiter::outcome::fired: {
      const std::size_t k = w.fired_index();
      if (at(k).woken_to_retry()) return {select_step::retry};
      return {select_step::chosen, k};
    }
    case waiter::outcome::timed_out:
      return {select_step::chosen, deadline_case};
    case waiter::outcome::stopped:
      break;
  }
  return {select_step::stopped};
}

// The engine: Go's select. Each pass polls every enabled case under all
// locks and completes one ready case, or queues a node in every channel and
// waits for a partner, a stop or the earliest on_after deadline. Without
// `may_wait` (try_select) it returns nullopt instead of waiting.
template <std::size_t Inline, class At>
std::optional<std::size_t> run_select(std::size_t n, At at, select_mode mode, bool may_wait,
                                      const std::stop_token& token) {
  if (std::optional<std::size_t> k = try_lock_free_cases(n, at, mode)) {
    at(*k).finish();
    return *k;
  }
  lock_set<Inline> locks(n, at);
  const auto [deadline, deadline_case] = earliest_deadline(n, at);
  const bool timed = deadline != select_case::clock::time_point::max();
  for (;;) {
    waiter w;
    select_step step = select_attempt(n, at, mode, locks, timed, token, may_wait ? &w : nullptr);
    if (step.kind == select_step::queued) {
      waiter::outcome o;
      {
        channel_wait_scope blocked("select");
        o = w.wait(token, deadline);
      }
      step = select_after_wait(n, at, o, w, deadline_case);
    }
    switch (step.kind) {
      case select_step::chosen:
        at(step.index).finish();
        return step.index;
      case select_step::none:
        return std::nullopt;
      case select_step::stopped:
        throw_cancelled(token);
      default:
        break;  // retry
    }
  }
}

// The coroutine engine's wait: suspends the task until a node fires, the
// ambient state stops or `deadline` passes.
class select_suspension final : private timer_client {
 public:
  select_suspension(waiter& w, select_case::clock::time_point deadline) noexcept
      : waiter_(w), deadline_(deadline), wait_(w, ambient, "async_select") {}
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) {
    current_resumable->resume_at = h;
    if (deadline_ != select_case::clock::time_point::max()) {
      vclock_ = current_vclock();
      timer_ = schedule_timer(vclock_, deadline_, this);
    }
    return wait_.suspend();
  }
  waiter::outcome await_resume() noexcept {
    if (timer_.id != 0) cancel_timer(vclock_, timer_);
    return wait_.resumed();
  }

 private:
  void on_timer() noexcept override {
    if (waiter_.abandon(waiter::outcome::timed_out)) waiter_.arrive();
  }

  waiter& waiter_;
  select_case::clock::time_point deadline_;
  async_wait wait_;
  virtual_clock* vclock_ = nullptr;  // the timer's clock (null: real time)
  timer_handle timer_;
};

// The coroutine engine, after a first pass found nothing ready: run_select's
// loop, waiting by suspension. Cancelled by the task's ambient state.
template <std::size_t Inline, class At>
LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<std::size_t> run_select_async(std::size_t n, At at,
                                                                           select_mode mode) {
  lock_set<Inline> locks(n, at);
  const auto [deadline, deadline_case] = earliest_deadline(n, at);
  const bool timed = deadline != select_case::clock::time_point::max();
  for (;;) {
    waiter w(*current_resumable);
    select_step step = select_attempt(n, at, mode, locks, timed, ambient_token_ref(), &w);
    if (step.kind == select_step::queued) {
      const waiter::outcome o = co_await select_suspension(w, deadline);
      step = select_after_wait(n, at, o, w, deadline_case);
    }
    if (step.kind == select_step::chosen) {
      at(step.index).finish();
      co_return step.index;
    }
    if (step.kind == select_step::stopped) ambient->throw_cancelled();
  }
}

// What async_select returns: the cases (temporaries of the co_await
// expression, which live until it ends) and the engine's state.
template <class... Cases>
class [[nodiscard]] select_awaitable {
 public:
  select_awaitable(select_mode mode, Cases&... cases) noexcept
      : mode_(mode), cases_{static_cast<select_case*>(&cases)...} {}
  select_awaitable(const select_awaitable&) = delete;
  select_awaitable& operator=(const select_awaitable&) = delete;

  // A first pass, without waiting: a ready case completes here, no frame made.
  bool await_ready() {
    if (current_resumable == nullptr) {
      throw usage_error(
          "leash::async_select: only inside a coroutine task (nursery::spawn of a function "
          "returning leash::coro); use select elsewhere");
    }
    chosen_ = run_select<inline_locks>(cases_.size(), at(), mode_, false, std::stop_token());
    return chosen_.has_value();
  }
  void await_suspend(std::coroutine_handle<> h) {
    slow_.emplace(coro_access::release(run_select_async<inline_locks>(cases_.size(), at(), mode_)));
    slow_->await_suspend(h);
  }
  std::size_t await_resume() { return slow_ ? slow_->await_resume() : *chosen_; }

 private:
  // The lock set's inline size: one slot per case (at least one).
  static constexpr std::size_t inline_locks = sizeof...(Cases) == 0 ? 1 : sizeof...(Cases);
  auto at() noexcept {
    return [cases = cases_.data()](std::size_t i) -> select_case& { return *cases[i]; };
  }

  select_mode mode_;
  std::array<select_case*, sizeof...(Cases)> cases_;
  std::optional<std::size_t> chosen_;
  std::optional<coro_awaiter<std::size_t>> slow_;
};

template <class... Cases>
std::optional<std::size_t> select_pack(select_mode mode, bool may_wait,
                                       const std::stop_token& token, Cases&... cases) {
  // The lock set's inline size: one slot per case (at least one).
  constexpr std::size_t inline_locks = sizeof...(Cases) == 0 ? 1 : sizeof...(Cases);
  std::array<select_case*, sizeof...(Cases)> all{static_cast<select_case*>(&cases)...};
  return run_select<inline_locks>(
      all.size(), [&](std::size_t i) -> select_case& { return *all[i]; }, mode, may_wait, token);
}

// Lock pointers a select(range) holds without allocating: a fan-in over more
// distinct channels than this allocates one array per call (documented).
inline constexpr std::size_t range_inline_locks = 64;

template <class R>
std::optional<std::size_t> select_range(select_mode mode, bool may_wait,
                                        const std::stop_token& token, R& cases) {
  auto first = std::ranges::begin(cases);
  return run_select<range_inline_locks>(
      static_cast<std::size_t>(std::ranges::size(cases)),
      [&](std::size_t i) -> select_case& {
        return first[static_cast<std::iter_difference_t<decltype(first)>>(i)];
      },
      mode, may_wait, token);
}

// A sized random-access range of one case type: std::ranges::random_access_range
// and sized_range spelled with <iterator> alone (which provides ranges::begin,
// end and size), so that select.hpp does not include the whole of <ranges>.
template <class R>
concept sized_random_access = requires(R& r) {
  { std::ranges::begin(r) } -> std::random_access_iterator;
  std::ranges::end(r);
  std::ranges::size(r);
};
template <class R>
concept select_case_range = sized_random_access<R> &&
    select_case_type<std::iter_value_t<decltype(std::ranges::begin(std::declval<R&>()))>>;

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
  bool complete_locked(detail::fire_link*& partner) noexcept override {
    value_.reset();
    return access::recv_locked(*channel_, value_, partner) != channel_status::empty;
  }
  void enqueue_locked(detail::waiter& w, std::uint32_t index) noexcept override {
    value_.reset();
    node_ = detail::wait_node<T>(w, index, value_);
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
      if (!value_) detail::throw_recv_on_closed();
      std::invoke(fn_, std::move(*value_));
    } else if constexpr (std::is_invocable_v<F&>) {
      std::invoke(fn_);
    }
  }

  channel<T>* channel_;
  F fn_;
  std::optional<T> value_;
  detail::wait_node<T> node_;
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
  bool complete_locked(detail::fire_link*& partner) noexcept override {
    const channel_status st = access::send_locked(*channel_, item(), partner);
    closed_ = st == channel_status::closed;
    return st != channel_status::full;
  }
  void enqueue_locked(detail::waiter& w, std::uint32_t index) noexcept override {
    node_ = detail::wait_node<T>(w, index, item());
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
  detail::wait_node<T> node_;
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
  bool complete_locked(detail::fire_link*&) noexcept override { return true; }
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
  return *detail::select_pack(detail::select_mode::random, true, token, cases...);
}
template <detail::select_case_type... Cases>
std::size_t select(Cases&&... cases) {
  return select(detail::ambient_token_ref(), cases...);
}

// select, but the first ready case in argument order wins (priorities).
template <detail::select_case_type... Cases>
std::size_t select_biased(const std::stop_token& token, Cases&&... cases) {
  return *detail::select_pack(detail::select_mode::biased, true, token, cases...);
}
template <detail::select_case_type... Cases>
std::size_t select_biased(Cases&&... cases) {
  return select_biased(detail::ambient_token_ref(), cases...);
}

// Completes a ready case if there is one (random among them) and returns its
// index; nullopt if none was ready (Go's default). Never blocks.
template <detail::select_case_type... Cases>
std::optional<std::size_t> try_select(Cases&&... cases) {
  return detail::select_pack(detail::select_mode::random, false, std::stop_token(), cases...);
}

// co_await async_select(cases...), in a coroutine task: select that suspends
// the task instead of blocking its thread. Same choice, results, errors and
// callbacks; cancelled by the task's ambient scope, which reaches a suspended
// select at once. The cases may share channels with threads and with other
// coroutine tasks in any role. Throws usage_error outside a coroutine task.
template <detail::select_case_type... Cases>
detail::select_awaitable<std::remove_reference_t<Cases>...> async_select(Cases&&... cases) {
  return {detail::select_mode::random, cases...};
}

// async_select, but the first ready case in argument order wins.
template <detail::select_case_type... Cases>
detail::select_awaitable<std::remove_reference_t<Cases>...> async_select_biased(Cases&&... cases) {
  return {detail::select_mode::biased, cases...};
}

// The dynamic forms, over a random-access range of cases of one type.
template <detail::select_case_range R>
std::size_t select(const std::stop_token& token, R&& cases) {
  return *detail::select_range(detail::select_mode::random, true, token, cases);
}
template <detail::select_case_range R>
std::size_t select(R&& cases) {
  return select(detail::ambient_token_ref(), cases);
}
template <detail::select_case_range R>
std::optional<std::size_t> try_select(R&& cases) {
  return detail::select_range(detail::select_mode::random, false, std::stop_token(), cases);
}

}  // namespace leash::inline v0
