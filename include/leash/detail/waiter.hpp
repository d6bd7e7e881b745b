// SPDX-License-Identifier: BSL-1.0
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
// A thread waits in wait(): it spins briefly, then yields, then parks on a
// mutex + condition variable (docs/design.md#channels has the measurements
// behind each bound). The parked bit tells a completer that it must wake the
// waiter under the mutex; once parked, the waiter reads its word only under
// that mutex, so it cannot return (and free the waiter) while a completer
// still touches it.
//
// A coroutine task waits by suspending (a waiter made with the task, see
// async_wait): whoever ends the wait posts the task to the scheduler instead
// of waking a thread. The same word decides who ended it, so a thread and a
// coroutine are matched by one rule and may sit in one queue.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>

#include "cancel_state.hpp"
#include "scheduler.hpp"
#include "spin.hpp"
#include "task_identity.hpp"
#include "virtual_clock.hpp"

namespace leash::inline v0::detail {

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

// How long a waiter of this thread pauses before it parks: long while
// spinning pays off on this thread, short while it does not (on an
// oversubscribed machine the partner is often not running, and a long spin
// only delays it), with a long probe now and then to notice a quieter machine.
class spin_budget {
 public:
  static int pause_rounds() noexcept {
    state& s = local();
    s.long_spin = s.score >= long_spin_score || ++s.since_probe % probe_every == 0;
    return s.long_spin ? long_pauses : short_pauses;
  }
  // Whether the wait ended without parking.
  static void record(bool paid_off) noexcept {
    state& s = local();
    if (paid_off) {
      s.score += (score_scale - s.score) / score_step;
    } else if (s.long_spin) {
      s.score -= s.score / score_step;  // a short spin that failed says nothing about a long one
    }
  }

 private:
  // Long enough for a running partner's answer to beat a futex wake and park.
  static constexpr int long_pauses = 1024;
  // Short enough to cost less than the park it precedes when spinning fails.
  static constexpr int short_pauses = 64;
  // One wait in this many spins long however the score stands.
  static constexpr unsigned probe_every = 16;
  // The score is a fraction of this: fixed point, no floating point per wait.
  static constexpr int score_scale = 256;
  // Spin long while at least a quarter of long spins paid off.
  static constexpr int long_spin_score = score_scale / 4;
  // Each wait moves the score 1/8 of the way: a moving average of ~8 waits.
  static constexpr int score_step = 8;
  struct state {
    int score = score_scale;  // moving average of long spins that paid off
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
// by every blocking-capable channel call, even one that completes at once, so
// a condition variable per waiter would cost a construction and destruction
// per call.
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

  // A waiter for a thread, which waits in wait().
  waiter() noexcept : member_(vt_member()) {}
  // A waiter for the coroutine task `task`, which suspends instead: see
  // async_wait.
  explicit waiter(resumable& task) noexcept : task_(&task) {}
  waiter(const waiter&) = delete;
  waiter& operator=(const waiter&) = delete;

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
    if (member_ != nullptr) member_->vclock->wake(member_);  // before the wake can be seen
    if (task_ != nullptr) {
      state_.store(done, std::memory_order_release);
      arrive();
      return;
    }
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
    if (member_ != nullptr) return wait_virtual(token, deadline);
    // Spin phase (see spin_slots): a partner on another CPU usually answers
    // sooner than a futex wake would. First a quick look (quick_pauses) that
    // needs no slot: a running partner answers within it, and the shared slot
    // count it avoids is a cache line both partners would otherwise move on
    // every hand-off. Then pauses while a spinning slot is free, or a few
    // yields (which hand the CPU to a partner that shares it), then park.
    if (usable_cpus() > 1) {
      for (int i = 0; i < quick_pauses; ++i) {
        const std::uint32_t s = state_.load(std::memory_order_acquire);
        if (terminal(s)) return decode(s);
        cpu_relax();
      }
    }
    bool spins = spin_slots::try_acquire();
    // The slot is often held for a moment by the partner that is about to
    // answer (it was waiting a moment ago and is leaving), so look again a
    // few times before settling for yields. Never with one usable CPU: no
    // slot exists there.
    for (int k = 0; !spins && k < slot_retries && usable_cpus() > 1; ++k) {
      for (int p = 0; p < slot_retry_pauses; ++p)
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
      if (i % stop_check_every == 0) {
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

  // Coroutine mode. Ends the wait as stopped or timed out unless a partner
  // claimed it first; returns whether it did. Follow a true with arrive().
  bool abandon(outcome why) noexcept {
    return give_up(why == outcome::stopped ? stopped : timed_out);
  }

  // Coroutine mode: two arrivals resume the task, the end of the wait (fire(),
  // or arrive() after a winning abandon()) and the end of its suspension
  // (suspend_done()), so nothing ends the wait while the suspending side still
  // registers it. Whoever arrives last posts the task; this object may be gone
  // right after the other arrival.
  void arrive() noexcept {
    resumable* task = task_;
    if (gate_.fetch_sub(1, std::memory_order_acq_rel) == 1) post_resumable(task);
  }
  // The suspending side's arrival, last in await_suspend: true if the task
  // stays suspended, false if the wait ended already (resume at once).
  bool suspend_done() noexcept { return gate_.fetch_sub(1, std::memory_order_acq_rel) != 1; }

  // How the wait ended, once it has (coroutine mode: after resumption).
  outcome result() const noexcept { return decode(state_.load(std::memory_order_acquire)); }

 private:
  static constexpr std::uint32_t waiting = 0, busy = 1, fired = 2, stopped = 3, timed_out = 4;
  static constexpr std::uint32_t status_mask = 0x7, parked_bit = 0x8, index_shift = 4;
  // Yields without a spinning slot: enough for a partner sharing this CPU to
  // answer, few enough that a loaded machine does not lose whole time slices.
  static constexpr int yield_rounds = 8;
  // Looks for a free spinning slot before yielding: the holder is usually
  // the partner, leaving.
  static constexpr int slot_retries = 4;
  // Pauses between those looks: the time a partner needs to release its slot.
  static constexpr int slot_retry_pauses = 16;
  // The slot-free first look: a running partner answers within it.
  static constexpr int quick_pauses = 32;
  // Pauses or yields between looks at the token and the clock, which cost
  // more than the pause itself; the word is read after every one.
  static constexpr int stop_check_every = 64;

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
      if (self->member_ != nullptr) self->member_->vclock->wake(self->member_);
      std::lock_guard lock(self->parker_->mutex);
      if (self->give_up(stopped)) self->parker_->cv.notify_one();
      mark_fired();
    }
  };

  outcome park(const std::stop_token& token, clock::time_point deadline) {
    const blocking_region blocking;  // a coroutine task's worker goes to another thread
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

  // A virtual_time member's deadline, on its virtual clock.
  struct virtual_deadline final : timer_client {
    explicit virtual_deadline(waiter* w) noexcept : self(w) {}
    void on_timer() noexcept override {
      self->member_->vclock->wake(self->member_);
      std::lock_guard lock(self->parker_->mutex);
      if (self->give_up(timed_out)) self->parker_->cv.notify_one();
    }
    waiter* self;
  };

  // wait() for a task of a virtual_time scope: parks at once (no spinning:
  // a partner's answer is a matter of ordering, not of speed), counted by its
  // clock as blocked, with the deadline on that clock.
  outcome wait_virtual(const std::stop_token& token, clock::time_point deadline) {
    const blocking_region blocking;
    virtual_clock& vc = *member_->vclock;
    parker_ = &parker::of_this_thread();
    virtual_deadline expiry(this);
    timer_handle timer;
    if (deadline != clock::time_point::max()) {
      if (deadline <= vc.now()) {
        give_up(timed_out);
      } else {
        timer = vc.schedule(deadline, &expiry);
      }
    }
    std::optional<stop_hook<on_stop>> stop_link;
    if (token.stop_possible()) stop_link.emplace(token, on_stop{this});  // may run inline
    std::uint32_t s;
    {
      std::unique_lock lock(parker_->mutex);
      s = state_.load(std::memory_order_acquire);
      while (!terminal(s) && (s & parked_bit) == 0) {
        state_.compare_exchange_weak(s, s | parked_bit, std::memory_order_acq_rel);
      }
      // A waker records its wake before it changes state_, so a wait that
      // still sees `waiting` here is either woken later or blocked for good.
      if (!terminal(state_.load(std::memory_order_acquire))) vc.block(member_, this);
      while (!terminal(s = state_.load(std::memory_order_acquire)))
        parker_->cv.wait(lock);
    }
    vc.end_wait(member_);
    stop_link.reset();
    vc.cancel(timer);
    return decode(s);
  }

  std::atomic<std::uint32_t> state_{waiting};  // status | parked bit | fired index
  // The owning thread's parker, set before it parks; once parked, state_ is
  // read and written under its mutex.
  parker* parker_ = nullptr;
  resumable* const task_ = nullptr;  // coroutine mode: the suspended task
  // Thread mode in a virtual_time scope: the waiting task, whose clock every
  // waker tells first.
  task_identity* const member_ = nullptr;
  std::atomic<int> gate_{2};  // coroutine mode: arrivals left (see arrive)
};

// Suspends a coroutine task on a coroutine-mode waiter until a partner fires
// it or the ambient state stops. The awaitable that owns it queues the nodes,
// then calls suspend() last in await_suspend; after resumption, resumed()
// tells how the wait ended. A stop that loses to a claim changes nothing:
// the claimed operation completes and is reported.
class async_wait final : private stop_hook_node {
 public:
  async_wait(waiter& w, cancel_state* state, const char* what) noexcept
      : waiter_(w), state_(state), what_(what) {}
  async_wait(const async_wait&) = delete;
  async_wait& operator=(const async_wait&) = delete;
  ~async_wait() override = default;

  // Registers the stop hook (it runs at once if the state stopped already)
  // and marks the task blocked; true if the task stays suspended.
  bool suspend() noexcept {
    blocked_.emplace(what_);
    if (state_ != nullptr) state_->add_hook(*this);
    return waiter_.suspend_done();
  }

  // After resumption: unregisters and says how the wait ended.
  waiter::outcome resumed() noexcept {
    if (state_ != nullptr) state_->remove_hook(*this);
    blocked_.reset();
    return waiter_.result();
  }

 private:
  // fired() before arrive(): the owner cannot run before the last arrival,
  // and may destroy this hook right after it.
  void on_stop() noexcept override {
    const bool won = waiter_.abandon(waiter::outcome::stopped);
    fired();
    if (won) waiter_.arrive();
  }

  waiter& waiter_;
  cancel_state* state_;
  const char* what_;
  std::optional<blocked_scope> blocked_;
};

// What a completer needs to fire a claimed node once the channel lock is
// released: the node's waiter and case index, and a link for the list of
// nodes to fire (fire_all), so one list can hold nodes of several channels.
struct fire_link {
  waiter* owner = nullptr;
  std::uint32_t index = 0;  // the case it stands for
  fire_link* next_to_fire = nullptr;
};

// Fires a list of claimed nodes, after the channel lock is released.
inline void fire_all(fire_link* n) noexcept {
  while (n != nullptr) {
    fire_link* next = n->next_to_fire;  // read first: once fired, the node may be gone
    n->owner->fire(n->index);
    n = next;
  }
}

// One case of a blocked operation, queued in one channel<T>. Lives in the
// waiting operation (a thread's stack, a coroutine's frame, a select case),
// so queuing never allocates.
template <class T>
struct wait_node : fire_link {
  wait_node() noexcept = default;
  // A send of `v`, moved from only when the node is completed with it.
  wait_node(waiter& w, std::uint32_t case_index, T& v) noexcept
      : fire_link{&w, case_index}, value(&v) {}
  // A receive into `out`.
  wait_node(waiter& w, std::uint32_t case_index, std::optional<T>& out) noexcept
      : fire_link{&w, case_index}, slot(&out) {}

  T* value = nullptr;                // a send's value
  std::optional<T>* slot = nullptr;  // a receive's destination
  bool closed = false;               // completed by close(): a send fails
  // Woken without a value handed over, so try again: the buffer changed (a
  // value or room arrived but a lock-free operation took it first, or the
  // channel closed with values left).
  bool retry = false;
  // Channel queue links, guarded by the channel's lock.
  wait_node* prev = nullptr;
  wait_node* next = nullptr;
  bool queued = false;
};

// A FIFO of wait nodes; guarded by its channel's lock, except queued(), which
// a lock-free buffer operation reads to learn whether anyone waits.
template <class T>
class wait_queue {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  wait_node<T>* front() const noexcept { return head_; }

  // How many nodes are queued; sequentially consistent, for the handshake
  // between a lock-free push or pop and a waiter queueing (see channel.hpp).
  std::size_t queued() const noexcept { return queued_.load(std::memory_order_seq_cst); }

  void push_back(wait_node<T>* n) noexcept {
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

  void remove(wait_node<T>* n) noexcept {
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
  wait_node<T>* claim_front() noexcept {
    while (wait_node<T>* n = head_) {
      remove(n);
      if (n->owner->try_claim()) return n;
    }
    return nullptr;
  }

  // True if some queued node could still be claimed.
  bool has_waiting() const noexcept {
    for (wait_node<T>* n = head_; n != nullptr; n = n->next) {
      if (n->owner->still_waiting()) return true;
    }
    return false;
  }

 private:
  wait_node<T>* head_ = nullptr;
  wait_node<T>* tail_ = nullptr;
  std::atomic<std::size_t> queued_{0};
};

}  // namespace leash::inline v0::detail
