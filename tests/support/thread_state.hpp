// Test support: whether another thread of this process is asleep in the kernel.
//
// For waits leash does not report through live_tasks() (a nursery
// destructor's join runs on a plain thread): a test learns that the thread
// reached such a wait by seeing it asleep. Linux only (/proc).
#pragma once

#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace leash_test {

// The kernel's id of the calling thread, for thread_asleep().
inline pid_t current_thread_id() {
  return static_cast<pid_t>(::syscall(SYS_gettid));
}

// True if thread `tid` of this process is in interruptible sleep (state S:
// a futex, a condition variable, a blocking read). A running or runnable
// thread, or an unknown tid, gives false.
inline bool thread_asleep(pid_t tid) {
  std::ifstream stat("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::stringstream text;
  text << stat.rdbuf();
  const std::string line = text.str();
  // "tid (name) S ...": the name may hold spaces and parentheses, so the state
  // follows the last ')'.
  const std::size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'S';
}

}  // namespace leash_test
