// SPDX-License-Identifier: BSL-1.0
// leash/policies.hpp: completion policies over a nursery of tasks.
// Prevents: a hand-rolled race whose losers run on after the winner
// returned, and an errgroup that keeps only the first of several errors.
//
//   int v = leash::race([] { return ask("a"); }, [] { return ask("b"); });
//   auto all = leash::all_settled([] { return load(1); }, [] { return load(2); });
//   leash::rethrow_failures(all);  // every failure at once, as leash::failures
//
// Model. Each policy opens an inner nursery, runs every callable as one of
// its tasks (f() or f(std::stop_token), as nursery::spawn), and returns only
// after every task ended: no loser outlives the call.
//
//   race(fs...)         the first value wins; the others are cancelled
//   first_n(n, fs...)   the first n values, in the order they came; the rest cancelled
//   all_settled(fs...)  every outcome, in argument order; nothing is cancelled
//
// race and first_n throw leash::failures, listing every failure, as soon as
// too few tasks are left to succeed (the rest are cancelled). A value that
// comes after the policy has enough is destroyed in its task, before the
// policy returns. A task ending with cancelled because the policy stopped it
// is not a failure. Every callable returns the same value type.
//
// In a coroutine task the same policies have awaitable forms over callables
// returning coro<T>: `co_await async_race(fs...)`, `co_await
// async_first_n(n, fs...)`, `co_await async_all_settled(fs...)`. They suspend
// the task, not its worker, while the inner tasks run.
//
// Guarantees. Blocks: the thread forms, until every task ended. Cancelled:
// an enclosing scope's stop cancels the tasks and the policy throws
// cancelled (deadline_exceeded after a deadline). Throws: failures as above,
// usage_error for a first_n count of 0 or more than the callables,
// resource_exhausted when no thread can be had.
#pragma once

#include "detail/config.hpp"

#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "coro.hpp"
#include "detail/coro_task.hpp"
#include "detail/task_record.hpp"
#include "errors.hpp"
#include "nursery.hpp"

namespace leash::inline v0 {

// One task's outcome under all_settled: its value or its exception, and the
// task's name. value() rethrows the exception of a failed task.
template <class T>
class outcome {
 public:
  static outcome success(T v, std::string task_name) {
    return outcome(std::in_place_index<0>, std::move(v), std::move(task_name));
  }
  static outcome failure(std::exception_ptr e, std::string task_name) {
    return outcome(std::in_place_index<1>, std::move(e), std::move(task_name));
  }

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }
  T& value() & {
    rethrow_if_failed();
    return std::get<0>(v_);
  }
  const T& value() const& {
    rethrow_if_failed();
    return std::get<0>(v_);
  }
  T&& value() && {
    rethrow_if_failed();
    return std::get<0>(std::move(v_));
  }
  // The task's exception; null for a value.
  std::exception_ptr error() const noexcept { return has_value() ? nullptr : std::get<1>(v_); }
  const std::string& task_name() const noexcept { return name_; }

 private:
  template <std::size_t I, class V>
  outcome(std::in_place_index_t<I> i, V&& v, std::string name)
      : v_(i, std::forward<V>(v)), name_(std::move(name)) {}

  void rethrow_if_failed() const {
    if (!has_value()) std::rethrow_exception(std::get<1>(v_));
  }

  std::variant<T, std::exception_ptr> v_;
  std::string name_;
};

// Throws leash::failures holding every failed outcome, in argument order;
// returns when none failed (Go's errgroup, keeping all the errors).
template <class T>
void rethrow_failures(const std::vector<outcome<T>>& outcomes,
                      std::string context = "leash::all_settled") {
  std::vector<failures::entry> entries;
  for (const outcome<T>& o : outcomes) {
    if (!o.has_value()) entries.push_back({o.error(), o.task_name(), {}});
  }
  if (!entries.empty()) throw failures(std::move(context), std::move(entries));
}

namespace detail {

// The value type of a policy's callable: what it returns (thread form) or
// what its coro yields (coroutine form).
template <class F>
using policy_result = typename task_result_of<std::decay_t<F>>::type;

template <bool Coro, class F>
struct policy_value_of {
  static_assert(!coro_result<policy_result<F>>::is_coro,
                "leash: a callable returning leash::coro needs the awaitable form "
                "(co_await leash::async_race / async_first_n / async_all_settled)");
  using type = policy_result<F>;
};
template <class F>
struct policy_value_of<true, F> {
  static_assert(coro_result<policy_result<F>>::is_coro,
                "leash: async_race / async_first_n / async_all_settled take callables returning "
                "leash::coro<T>");
  using type = typename coro_result<policy_result<F>>::type;
};

// The one value type every callable of a policy shares.
template <bool Coro, class F, class... Rest>
struct policy_value {
  using type = typename policy_value_of<Coro, F>::type;
  static_assert((std::is_same_v<type, typename policy_value_of<Coro, Rest>::type> && ...),
                "leash: race / first_n / all_settled need callables that all return the same "
                "value type T");
  static_assert(!std::is_void_v<type>,
                "leash: race / first_n / all_settled need callables that return a value; for "
                "tasks without one use run_nursery");
};
template <bool Coro, class... F>
using policy_value_t = typename policy_value<Coro, F...>::type;

// Calls a policy's callable as the nursery calls a task: f() or f(token).
template <class F>
decltype(auto) call_policy_task(F& f, const std::stop_token& token) {
  if constexpr (takes_stop_token<F>) {
    return std::invoke(f, token);
  } else {
    return std::invoke(f);
  }
}

// co_await settle_call(f, token): the value of the coro f returns, or the
// exception it (or f itself) threw, without a rethrow: a cancelled loser
// pays for one throw, not two.
template <class F, class T = typename coro_result<policy_result<F>>::type>
settle_awaiter<T> settle_call(F& f, const std::stop_token& token) {
  try {
    return settle(call_policy_task(f, token));
  } catch (...) {
    return settle_awaiter<T>(std::current_exception());
  }
}

inline std::string policy_task_name(const char* context, std::size_t i) {
  return std::string(context) + "[" + std::to_string(i) + "]";
}

// Shared by the tasks of race and first_n: the values wanted, the values
// had, and the failures. Stops the inner nursery once it has enough values
// or too few tasks are left to succeed.
template <class T>
class first_values {
 public:
  first_values(const char* context, std::size_t wanted, std::size_t tasks)
      : context_(context), wanted_(wanted), tasks_(tasks) {}

  void open(nursery& n) noexcept { scope_ = &n; }

  // A value that comes after enough values is destroyed as this returns.
  void succeed(T v) {
    bool enough = false;
    {
      std::lock_guard lock(mutex_);
      if (values_.size() == wanted_) return;
      values_.push_back(std::move(v));
      enough = values_.size() == wanted_;
    }
    if (enough) scope_->cancel(std::string(context_) + ": enough tasks succeeded");
  }

  // A cancelled after the policy stopped its nursery is no failure. Once
  // enough values came, no failure matters: it is dropped unexamined (a
  // rethrow to classify it would cost each cancelled loser a second throw).
  void fail(std::exception_ptr e, std::string task_name) {
    if (enough()) return;
    try {
      std::rethrow_exception(e);
    } catch (const cancelled&) {
      if (scope_->stop_requested()) return;
    } catch (...) {
    }
    bool impossible = false;
    {
      std::lock_guard lock(mutex_);
      failures_.push_back({std::move(e), std::move(task_name), {}});
      impossible = failures_.size() == tasks_ - wanted_ + 1;
    }
    if (impossible) scope_->cancel(std::string(context_) + ": too few tasks can succeed");
  }

  bool enough() {
    std::lock_guard lock(mutex_);
    return values_.size() == wanted_;
  }

  // After every task ended: the values, or failures listing every one.
  std::vector<T> take() {
    if (values_.size() < wanted_) throw failures(context_, std::move(failures_));
    return std::move(values_);
  }

 private:
  const char* context_;
  std::size_t wanted_;
  std::size_t tasks_;
  nursery* scope_ = nullptr;
  std::mutex mutex_;  // guards the vectors while tasks run
  std::vector<T> values_;
  std::vector<failures::entry> failures_;
};

template <class T, class F>
void spawn_first_value(nursery& n, first_values<T>& st, std::string name, F&& f) {
  n.spawn(name, [&st, name, f = std::forward<F>(f)](std::stop_token token) mutable {
    try {
      st.succeed(call_policy_task(f, token));
    } catch (...) {
      st.fail(std::current_exception(), name);
    }
  });
}

template <class T, class F>
void spawn_async_first_value(nursery& n, first_values<T>& st, std::string name, F&& f) {
  n.spawn(name, [&st, name, f = std::forward<F>(f)](std::stop_token token) mutable -> coro<void> {
    settled_result<T> r = co_await settle_call(f, token);
    if (r.error) {
      st.fail(std::move(r.error), name);
    } else {
      st.succeed(std::move(*r.value));
    }
  });
}

inline nursery_options policy_options(const char* context) {
  nursery_options o;
  o.name = context;
  return o;
}

template <class T, class... F>
std::vector<T> first_successes(const char* context, std::size_t wanted, F&&... fs) {
  first_values<T> st(context, wanted, sizeof...(F));
  run_nursery(policy_options(context), [&](nursery& n) {
    st.open(n);
    std::size_t i = 0;
    (spawn_first_value(n, st, policy_task_name(context, i++), std::forward<F>(fs)), ...);
  });
  return st.take();
}

template <class T, class... F>
LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<std::vector<T>> async_first_successes(
    const char* context, std::size_t wanted, F... fs) {
  first_values<T> st(context, wanted, sizeof...(F));
  auto body = [&](nursery& n) -> coro<void> {
    st.open(n);
    std::size_t i = 0;
    (spawn_async_first_value(n, st, policy_task_name(context, i++), std::move(fs)), ...);
    co_return;
  };
  co_await run_nursery(policy_options(context), body);
  co_return st.take();
}

// all_settled's slots: task i writes slot i once; the nursery's join orders
// those writes before the read.
template <class T>
using settled_slots = std::vector<std::optional<outcome<T>>>;

template <class T>
std::vector<outcome<T>> settled(settled_slots<T>& slots) {
  std::vector<outcome<T>> out;
  out.reserve(slots.size());
  for (auto& s : slots)
    out.push_back(std::move(*s));
  return out;
}

template <class T, class F>
void spawn_settled(nursery& n, std::optional<outcome<T>>& slot, std::string name, F&& f) {
  n.spawn(name, [&slot, name, f = std::forward<F>(f)](std::stop_token token) mutable {
    try {
      slot.emplace(outcome<T>::success(call_policy_task(f, token), name));
    } catch (...) {
      slot.emplace(outcome<T>::failure(std::current_exception(), name));
    }
  });
}

template <class T, class F>
void spawn_async_settled(nursery& n, std::optional<outcome<T>>& slot, std::string name, F&& f) {
  n.spawn(name, [&slot, name, f = std::forward<F>(f)](std::stop_token token) mutable -> coro<void> {
    settled_result<T> r = co_await settle_call(f, token);
    slot.emplace(r.error ? outcome<T>::failure(std::move(r.error), name)
                         : outcome<T>::success(std::move(*r.value), name));
  });
}

template <class T, class... F>
LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<std::vector<outcome<T>>> async_settle(F... fs) {
  constexpr const char* context = "leash::async_all_settled";
  settled_slots<T> slots(sizeof...(F));
  auto body = [&](nursery& n) -> coro<void> {
    std::size_t i = 0;
    ((spawn_async_settled<T>(n, slots[i], policy_task_name(context, i), std::move(fs)), ++i), ...);
    co_return;
  };
  co_await run_nursery(policy_options(context), body);
  co_return settled(slots);
}

template <class T>
LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<T> first_of(coro<std::vector<T>> values) {
  std::vector<T> v = co_await std::move(values);
  co_return std::move(v.front());
}

inline void check_first_n(const char* context, std::size_t n, std::size_t tasks) {
  if (n == 0 || n > tasks) {
    throw usage_error(std::string(context) + ": n must be between 1 and the number of callables (" +
                      std::to_string(tasks) + "), got " + std::to_string(n));
  }
}

}  // namespace detail

// Runs every callable as a task; returns the first value, after cancelling
// and joining the others. Throws failures, listing each, if every task failed.
template <class... F>
detail::policy_value_t<false, F...> race(F&&... fs) {
  using T = detail::policy_value_t<false, F...>;
  return std::move(detail::first_successes<T>("leash::race", 1, std::forward<F>(fs)...).front());
}

// Runs every callable as a task; returns the first n values in the order
// they came, after cancelling and joining the others. Throws failures, listing
// each, once fewer than n tasks can succeed.
template <class... F>
std::vector<detail::policy_value_t<false, F...>> first_n(std::size_t n, F&&... fs) {
  using T = detail::policy_value_t<false, F...>;
  detail::check_first_n("leash::first_n", n, sizeof...(F));
  return detail::first_successes<T>("leash::first_n", n, std::forward<F>(fs)...);
}

// Runs every callable as a task and returns each outcome, in argument order.
// A failure cancels nothing; see rethrow_failures.
template <class... F>
std::vector<outcome<detail::policy_value_t<false, F...>>> all_settled(F&&... fs) {
  using T = detail::policy_value_t<false, F...>;
  constexpr const char* context = "leash::all_settled";
  detail::settled_slots<T> slots(sizeof...(F));
  run_nursery(detail::policy_options(context), [&](nursery& n) {
    std::size_t i = 0;
    ((detail::spawn_settled<T>(n, slots[i], detail::policy_task_name(context, i),
                               std::forward<F>(fs)),
      ++i),
     ...);
  });
  return detail::settled(slots);
}

// The awaitable forms, in a coroutine task, over callables returning
// coro<T>. The callables are moved into the returned coro.
template <class... F>
coro<detail::policy_value_t<true, F...>> async_race(F... fs) {
  using T = detail::policy_value_t<true, F...>;
  return detail::first_of<T>(
      detail::async_first_successes<T>("leash::async_race", 1, std::move(fs)...));
}

template <class... F>
coro<std::vector<detail::policy_value_t<true, F...>>> async_first_n(std::size_t n, F... fs) {
  using T = detail::policy_value_t<true, F...>;
  detail::check_first_n("leash::async_first_n", n, sizeof...(F));
  return detail::async_first_successes<T>("leash::async_first_n", n, std::move(fs)...);
}

template <class... F>
coro<std::vector<outcome<detail::policy_value_t<true, F...>>>> async_all_settled(F... fs) {
  return detail::async_settle<detail::policy_value_t<true, F...>>(std::move(fs)...);
}

}  // namespace leash::inline v0
