// Test support: the two kinds of task as parties of a channel operation.
//
// A contract that involves two parties (a sender and a receiver, a select
// and its partner) is checked between two coroutine tasks and between a
// thread task and a coroutine task in either role: mixed_pairings lists those
// three, and spawn_send / spawn_recv start a party of either kind.
#pragma once

#include <array>
#include <leash.hpp>
#include <optional>
#include <string>
#include <utility>

namespace leash_test {

enum class party { thread, coroutine };

inline std::string to_string(party p) {
  return p == party::thread ? "thread" : "coroutine";
}

// Two parties of one contract; which role each plays is the test's to say.
struct pairing {
  party first;
  party second;
};

inline std::string to_string(const pairing& p) {
  return to_string(p.first) + " with " + to_string(p.second);
}

// Every pairing that has a coroutine task in it (thread with thread is the
// thread tests' business).
inline constexpr std::array<pairing, 3> mixed_pairings{{
    {party::coroutine, party::coroutine},
    {party::thread, party::coroutine},
    {party::coroutine, party::thread},
}};

// The end of the name a task of kind `p` is seen blocked in during channel
// operation `op` ("send" or "recv"): ">::send" or ">::async_send", which
// match a channel of any element type and never each other.
inline std::string blocked_name(party p, const std::string& op) {
  return p == party::thread ? ">::" + op : ">::async_" + op;
}

// Spawns a task of kind `p` into `n` that sends `value` on `ch`.
template <class T>
leash::task<void> spawn_send(leash::nursery& n, party p, leash::channel<T>& ch, T value) {
  if (p == party::thread) {
    return n.spawn([&ch, v = std::move(value)]() mutable { ch.send(std::move(v)); });
  }
  return n.spawn([&ch, v = std::move(value)]() mutable -> leash::coro<void> {
    co_await ch.async_send(std::move(v));
  });
}

// Spawns a task of kind `p` into `n` that receives once from `ch`.
template <class T>
leash::task<std::optional<T>> spawn_recv(leash::nursery& n, party p, leash::channel<T>& ch) {
  if (p == party::thread) return n.spawn([&ch] { return ch.recv(); });
  return n.spawn([&ch]() -> leash::coro<std::optional<T>> { co_return co_await ch.async_recv(); });
}

}  // namespace leash_test
