// SPDX-License-Identifier: BSL-1.0
// leash/detail/thread_census.hpp: the count of OS threads leash itself runs.
//
// A deadlock check outside virtual time (runtime_options::detect_deadlocks)
// must know that no thread exists that leash cannot see: a plain thread may
// hold a reference to a channel and send on it later. The OS tells how many
// threads the process has; this census tells how many of them are leash's.
//
// Every thread leash starts counts itself from the first line of its
// function to the last, so a counted thread is always one the OS lists too
// (it may list a thread a moment before it counts, or after it stopped
// counting: the check then sees one thread too many and gives up). Each
// change bumps a generation, so two equal readings mean the set of counted
// threads did not change in between.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>

namespace leash::inline v0::detail {

// runtime_options::detect_deadlocks, read by every nursery opened on a
// plain thread (see deadlock_watch.hpp).
inline std::atomic<bool> detect_deadlocks_enabled{false};

class thread_census {
 public:
  struct reading {
    std::size_t threads = 0;
    std::uint64_t generation = 0;
    bool operator==(const reading&) const = default;
  };

  static thread_census& instance() {
    static auto* c = new thread_census;  // immortal: threads leave during static destruction
    return *c;
  }

  reading read() const {
    std::lock_guard lock(mutex_);
    return {threads_, generation_};
  }

  // True on a thread that counts itself now.
  static bool counted() noexcept { return counted_; }

  // Counts the running thread for its lifetime: the first and last object of
  // a leash thread's function.
  class member {
   public:
    member() noexcept { instance().change(true); }
    ~member() { instance().change(false); }
    member(const member&) = delete;
    member& operator=(const member&) = delete;
  };

 private:
  thread_census() = default;

  void change(bool joins) noexcept {
    std::lock_guard lock(mutex_);
    joins ? ++threads_ : --threads_;
    ++generation_;
    counted_ = joins;
  }

  mutable std::mutex mutex_;
  std::size_t threads_ = 0;       // guarded by mutex_
  std::uint64_t generation_ = 0;  // guarded by mutex_
  static inline thread_local bool counted_ = false;
};

// How many threads the OS lists for this process, or 0 when it cannot tell
// (then no check passes).
inline std::size_t os_thread_count() noexcept {
#if defined(__linux__)
  std::FILE* f = std::fopen("/proc/self/stat", "r");
  if (f == nullptr) return 0;
  char buf[1024];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  // Fields after the command name, which may hold spaces and parentheses:
  // state is the 3rd field, num_threads the 20th.
  const char* p = nullptr;
  for (const char* c = buf; *c != '\0'; ++c)
    if (*c == ')') p = c;
  if (p == nullptr) return 0;
  // The 18th space after it precedes num_threads (fields 3 to 20).
  constexpr int spaces_before_num_threads = 18;
  for (int i = 0; i < spaces_before_num_threads && p != nullptr; ++i)
    p = std::strchr(p + 1, ' ');
  if (p == nullptr) return 0;
  unsigned long count = 0;
  if (std::sscanf(p + 1, "%lu", &count) != 1) return 0;
  return count;
#else
  return 0;
#endif
}

}  // namespace leash::inline v0::detail
