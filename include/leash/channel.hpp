// SPDX-License-Identifier: BSL-1.0
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
#pragma once

#include "detail/config.hpp"

#include <atomic>
#include <chrono>
#include <coroutine>
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

#include "cancel.hpp"
#include "coro.hpp"
#include "detail/cancel_state.hpp"
#include "detail/registry.hpp"
#include "detail/ring.hpp"
#include "detail/type_name.hpp"
#include "detail/virtual_clock.hpp"
#include "detail/waiter.hpp"
#include "errors.hpp"

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

  // The coroutine forms, for a coroutine task (nursery::spawn of a function
  // returning leash::coro): the same operations, results, errors and
  // cancellation (by the task's ambient scope, which reaches a suspended
  // operation at once), but a wait suspends the task, not its thread. A
  // partner may be a thread or a coroutine task, in any role. Throw
  // usage_error outside a coroutine task.
  class send_awaitable;
  class recv_awaitable;

  // co_await ch.async_send(v): send(v). An rvalue is referenced and moved
  // from only when delivered; an lvalue is copied into the operation.
  send_awaitable async_send(T&& value) noexcept { return send_awaitable(*this, &value); }
  send_awaitable async_send(const T& value) { return send_awaitable(*this, T(value)); }

  // co_await ch.async_recv(): recv(), a std::optional<T> (nullopt once the
  // channel is closed and drained). A loop over a channel:
  //   while (auto v = co_await ch.async_recv()) use(*v);
  recv_awaitable async_recv() noexcept { return recv_awaitable(*this); }

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
    r.status = try_recv_impl(r.value);
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
    detail::fire_link* to_fire = nullptr;
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
      for (detail::wait_queue<T>* q : {&recv_waiters_, &send_waiters_}) {
        while (detail::wait_node<T>* n = q->claim_front()) {
          (q == &recv_waiters_ && !drained ? n->retry : n->closed) = true;
          n->next_to_fire = to_fire;  // the node is unlinked and claimed: ours until fired
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

 private:
  // A blocking operation is a loop of attempts. Each attempt either ends it,
  // or queues its node and waits (a thread parks, a coroutine task suspends),
  // after which finish_wait() says how the wait ended. One meaning per value:
  enum class step {
    done,       // the value was handed over or taken
    closed,     // the channel is closed (for a receive: and drained)
    queued,     // the node is queued: wait for it, then finish_wait()
    stopped,    // the stop token stopped before the operation could complete
    timed_out,  // the deadline passed first
    retry,      // woken without a value handed over (the buffer changed): try again
  };

  // The coroutine forms on an unbuffered channel. Only a buffer that changes
  // under a lock-free operation wakes a waiter to try again, so here one
  // attempt is final or queues the node, and at most one suspension follows:
  // no loop, no frame of its own. `Target` is a send's T or a receive's
  // std::optional<T>.
  class direct_wait {
   public:
    template <class Target>
    direct_wait(channel& c, Target& target, detail::wait_queue<T>& queue, const char* what) noexcept
        : channel_(c),
          queue_(queue),
          waiter_(*detail::current_resumable),
          node_(waiter_, 0, target),
          wait_(waiter_, detail::ambient, what) {}

    detail::wait_node<T>& node() noexcept { return node_; }

    // With the first attempt's step: true if the task stays suspended.
    bool suspend_after(step first, std::coroutine_handle<> h) noexcept {
      step_ = first;
      if (first != step::queued) return false;
      detail::current_resumable->resume_at = h;
      return wait_.suspend();
    }

    // done, closed or stopped (never retry: see above).
    step result() noexcept {
      if (step_ == step::queued) step_ = channel_.finish_wait(wait_.resumed(), node_, queue_);
      return step_;
    }

   private:
    channel& channel_;
    detail::wait_queue<T>& queue_;
    detail::waiter waiter_;
    detail::wait_node<T> node_;
    detail::async_wait wait_;
    step step_ = step::queued;
  };

 public:
  // What async_send returns: await it at once (it references its value).
  class [[nodiscard]] send_awaitable {
   public:
    send_awaitable(const send_awaitable&) = delete;
    send_awaitable& operator=(const send_awaitable&) = delete;

    // A buffered channel: the lock-free or locked attempt alone, no waiting.
    bool await_ready() {
      require_coroutine_task(names().async_send);
      if (!channel_->ring_) return false;  // unbuffered: attempt and wait in one step
      status_ = channel_->try_send_impl(value());
      return status_ != channel_status::full;
    }
    bool await_suspend(std::coroutine_handle<> h) {
      if (!channel_->ring_) {
        direct_.emplace(*channel_, value(), channel_->send_waiters_, names().async_send.c_str());
        return direct_->suspend_after(
            channel_->send_begin(value(), direct_->node(), detail::ambient_token_ref(),
                                 clock::time_point::max()),
            h);
      }
      slow_.emplace(detail::coro_access::release(channel_->send_slow(value())));
      slow_->await_suspend(h);
      return true;
    }
    void await_resume() {
      if (slow_) return slow_->await_resume();
      const step s = direct_                             ? direct_->result()
                     : status_ == channel_status::closed ? step::closed
                                                         : step::done;
      if (s == step::closed) throw channel_closed();
      if (s == step::stopped) detail::ambient->throw_cancelled();
    }

   private:
    friend class channel;
    send_awaitable(channel& c, T* value) noexcept : channel_(&c), value_(value) {}
    send_awaitable(channel& c, T&& copy) : channel_(&c), copy_(std::move(copy)) {}
    T& value() noexcept { return copy_ ? *copy_ : *value_; }

    channel* channel_;
    T* value_ = nullptr;
    std::optional<T> copy_;
    channel_status status_ = channel_status::full;
    std::optional<direct_wait> direct_;               // unbuffered
    std::optional<detail::coro_awaiter<void>> slow_;  // buffered, when it must wait
  };

  // What async_recv returns.
  class [[nodiscard]] recv_awaitable {
   public:
    recv_awaitable(const recv_awaitable&) = delete;
    recv_awaitable& operator=(const recv_awaitable&) = delete;

    bool await_ready() {
      require_coroutine_task(names().async_recv);
      if (!channel_->ring_) return false;  // unbuffered: attempt and wait in one step
      return channel_->try_recv_impl(out_) != channel_status::empty;
    }
    bool await_suspend(std::coroutine_handle<> h) {
      if (!channel_->ring_) {
        direct_.emplace(*channel_, out_, channel_->recv_waiters_, names().async_recv.c_str());
        return direct_->suspend_after(
            channel_->recv_begin(out_, direct_->node(), detail::ambient_token_ref(),
                                 clock::time_point::max()),
            h);
      }
      slow_.emplace(detail::coro_access::release(channel_->recv_slow(out_)));
      slow_->await_suspend(h);
      return true;
    }
    std::optional<T> await_resume() {
      if (slow_) slow_->await_resume();
      if (direct_ && direct_->result() == step::stopped) detail::ambient->throw_cancelled();
      return std::move(out_);
    }

   private:
    friend class channel;
    explicit recv_awaitable(channel& c) noexcept : channel_(&c) {}

    channel* channel_;
    std::optional<T> out_;
    std::optional<direct_wait> direct_;
    std::optional<detail::coro_awaiter<void>> slow_;
  };

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
    std::string send, recv, send_for, recv_for, async_send, async_recv;
  };
  static const op_names& names() {
    static const op_names n = [] {
      const std::string_view t = detail::spelled_type_name<T>();
      const std::string c = "channel<" + std::string(t.empty() ? "T" : t) + ">::";
      return op_names{c + "send",         c + "recv",       c + "try_send_for",
                      c + "try_recv_for", c + "async_send", c + "async_recv"};
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
    detail::fire_link* served = nullptr;
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
  detail::fire_link* serve_waiters_locked() noexcept {
    detail::fire_link* served = nullptr;
    for (bool moved = true; moved && ring_ != nullptr;) {
      moved = false;
      if (!send_waiters_.empty() && ring_->has_room()) {
        if (detail::wait_node<T>* n = send_waiters_.claim_front()) {
          using push_result = typename detail::ring<T>::push_result;
          // Not closed: close() claims every queued node under this lock.
          moved = ring_->try_push(*n->value) == push_result::ok;
          n->retry = !moved;
          n->next_to_fire = served;
          served = n;
        }
      }
      if (!recv_waiters_.empty() && ring_->size() != 0) {
        if (detail::wait_node<T>* n = recv_waiters_.claim_front()) {
          const bool popped = ring_->try_pop(*n->slot);
          n->retry = !popped;
          moved = moved || popped;
          n->next_to_fire = served;
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
  channel_status send_locked(T& value, detail::fire_link*& partner) noexcept {
    if (closed_) return channel_status::closed;
    if (detail::wait_node<T>* r = recv_waiters_.claim_front()) {
      r->slot->emplace(std::move(value));
      partner = r;
      return channel_status::ok;
    }
    if (ring_ && ring_->try_push(value) == detail::ring<T>::push_result::ok) {
      return channel_status::ok;
    }
    return channel_status::full;
  }

  // ok (out holds a value), closed (drained), or empty.
  channel_status recv_locked(std::optional<T>& out, detail::fire_link*& partner) noexcept {
    if (ring_ && ring_->try_pop(out)) {
      partner = serve_waiters_locked();  // room was made: a blocked sender's value moves in
      return channel_status::ok;
    }
    // Unbuffered; or buffered and drained while a sender still waits: its
    // value is the oldest one left, so it is taken straight from the sender.
    if (detail::wait_node<T>* s = send_waiters_.claim_front()) {
      out.emplace(std::move(*s->value));
      partner = s;
      return channel_status::ok;
    }
    return closed_ ? channel_status::closed : channel_status::empty;
  }

  channel_status try_recv_impl(std::optional<T>& out) {
    if (recv_lock_free(out) == detail::lock_free_result::done) return channel_status::ok;
    detail::fire_link* partner = nullptr;
    channel_status st;
    {
      std::lock_guard lock(lock_);
      st = recv_locked(out, partner);
    }
    detail::fire_all(partner);
    return st;
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
    detail::fire_link* partner = nullptr;
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
    step s;
    do {
      s = send_once(value, token, deadline, what);
    } while (s == step::retry);
    if (s == step::closed && throw_closed) throw channel_closed();
    return status_of(s, token);
  }

  step send_once(T& value, const std::stop_token& token, clock::time_point deadline,
                 const char* what) {
    if (send_lock_free(value) == detail::lock_free_result::done) return step::done;
    detail::waiter w;
    detail::wait_node<T> node(w, 0, value);
    const step s = send_begin(value, node, token, deadline);
    return s == step::queued ? park(w, node, send_waiters_, token, deadline, what) : s;
  }

  // Blocking receive into `out`. Returns ok, closed or timeout; throws cancelled.
  channel_status recv_until(std::optional<T>& out, const std::stop_token& token,
                            clock::time_point deadline, const char* what) {
    step s;
    do {
      s = recv_once(out, token, deadline, what);
    } while (s == step::retry);
    return status_of(s, token);
  }

  step recv_once(std::optional<T>& out, const std::stop_token& token, clock::time_point deadline,
                 const char* what) {
    if (recv_lock_free(out) == detail::lock_free_result::done) return step::done;
    detail::waiter w;
    detail::wait_node<T> node(w, 0, out);
    const step s = recv_begin(out, node, token, deadline);
    return s == step::queued ? park(w, node, recv_waiters_, token, deadline, what) : s;
  }

  // What a blocking call returns for its last step; throws cancelled when stopped.
  static channel_status status_of(step s, const std::stop_token& token) {
    switch (s) {
      case step::done:
        return channel_status::ok;
      case step::closed:
        return channel_status::closed;
      case step::timed_out:
        return channel_status::timeout;
      default:
        detail::throw_cancelled(token);
    }
  }

  // An attempt under the lock: hand the value to a receiver, or buffer it;
  // else queue `node` (unless stopped or past the deadline) and, the
  // handshake with lock-free receivers, look at the buffer once more.
  step send_begin(T& value, detail::wait_node<T>& node, const std::stop_token& token,
                  clock::time_point deadline) {
    detail::fire_link* partner = nullptr;
    step s;
    {
      std::lock_guard lock(lock_);
      const channel_status st = send_locked(value, partner);
      if (st != channel_status::full) {
        s = st == channel_status::ok ? step::done : step::closed;
      } else {
        s = enqueue_or_give_up(send_waiters_, node, token, deadline);
        if (s == step::queued && ring_ &&
            ring_->try_push(value) == detail::ring<T>::push_result::ok) {
          send_waiters_.remove(&node);
          s = step::done;
        }
      }
    }
    detail::fire_all(partner);
    return s;
  }

  // The receiving twin of send_begin.
  step recv_begin(std::optional<T>& out, detail::wait_node<T>& node, const std::stop_token& token,
                  clock::time_point deadline) {
    detail::fire_link* partner = nullptr;
    step s;
    {
      std::lock_guard lock(lock_);
      const channel_status st = recv_locked(out, partner);
      if (st != channel_status::empty) {
        s = st == channel_status::ok ? step::done : step::closed;
      } else {
        s = enqueue_or_give_up(recv_waiters_, node, token, deadline);
        if (s == step::queued && ring_ && ring_->try_pop(out)) {
          recv_waiters_.remove(&node);
          partner = serve_waiters_locked();
          s = step::done;
        }
      }
    }
    detail::fire_all(partner);
    return s;
  }

  // Under the lock, for an operation that cannot complete now: a stop or an
  // expired deadline ends it; otherwise `node` is queued. Checked only here,
  // after the attempt: readiness wins over a stop.
  static step enqueue_or_give_up(detail::wait_queue<T>& queue, detail::wait_node<T>& node,
                                 const std::stop_token& token, clock::time_point deadline) {
    if (token.stop_requested()) return step::stopped;
    if (deadline != clock::time_point::max() && deadline <= detail::now_for_current_task()) {
      return step::timed_out;
    }
    queue.push_back(&node);
    return step::queued;
  }

  // A thread waits for its queued `node`.
  step park(detail::waiter& w, detail::wait_node<T>& node, detail::wait_queue<T>& queue,
            const std::stop_token& token, clock::time_point deadline, const char* what) {
    detail::waiter::outcome o;
    {
      detail::channel_wait_scope blocked(what);
      o = w.wait(token, deadline);
    }
    return finish_wait(o, node, queue);
  }

  // How the wait of a queued node ended; a node that was not fired is taken
  // out of its queue, so none is left behind.
  step finish_wait(detail::waiter::outcome o, detail::wait_node<T>& node,
                   detail::wait_queue<T>& queue) {
    if (o == detail::waiter::outcome::fired) {
      if (node.retry) return step::retry;
      return node.closed ? step::closed : step::done;
    }
    std::lock_guard lock(lock_);
    queue.remove(&node);
    return o == detail::waiter::outcome::timed_out ? step::timed_out : step::stopped;
  }

  // ---- The coroutine forms: the same steps, waiting by suspension.

  // Suspends the running coroutine task on a queued node.
  class suspend_on_node {
   public:
    suspend_on_node(channel& c, detail::waiter& w, detail::wait_node<T>& node,
                    detail::wait_queue<T>& queue, const char* what) noexcept
        : channel_(c), node_(node), queue_(queue), wait_(w, detail::ambient, what) {}
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) noexcept {
      detail::current_resumable->resume_at = h;
      return wait_.suspend();
    }
    step await_resume() noexcept { return channel_.finish_wait(wait_.resumed(), node_, queue_); }

   private:
    channel& channel_;
    detail::wait_node<T>& node_;
    detail::wait_queue<T>& queue_;
    detail::async_wait wait_;
  };

  // The slow path of async_send / async_recv: attempts until one ends the
  // operation. Throws what send / recv throw.
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<void> send_slow(T& value) {
    for (;;) {
      detail::waiter w(*detail::current_resumable);
      detail::wait_node<T> node(w, 0, value);
      const std::stop_token& token = detail::ambient_token_ref();
      step s = send_begin(value, node, token, clock::time_point::max());
      if (s == step::queued) {
        s = co_await suspend_on_node(*this, w, node, send_waiters_, names().async_send.c_str());
      }
      if (s == step::retry) continue;
      if (s == step::closed) throw channel_closed();
      if (s == step::stopped) detail::ambient->throw_cancelled();
      co_return;
    }
  }
  LEASH_DETAIL_CORO_NO_FUNCTION_SANITIZER coro<void> recv_slow(std::optional<T>& out) {
    for (;;) {
      detail::waiter w(*detail::current_resumable);
      detail::wait_node<T> node(w, 0, out);
      const std::stop_token& token = detail::ambient_token_ref();
      step s = recv_begin(out, node, token, clock::time_point::max());
      if (s == step::queued) {
        s = co_await suspend_on_node(*this, w, node, recv_waiters_, names().async_recv.c_str());
      }
      if (s == step::retry) continue;
      if (s == step::stopped) detail::ambient->throw_cancelled();
      co_return;
    }
  }

  static void require_coroutine_task(const std::string& what) {
    if (detail::current_resumable == nullptr) {
      throw usage_error("leash::" + what +
                        ": only inside a coroutine task (nursery::spawn of a function returning "
                        "leash::coro); use the blocking form elsewhere");
    }
  }

  const std::size_t capacity_;
  const std::unique_ptr<detail::ring<T>> ring_;  // the buffer; none when unbuffered

  mutable detail::spinlock lock_;  // guards everything below
  bool closed_ = false;
  // Blocked operations. Receivers only wait while nothing is buffered and
  // senders only while the buffer is full (but for a moment while a wake-up
  // is on its way), so at most one queue holds plain operations; select
  // cases may sit in both.
  detail::wait_queue<T> recv_waiters_;
  detail::wait_queue<T> send_waiters_;
};

namespace detail {

// The channel internals that select's cases drive (select.hpp).
template <class T>
struct channel_access {
  static spinlock& lock(channel<T>& c) noexcept { return c.lock_; }
  static wait_queue<T>& recv_queue(channel<T>& c) noexcept { return c.recv_waiters_; }
  static wait_queue<T>& send_queue(channel<T>& c) noexcept { return c.send_waiters_; }
  static bool recv_ready_locked(const channel<T>& c) noexcept { return c.recv_ready_locked(); }
  static bool send_ready_locked(const channel<T>& c) noexcept { return c.send_ready_locked(); }
  static bool buffer_has_value(const channel<T>& c) noexcept {
    return c.ring_ && c.ring_->size() != 0;
  }
  static bool buffer_has_room(const channel<T>& c) noexcept {
    return c.ring_ && c.ring_->has_room();
  }
  static channel_status recv_locked(channel<T>& c, std::optional<T>& out,
                                    fire_link*& partner) noexcept {
    return c.recv_locked(out, partner);
  }
  static channel_status send_locked(channel<T>& c, T& value, fire_link*& partner) noexcept {
    return c.send_locked(value, partner);
  }
  static lock_free_result recv_lock_free(channel<T>& c, std::optional<T>& out) noexcept {
    return c.recv_lock_free(out);
  }
  static lock_free_result send_lock_free(channel<T>& c, T& value) noexcept {
    return c.send_lock_free(value);
  }
  static void dequeue(channel<T>& c, wait_queue<T>& q, wait_node<T>& n) noexcept {
    std::lock_guard lock(c.lock_);
    q.remove(&n);
  }
};

}  // namespace detail
}  // namespace leash::inline v0
