// SPDX-License-Identifier: BSL-1.0
// leash/detail/frame_allocator.hpp: recycled memory for coroutine frames.
//
// Each thread keeps one free list per size class (multiples of frame_granule
// up to max_pooled_frame). A frame is taken from, and returned to, the list of
// the thread that runs the allocation or the deallocation: a frame freed on
// another thread than the one that allocated it simply joins the freeing
// thread's list. Blocks of one class are interchangeable (each is exactly
// ::operator new(class size)), so no list ever needs to know where a block came
// from, and the lists take no lock or atomic. Blocks a thread frees beyond its
// budget move in batches through a small locked depot to threads whose list is
// empty.
//
//   frame size          allocate                          deallocate
//   <= max_pooled_frame this thread's list, else a batch  this thread's list; over
//                       from the depot, else              max_cached_frame_bytes a batch
//                       ::operator new(class size)        to the depot (or ::operator
//                                                         delete when it is full)
//   > max_pooled_frame  ::operator new                    ::operator delete
//
// Guarantees. In steady state (frames of the sizes a thread just freed) an
// allocation is a pop from a thread-local list: no malloc, no lock. A thread
// caches at most max_cached_frame_bytes (and one block more), the depot at
// most max_depot_class_bytes per class; the rest goes back to the global
// allocator at once, so memory returns after a burst. A thread's cache is
// freed when the thread exits; frames freed on that thread after its cache
// is gone (from later thread_local destructors) go to ::operator delete.
// Under AddressSanitizer a cached block is poisoned, so a use after free of
// a frame is still reported.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <mutex>
#include <new>
#include <utility>

#if defined(__SANITIZE_ADDRESS__)
#define LEASH_DETAIL_FRAME_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LEASH_DETAIL_FRAME_ASAN 1
#endif
#endif

#if defined(LEASH_DETAIL_FRAME_ASAN)
extern "C" void __asan_poison_memory_region(void const volatile* addr, std::size_t size);
extern "C" void __asan_unpoison_memory_region(void const volatile* addr, std::size_t size);
#endif

namespace leash::inline v0::detail {

// Frames are rounded up to a multiple of this: one cache line, so few classes
// cover every small frame and neighbouring frames never share a line.
inline constexpr std::size_t frame_granule = 64;

// Larger frames (coroutines with big local arrays) are rare; they go straight
// to ::operator new, which keeps the lists few and each cached block small.
inline constexpr std::size_t max_pooled_frame = 1024;

inline constexpr std::size_t frame_classes = max_pooled_frame / frame_granule;

// Bytes one thread keeps cached: thousands of small frames, enough for the
// frames a thread has in flight at a time in steady state, yet a thread that
// saw a burst of far more keeps only this much back from the global allocator.
inline constexpr std::size_t max_cached_frame_bytes = 256 * 1024;

// Blocks move between threads a batch at a time (see frame_depot).
inline constexpr std::size_t frame_batch_blocks = 32;

// What the depot holds at most of one size class (a class that nobody
// allocates any more must not crowd out the others); beyond it, blocks go
// back to ::operator delete.
inline constexpr std::size_t max_depot_class_bytes = 1024 * 1024;

// A cached block: its first bytes link it to the next one of its class, and,
// at the head of a batch in the depot, to the next batch.
struct free_frame {
  free_frame* next;
  free_frame* next_batch;
};

// Batches of blocks that threads freed beyond their own cache, for threads
// whose list of that class is empty (tcmalloc's central free lists). A thread
// that allocates what other threads free (one spawning tasks that end on
// workers) then reaches ::operator new, and the allocator's arena lock that
// the freeing threads contend for, once per batch instead of once per block.
class frame_depot {
 public:
  static frame_depot& instance() {
    static auto* d = new frame_depot;  // immortal: threads may exit after static destruction
    return *d;
  }

  // A batch of frame_batch_blocks blocks of class `cls`, linked through next,
  // or nullptr.
  free_frame* take(std::size_t cls) noexcept {
    std::lock_guard lock(mutex_);
    free_frame* batch = batches_[cls];
    if (batch != nullptr) {
      batches_[cls] = batch->next_batch;
      bytes_[cls] -= frame_batch_blocks * (cls + 1) * frame_granule;
    }
    return batch;
  }

  // Gives every batch back to ::operator delete (after a burst, so that the
  // memory can go back to the OS).
  void release_all() noexcept {
    free_frame* all[frame_classes];
    {
      std::lock_guard lock(mutex_);
      for (std::size_t cls = 0; cls < frame_classes; ++cls) {
        all[cls] = std::exchange(batches_[cls], nullptr);
        bytes_[cls] = 0;
      }
    }
    for (std::size_t cls = 0; cls < frame_classes; ++cls) {
      while (free_frame* batch = all[cls]) {
        all[cls] = batch->next_batch;
        free_batch(batch, (cls + 1) * frame_granule);
      }
    }
  }

  // Bytes held now, over every class (a snapshot).
  std::size_t bytes() noexcept {
    std::lock_guard lock(mutex_);
    std::size_t total = 0;
    for (std::size_t b : bytes_)
      total += b;
    return total;
  }

  // Frees the blocks of one batch (poisoned while cached).
  static void free_batch(free_frame* batch, std::size_t bytes) noexcept;

  // Keeps `batch`; false when the depot is full (the caller frees it).
  bool give(std::size_t cls, free_frame* batch) noexcept {
    const std::size_t bytes = frame_batch_blocks * (cls + 1) * frame_granule;
    std::lock_guard lock(mutex_);
    if (bytes_[cls] + bytes > max_depot_class_bytes) return false;
    batch->next_batch = batches_[cls];
    batches_[cls] = batch;
    bytes_[cls] += bytes;
    return true;
  }

 private:
  std::mutex mutex_;
  free_frame* batches_[frame_classes] = {};
  std::size_t bytes_[frame_classes] = {};
};

// One thread's lists. Trivially destructible and constant-initialized, so an
// access costs no thread_local guard; frame_cache_reaper frees it at exit.
struct frame_cache {
  free_frame* heads[frame_classes];
  std::size_t counts[frame_classes];  // blocks in each list
  std::size_t cached_bytes;
  std::size_t global_allocations;  // frames this thread took from ::operator new
  bool reaper_armed;               // the reaper's destructor is registered for this thread
  bool closed;                     // the reaper ran: cache nothing more on this thread
};

inline constinit thread_local frame_cache tls_frame_cache{};

constexpr std::size_t frame_class_of(std::size_t size) noexcept {
  return size == 0 ? 0 : (size - 1) / frame_granule;
}

constexpr std::size_t frame_class_bytes(std::size_t cls) noexcept {
  return (cls + 1) * frame_granule;
}

inline void poison_cached_frame([[maybe_unused]] free_frame* f,
                                [[maybe_unused]] std::size_t bytes) noexcept {
#if defined(LEASH_DETAIL_FRAME_ASAN)
  __asan_poison_memory_region(reinterpret_cast<char*>(f) + sizeof(free_frame),
                              bytes - sizeof(free_frame));
#endif
}

inline void unpoison_cached_frame([[maybe_unused]] free_frame* f,
                                  [[maybe_unused]] std::size_t bytes) noexcept {
#if defined(LEASH_DETAIL_FRAME_ASAN)
  __asan_unpoison_memory_region(f, bytes);
#endif
}

inline void frame_depot::free_batch(free_frame* batch, std::size_t bytes) noexcept {
  while (free_frame* f = batch) {
    batch = f->next;
    unpoison_cached_frame(f, bytes);
    ::operator delete(f);
  }
}

// Frees this thread's cached blocks when the thread exits.
struct frame_cache_reaper {
  bool armed = false;
  ~frame_cache_reaper() {
    frame_cache& c = tls_frame_cache;
    for (std::size_t cls = 0; cls < frame_classes; ++cls) {
      while (free_frame* f = c.heads[cls]) {
        unpoison_cached_frame(f, frame_class_bytes(cls));
        c.heads[cls] = f->next;
        ::operator delete(f);
      }
      c.counts[cls] = 0;
    }
    c.cached_bytes = 0;
    c.closed = true;
  }
};

inline thread_local frame_cache_reaper tls_frame_reaper;

// Before this thread's cache first holds a block (a freed frame or a batch
// from the depot): registers the reaper, so the thread's exit frees it.
inline void arm_frame_reaper(frame_cache& c) noexcept {
  if (c.reaper_armed) return;
  c.reaper_armed = true;
  tls_frame_reaper.armed = true;  // odr-use: registers its destructor for this thread
}

// Memory for a coroutine frame of `size` bytes. Throws std::bad_alloc.
inline void* allocate_frame(std::size_t size) {
  frame_cache& c = tls_frame_cache;
  if (size > max_pooled_frame) {
    ++c.global_allocations;
    return ::operator new(size);
  }
  const std::size_t cls = frame_class_of(size);
  const std::size_t bytes = frame_class_bytes(cls);
  if (c.heads[cls] == nullptr && !c.closed) {
    arm_frame_reaper(c);
    if (free_frame* batch = frame_depot::instance().take(cls)) {
      c.heads[cls] = batch;
      c.counts[cls] = frame_batch_blocks;
      c.cached_bytes += frame_batch_blocks * bytes;
    }
  }
  if (free_frame* f = c.heads[cls]) {
    unpoison_cached_frame(f, bytes);
    c.heads[cls] = f->next;
    --c.counts[cls];
    c.cached_bytes -= bytes;
    return f;
  }
  ++c.global_allocations;
  return ::operator new(bytes);
}

// Over its budget, a thread's cache sheds blocks of the class it just grew:
// a whole batch to the depot, or (too few for a batch, or the depot full)
// back to ::operator delete.
inline void shed_frames(frame_cache& c, std::size_t cls) noexcept {
  const std::size_t bytes = frame_class_bytes(cls);
  const std::size_t n = std::min(c.counts[cls], frame_batch_blocks);
  free_frame* batch = c.heads[cls];
  free_frame* last = batch;
  for (std::size_t i = 1; i < n; ++i)
    last = last->next;
  c.heads[cls] = last->next;
  last->next = nullptr;
  c.counts[cls] -= n;
  c.cached_bytes -= n * bytes;
  if (n == frame_batch_blocks && frame_depot::instance().give(cls, batch)) return;
  frame_depot::free_batch(batch, bytes);
}

// Returns a frame from allocate_frame(size), on any thread.
inline void deallocate_frame(void* p, std::size_t size) noexcept {
  if (size > max_pooled_frame) {
    ::operator delete(p);
    return;
  }
  const std::size_t cls = frame_class_of(size);
  const std::size_t bytes = frame_class_bytes(cls);
  frame_cache& c = tls_frame_cache;
  if (c.closed) {
    ::operator delete(p);
    return;
  }
  arm_frame_reaper(c);
  auto* f = static_cast<free_frame*>(p);
  f->next = c.heads[cls];
  c.heads[cls] = f;
  ++c.counts[cls];
  c.cached_bytes += bytes;
  poison_cached_frame(f, bytes);
  if (c.cached_bytes > max_cached_frame_bytes) shed_frames(c, cls);
}

// Bytes this thread caches now (at most max_cached_frame_bytes).
inline std::size_t cached_frame_bytes() noexcept {
  return tls_frame_cache.cached_bytes;
}

// How many frames this thread has taken from ::operator new so far.
inline std::size_t frame_global_allocations() noexcept {
  return tls_frame_cache.global_allocations;
}

// A standard allocator over the frame cache, for the small objects made and
// freed once per coroutine task (its record): a spawn in steady state reaches
// no malloc. Over-aligned types go to the default allocator (cached blocks
// have ::operator new's alignment).
template <class T>
struct frame_cache_allocator {
  using value_type = T;
  frame_cache_allocator() noexcept = default;
  template <class U>
  frame_cache_allocator(const frame_cache_allocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    if constexpr (alignof(T) > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
      return std::allocator<T>().allocate(n);
    } else {
      return static_cast<T*>(allocate_frame(n * sizeof(T)));
    }
  }
  void deallocate(T* p, std::size_t n) noexcept {
    if constexpr (alignof(T) > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
      std::allocator<T>().deallocate(p, n);
    } else {
      deallocate_frame(p, n * sizeof(T));
    }
  }
  template <class U>
  bool operator==(const frame_cache_allocator<U>&) const noexcept {
    return true;
  }
};

// A base for promise types: their frames come from the thread's frame cache.
struct frame_allocated {
  static void* operator new(std::size_t size) { return allocate_frame(size); }
  static void operator delete(void* p, std::size_t size) noexcept { deallocate_frame(p, size); }
};

}  // namespace leash::inline v0::detail
