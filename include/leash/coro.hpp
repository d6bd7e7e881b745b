// SPDX-License-Identifier: BSL-1.0
// leash/coro.hpp: coro<T>, a lazy coroutine task that costs no thread,
// sync_wait, the bridge from thread code into coroutine code, and offload,
// which runs a long blocking call without holding a coroutine worker.
// Prevents: Go's `go f()` whose result and panic nobody sees. A coro runs
// only when it is awaited, its value or exception goes to exactly that
// awaiter, and a coro dropped unawaited never runs (and warns: [[nodiscard]]).
//
//   leash::coro<int> answer() { co_return 42; }
//   leash::coro<int> twice() { co_return 2 * co_await answer(); }
//   int v = leash::sync_wait(twice());   // 84: runs on this thread
//
//   coro state              co_await std::move(c) / co_await f()    destroying the coro
//   not started             runs it to completion, then resumes     destroys the frame (and
//                           the awaiter with its value or            the parameters in it);
//                           exception; the frame is then freed       the body never ran
//   empty (moved from,      throws usage_error                       nothing
//   default, awaited)
//
// A coro is awaited once: `co_await f()`, or `co_await std::move(c)` for a
// named one (the awaiter takes the frame; c is left empty). Awaiting a coro
// is a plain call, not a new task: the awaiter is suspended and the callee
// starts on the same thread, and the callee's end transfers straight back.
// Both transfers go through a per-thread loop (see transfer_to below), so
// chains of any depth and loops of any length run in constant stack at any
// optimization level. A body that throws from resume() of a foreign
// coroutine it transferred to terminates (the transfer is noexcept).
//
// clang 14 cannot compile a coroutine in a template or inline function under
// -fsanitize=function (part of -fsanitize=undefined): build such code with
// -fno-sanitize=function.
//
// g++ 12 destroys some temporaries of a co_await expression twice (a double
// free; clang is fine): a braced aggregate argument, `co_await f({.name = s})`
// or `co_await f(options{...})`, and a lambda with captures invoked in place,
// `co_await [s]() -> coro<int> {...}();`. Safe with every compiler: name them
// first, `options o{.name = s}; co_await f(o);` and `auto g = [s]() -> ...;
// co_await g();`. A plain temporary argument, `co_await f(std::string(...))`,
// is fine. leash's own coroutine forms read braced options at the call and
// destroy nothing of them, so `co_await run_nursery({.timeout = 2s, .name = s},
// body)` is safe, as are bodies capturing by reference (`[&]`) made in the
// expression; `nursery_options{...}` spelled out, or a body capturing a
// std::string by value made in the expression, are not (name them). A lambda
// coroutine's captures live in the lambda object, not the frame: keep the
// lambda alive until its coro completes.
//
// Blocking inside a coroutine task. A coroutine task that makes a blocking
// call (a blocking leash call, sync_wait) costs a thread, never a stall: its
// worker's slot, with the tasks queued there, goes to another thread while it
// blocks. For a long call of other code (a file read, a computation, a
// foreign library), wrap it so the same happens:
//
//   std::string text = co_await leash::offload([&] { return read_file(path); });
//
// Prefer the awaitable forms where they exist: they cost no thread at all.
//
// Guarantees. Blocks: never in coro; sync_wait blocks the calling thread
// until the coro completes, on whichever thread last resumes it; offload
// blocks its awaiter's thread while fn runs. Cancelled: none of them
// observes a stop token (fn runs to its end). Throws: co_await rethrows the
// coro's exception unchanged (the same object); usage_error for an empty
// coro.
// Thread-safe: a coro object has one owner; its body may be resumed on any
// thread, one at a time. Allocates: each frame from the running thread's
// frame cache (leash/detail/frame_allocator.hpp), so steady state reaches no
// malloc; frames above its size limit go to ::operator new. offload also
// allocates the call it holds (one new per offload).
#pragma once

#include "detail/config.hpp"

#include <concepts>
#include <condition_variable>
#include <coroutine>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

#include "detail/frame_allocator.hpp"
#include "detail/scheduler.hpp"
#include "errors.hpp"

namespace leash::inline v0 {

namespace detail {
template <class T>
class coro_promise;
template <class T>
class coro_awaiter;
struct coro_access;
}  // namespace detail

// A lazy coroutine task producing a T (or nothing, for void). Move-only.
template <class T = void>
class [[nodiscard]] coro {
  static_assert(!std::is_reference_v<T>,
                "leash::coro<T>: T must not be a reference (return a pointer or "
                "std::reference_wrapper, so the caller sees what it refers to)");
  static_assert(std::is_void_v<T> ||
                    (std::is_object_v<T> && !std::is_array_v<T> && std::is_move_constructible_v<T>),
                "leash::coro<T>: T must be void or a move-constructible object type");

 public:
  using promise_type = detail::coro_promise<T>;
  using value_type = T;

  // An empty coro: awaiting it throws usage_error.
  coro() noexcept = default;
  coro(coro&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  coro& operator=(coro&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  coro(const coro&) = delete;
  coro& operator=(const coro&) = delete;

  // Destroys a coro that was never awaited (its body never ran).
  ~coro() { reset(); }

  // Whether this coro holds a frame that has not been awaited yet.
  bool valid() const noexcept { return static_cast<bool>(handle_); }

  // Awaiting takes the frame: the coro is left empty. Throws usage_error if
  // it is empty already.
  detail::coro_awaiter<T> operator co_await() &&;

 private:
  using handle_type = std::coroutine_handle<detail::coro_promise<T>>;
  friend class detail::coro_promise<T>;
  friend struct detail::coro_access;

  explicit coro(handle_type h) noexcept : handle_(h) {}
  void reset() noexcept {
    if (handle_) std::exchange(handle_, {}).destroy();
  }

  handle_type handle_;
};

// Runs `c` to completion from plain thread code and returns its value, or
// rethrows its exception. Blocks the calling thread until the coro's end, on
// whichever thread resumes it last: the coro starts here, on this thread, and
// runs here until it first suspends on something that resumes it elsewhere.
// Throws usage_error if `c` is empty. From a coroutine task it costs a thread
// while it blocks (see above), and `c` runs outside the task: leash's
// awaitables in it throw usage_error. co_await instead.
template <class T>
T sync_wait(coro<T> c);

// A coro that runs fn() and returns its value (or void), rethrowing its
// exception unchanged. Awaited from a coroutine task, fn runs on the
// awaiting thread after that thread handed its worker's slot to another
// thread, so the other coroutine tasks keep running meanwhile; the task then
// continues on this thread until it next suspends. Anywhere else it just runs
// fn. fn is moved into the coro; it must not return a reference.
template <class F>
requires std::invocable<F&> coro<std::invoke_result_t<F&>> offload(F fn);

// ---------------------------------------------------------------------------
// Machinery.

namespace detail {

// Control passes from a coroutine to the next one on the same thread (an
// awaiter starting its coro, a coro's end resuming its awaiter) through a
// per-thread loop instead of a nested resume() or a handle returned from
// await_suspend: the handle-returning form only runs in constant stack when
// the compiler emits a tail call, which g++ does only when optimizing. The
// suspending coroutine leaves the next handle in `next` and returns to the
// loop below it, which resumes it. One slot suffices: a transfer that finds
// it taken (foreign code resuming several coroutines inline) or no loop
// running on its thread runs a nested loop of its own.
struct transfer_state {
  std::coroutine_handle<> next;
  bool running;  // a transfer loop is below us on this thread's stack
};

inline constinit thread_local transfer_state tls_transfer{};

// Resumes `h` here, then every coroutine it transfers to, until one suspends
// without a transfer (it waits on something that will resume it).
inline void run_transfers(std::coroutine_handle<> h) {
  struct restore {
    transfer_state saved;
    ~restore() { tls_transfer = saved; }
  } guard{std::exchange(tls_transfer, transfer_state{{}, true})};
  while (h) {
    h.resume();
    h = std::exchange(tls_transfer.next, {});
  }
}

// Called last in an await_suspend (the caller is already suspended and may be
// resumed and destroyed before this returns): continues with `h`.
inline void transfer_to(std::coroutine_handle<> h) {
  transfer_state& t = tls_transfer;
  if (t.running && !t.next) {
    t.next = h;
    return;
  }
  run_transfers(h);
}

// The end of a coro: transfers to its awaiter (a coro is only started by
// being awaited, so there always is one).
struct coro_final_awaiter {
  bool await_ready() const noexcept { return false; }
  template <class Promise>
  void await_suspend(std::coroutine_handle<Promise> h) const noexcept {
    transfer_to(h.promise().continuation());
  }
  void await_resume() const noexcept {}
};

class coro_promise_base : public frame_allocated {
 public:
  std::suspend_always initial_suspend() const noexcept { return {}; }
  coro_final_awaiter final_suspend() const noexcept { return {}; }
  void unhandled_exception() noexcept { error_ = std::current_exception(); }

  void set_continuation(std::coroutine_handle<> h) noexcept { continuation_ = h; }
  std::coroutine_handle<> continuation() const noexcept { return continuation_; }
  // The exception the coro ended with, or null.
  const std::exception_ptr& error() const noexcept { return error_; }

 protected:
  void rethrow_if_failed() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::coroutine_handle<> continuation_;
  std::exception_ptr error_;
};

template <class T>
class coro_promise : public coro_promise_base {
 public:
  coro<T> get_return_object() noexcept {
    return coro<T>(std::coroutine_handle<coro_promise>::from_promise(*this));
  }

  // U defaults to T so that `co_return {a, b};` builds a T.
  template <class U = T>
  requires std::is_constructible_v<T, U&&>
  void return_value(U&& value) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
    value_.emplace(std::forward<U>(value));
  }

  // The coro's value (moved out), or its exception rethrown.
  T take() {
    rethrow_if_failed();
    return std::move(*value_);
  }

 private:
  std::optional<T> value_;
};

template <>
class coro_promise<void> : public coro_promise_base {
 public:
  coro<void> get_return_object() noexcept {
    return coro<void>(std::coroutine_handle<coro_promise>::from_promise(*this));
  }
  void return_void() const noexcept {}
  void take() const { rethrow_if_failed(); }
};

// Owns an awaited coro's frame: starts it by symmetric transfer, hands its
// result to the awaiter, and frees the frame with the co_await expression.
template <class T>
class coro_awaiter {
 public:
  using handle_type = std::coroutine_handle<coro_promise<T>>;

  explicit coro_awaiter(handle_type h) noexcept : handle_(h) {}
  coro_awaiter(const coro_awaiter&) = delete;
  coro_awaiter& operator=(const coro_awaiter&) = delete;
  ~coro_awaiter() { handle_.destroy(); }

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> awaiting) const noexcept {
    const handle_type callee = handle_;  // *this may be gone when transfer_to returns
    callee.promise().set_continuation(awaiting);
    transfer_to(callee);
  }
  T await_resume() { return handle_.promise().take(); }
  // After the coro's end: its exception, or null (then await_resume() gives the value).
  const std::exception_ptr& error() const noexcept { return handle_.promise().error(); }

 private:
  handle_type handle_;
};

// What settle() gives: the coro's value, or the exception it ended with.
template <class T>
struct settled_result {
  std::optional<T> value;
  std::exception_ptr error;
};

// co_await settle(c): runs `c` like co_await c, but hands over its exception
// instead of rethrowing it (one throw fewer for a caller that only stores
// it). Made from an exception instead, it is ready at once with that.
template <class T>
class settle_awaiter {
 public:
  explicit settle_awaiter(std::coroutine_handle<coro_promise<T>> h) noexcept { inner_.emplace(h); }
  explicit settle_awaiter(std::exception_ptr e) noexcept : error_(std::move(e)) {}
  bool await_ready() const noexcept { return !inner_; }
  void await_suspend(std::coroutine_handle<> awaiting) const noexcept {
    inner_->await_suspend(awaiting);
  }
  settled_result<T> await_resume() {
    if (!inner_) return {std::nullopt, error_};
    if (inner_->error()) return {std::nullopt, inner_->error()};
    return {inner_->await_resume(), nullptr};
  }

 private:
  std::optional<coro_awaiter<T>> inner_;
  std::exception_ptr error_;
};

// For leash's awaitables that run a coro of their own on a slow path: takes
// the frame out of `c`, to be owned by a coro_awaiter.
struct coro_access {
  template <class T>
  static std::coroutine_handle<coro_promise<T>> release(coro<T>&& c) noexcept {
    return std::exchange(c.handle_, {});
  }
};

template <class T>
settle_awaiter<T> settle(coro<T>&& c) noexcept {
  return settle_awaiter<T>(coro_access::release(std::move(c)));
}

// Where sync_wait's thread sleeps until the coro's end.
class sync_wait_event {
 public:
  // Notifies under the lock: the waiter (and this event, on its stack) cannot
  // go away before set() has let go of the mutex.
  void set() noexcept {
    std::lock_guard lock(mutex_);
    done_ = true;
    ready_.notify_one();
  }
  void wait() {
    std::unique_lock lock(mutex_);
    const blocking_region blocking(!done_);  // a coroutine task's worker goes to another thread
    ready_.wait(lock, [this] { return done_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  bool done_ = false;
};

template <class T>
struct sync_wait_result {
  std::optional<T> value;
  std::exception_ptr error;
};

template <>
struct sync_wait_result<void> {
  std::exception_ptr error;
};

// The coroutine sync_wait drives: awaits the user's coro, then signals the
// event from its final suspension, after which its frame is safe to destroy.
class sync_wait_driver {
 public:
  struct promise_type : frame_allocated {
    sync_wait_event* event = nullptr;

    sync_wait_driver get_return_object() noexcept {
      return sync_wait_driver(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    auto final_suspend() const noexcept {
      struct signal {
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<promise_type> h) const noexcept {
          h.promise().event->set();  // the last touch of this frame
        }
        void await_resume() const noexcept {}
      };
      return signal{};
    }
    void return_void() const noexcept {}
    // The body catches everything; reaching here is a leash bug.
    void unhandled_exception() const noexcept { std::terminate(); }
  };

  sync_wait_driver(sync_wait_driver&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  sync_wait_driver& operator=(sync_wait_driver&&) = delete;
  ~sync_wait_driver() {
    if (handle_) handle_.destroy();
  }

  // Runs the driver on this thread until it first suspends, then waits for
  // its end. Called in a coroutine task, the coro runs outside the task: a
  // leash awaitable in it throws usage_error instead of suspending the task,
  // which would then resume elsewhere while this thread still waits here.
  void run(sync_wait_event& event) {
    handle_.promise().event = &event;
    struct hide_task {
      resumable* saved = std::exchange(current_resumable, nullptr);
      ~hide_task() { current_resumable = saved; }
    } hidden;
    run_transfers(handle_);
    event.wait();
  }

 private:
  explicit sync_wait_driver(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
  std::coroutine_handle<promise_type> handle_;
};

// clang 14's -fsanitize=function cannot emit the type check of a coroutine
// defined in a template or inline function ("Cannot represent a difference
// across sections"); leash's own coroutines opt out of that check.
#if defined(__clang__)
#define LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER __attribute__((no_sanitize("function")))
#else
#define LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER
#endif

// offload's call, type-erased: a frame holding fn itself would have a field
// of fn's type, which g++ flags (-Wsubobject-linkage) for a lambda without
// linkage whenever the call is not in the main source file.
template <class R>
class offload_call {
 public:
  virtual ~offload_call() = default;
  virtual R run() = 0;
};

template <class R, class F>
class offload_call_of final : public offload_call<R> {
 public:
  explicit offload_call_of(F&& fn) : fn_(std::move(fn)) {}
  // fn runs inside a blocking region.
  R run() override {
    const blocking_region blocking;
    return std::invoke(fn_);
  }

 private:
  F fn_;
};

template <class R>
LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<R> run_offload(std::unique_ptr<offload_call<R>> call) {
  co_return call->run();  // for void: co_return of a void expression
}

template <class T>
LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER sync_wait_driver
drive_for_sync_wait(coro<T>& c, sync_wait_result<T>& out) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(c);
    } else {
      out.value.emplace(co_await std::move(c));
    }
  } catch (...) {
    out.error = std::current_exception();
  }
}

}  // namespace detail

template <class T>
detail::coro_awaiter<T> coro<T>::operator co_await() && {
  if (!handle_) {
    throw usage_error(
        "leash::coro: co_await of an empty coro (moved from, default-constructed "
        "or already awaited)");
  }
  return detail::coro_awaiter<T>(std::exchange(handle_, {}));
}

template <class T>
T sync_wait(coro<T> c) {
  if (!c.valid()) {
    throw usage_error(
        "leash::sync_wait: the coro is empty (moved from, default-constructed or "
        "already awaited)");
  }
  detail::sync_wait_result<T> result;
  detail::sync_wait_event event;
  detail::drive_for_sync_wait(c, result).run(event);
  if (result.error) std::rethrow_exception(result.error);
  if constexpr (!std::is_void_v<T>) return std::move(*result.value);
}

template <class F>
requires std::invocable<F&> coro<std::invoke_result_t<F&>> offload(F fn) {
  using result = std::invoke_result_t<F&>;
  return detail::run_offload<result>(
      std::make_unique<detail::offload_call_of<result, F>>(std::move(fn)));
}

}  // namespace leash::inline v0
