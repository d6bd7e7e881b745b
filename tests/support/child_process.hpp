// tests/support/child_process.hpp: runs a test helper program and captures its fate.
//
// For behaviour that ends a process (std::terminate, abort policies): the
// test runs tests/support/death_cases.cpp in a child and asserts on its exit
// and its stderr. POSIX, tests only.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace leash_test {

struct child_result {
  bool signalled = false;
  int code = 0;        // exit code, or signal number when signalled
  std::string output;  // stdout and stderr together
};

inline child_result run_child(const std::string& command) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("popen failed: " + command);
  child_result r;
  std::array<char, 4096> buf;
  while (std::fgets(buf.data(), buf.size(), pipe) != nullptr)
    r.output += buf.data();
  const int status = ::pclose(pipe);
  if (WIFSIGNALED(status)) {
    r.signalled = true;
    r.code = WTERMSIG(status);
  } else {
    r.code = WEXITSTATUS(status);
    // The shell between us and the program reports a signal as 128 + N.
    if (r.code > 128) {
      r.signalled = true;
      r.code -= 128;
    }
  }
  return r;
}

}  // namespace leash_test
