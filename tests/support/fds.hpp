// SPDX-License-Identifier: BSL-1.0
// tests/support/fds.hpp: the process's open file descriptors, for the tests
// that check leash leaves none behind.
#pragma once

#include <dirent.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace leash_test {

// Open fds of the process, not counting pipes, fds closed while this reads,
// and the directory stream it reads: leash opens no pipe, while the
// sanitizer runtimes open and close one around a memory check (UBSan's
// dynamic type check, from any thread at any moment), which would make a
// count taken meanwhile one or two high.
inline int open_fds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  const std::string own = std::to_string(::dirfd(d));
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.' || own == e->d_name) continue;
    char target[64] = {};
    const std::string path = std::string("/proc/self/fd/") + e->d_name;
    const ssize_t len = ::readlink(path.c_str(), target, sizeof target - 1);
    if (len <= 0) continue;  // closed since readdir saw it: transient
    if (std::strncmp(target, "pipe:", 5) == 0) continue;
    ++n;
  }
  ::closedir(d);
  return n;
}

}  // namespace leash_test
