// SPDX-License-Identifier: BSL-1.0
// leash/detail/recv_adapter.hpp: a channel receive under another component's
// name, for the primitives built on a channel (semaphore, event, oneshot).
//
// The awaitable forms of those primitives are a channel's async_recv with the
// result converted (a token into a permit, nullopt into "set"); this adapter
// keeps the channel's cancellation and matching rules untouched and only
// changes the name a misuse is reported under.
#pragma once

#include <coroutine>
#include <optional>
#include <string>
#include <utility>

#include "../channel.hpp"
#include "../errors.hpp"
#include "scheduler.hpp"

namespace leash::inline v0::detail {

// Throws usage_error naming `what` (e.g. "semaphore::async_acquire") when the
// caller is not a coroutine task.
inline void require_coroutine_task_for(const char* what) {
  if (current_resumable == nullptr) {
    throw usage_error(std::string("leash::") + what +
                      ": only inside a coroutine task (nursery::spawn of a function returning "
                      "leash::coro); use the blocking form elsewhere");
  }
}

// co_await of a channel<T>'s async_recv whose result goes through `Finish`
// (called with the std::optional<T> received). Await it at once, as the
// channel's own awaitable.
template <class T, class Finish>
class [[nodiscard]] recv_adapter {
 public:
  recv_adapter(channel<T>& ch, const char* what, Finish finish) noexcept
      : inner_(ch.async_recv()), what_(what), finish_(std::move(finish)) {}
  recv_adapter(const recv_adapter&) = delete;
  recv_adapter& operator=(const recv_adapter&) = delete;

  bool await_ready() {
    require_coroutine_task_for(what_);
    return inner_.await_ready();
  }
  bool await_suspend(std::coroutine_handle<> h) { return inner_.await_suspend(h); }
  decltype(auto) await_resume() { return finish_(inner_.await_resume()); }

 private:
  typename channel<T>::recv_awaitable inner_;
  const char* what_;
  Finish finish_;
};

}  // namespace leash::inline v0::detail
