// SPDX-License-Identifier: BSL-1.0
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
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

#include "spin.hpp"

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
