// SPDX-License-Identifier: BSL-1.0
// leash/detail/registry.hpp: the process-wide lists a leak check reads.
//
// Each nursery links itself here for its lifetime (one lock per nursery, none
// per task); a leak check or live_tasks() walks the list and asks every
// nursery for a snapshot of its tasks. Lock order: the registry's mutex, then
// a nursery's.
//
// Tickers and must-close handles are listed in a second registry, by id
// (object_registry): tickers always, handles only while a leak check lives.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "../errors.hpp"
#include "cancel_state.hpp"
#include "leak_signal.hpp"
#include "task_identity.hpp"
#include "virtual_clock.hpp"

namespace leash::inline v0::detail {

inline std::uint64_t next_id() noexcept {
  static std::atomic<std::uint64_t> counter{0};
  return counter.fetch_add(1, std::memory_order_relaxed) + 1;
}

struct task_snapshot {
  std::uint64_t id = 0;
  std::string name;
  source_location site;
  const char* blocked_in = nullptr;  // a string that lives forever, or nullptr when running
  std::chrono::steady_clock::duration blocked_for{};
  std::chrono::steady_clock::duration age{};
};

struct nursery_snapshot {
  std::uint64_t id = 0;
  std::uint64_t parent_task = 0;  // the task whose body opened it, 0 if none
  std::string name;
  source_location site;
  std::vector<task_snapshot> tasks;
};

class nursery_node {
 public:
  virtual nursery_snapshot snapshot() const = 0;
  virtual const cancel_state& state() const noexcept = 0;

 protected:
  // Virtual as well as protected: the friend below can reach it, so even a
  // destruction through this base must run the derived destructor.
  virtual ~nursery_node() = default;

 private:
  friend class registry;
  nursery_node* prev_ = nullptr;  // guarded by the registry's mutex
  nursery_node* next_ = nullptr;
};

class registry {
 public:
  static registry& instance() {
    static auto* r = new registry;  // immortal: nurseries may die during static destruction
    return *r;
  }

  void add(nursery_node* n) noexcept {
    std::lock_guard lock(mutex_);
    ++added_;
    n->next_ = head_;
    if (head_ != nullptr) head_->prev_ = n;
    head_ = n;
  }

  void remove(nursery_node* n) noexcept {
    {
      std::lock_guard lock(mutex_);
      if (n->prev_ != nullptr) n->prev_->next_ = n->next_;
      if (n->next_ != nullptr) n->next_->prev_ = n->prev_;
      if (head_ == n) head_ = n->next_;
    }
    leak_signal::instance().notify();
  }

  std::vector<nursery_snapshot> snapshot() const {
    std::lock_guard lock(mutex_);
    std::vector<nursery_snapshot> out;
    for (nursery_node* n = head_; n != nullptr; n = n->next_)
      out.push_back(n->snapshot());
    return out;
  }

  // For a deadlock check: true when every nursery runs on `vc`, and how many
  // were ever added (a change means one was opened meanwhile).
  std::pair<bool, std::uint64_t> all_on(const virtual_clock* vc) const {
    std::lock_guard lock(mutex_);
    for (nursery_node* n = head_; n != nullptr; n = n->next_) {
      if (n->state().vclock() != vc) return {false, added_};
    }
    return {true, added_};
  }

  // Called whenever a task ends; wakes leak checks, if any are waiting.
  void task_ended() noexcept { leak_signal::instance().notify(); }

  // The details of a stopped nursery's token, if `token` is one; searched
  // under the lock so that the nursery cannot die meanwhile.
  std::optional<cancel_info> find(const std::stop_token& token) const {
    std::lock_guard lock(mutex_);
    for (nursery_node* n = head_; n != nullptr; n = n->next_) {
      if (n->state().token() == token) return n->state().info();
    }
    return std::nullopt;
  }

 private:
  registry() = default;

  mutable std::mutex mutex_;
  nursery_node* head_ = nullptr;
  std::uint64_t added_ = 0;  // guarded by mutex_
};

// What a leak check knows about a live ticker, an open must-close handle, or
// a plain thread (not a task) blocked in a channel call.
struct object_snapshot {
  enum kind_t { ticker, handle, blocked_thread } kind = ticker;
  std::uint64_t id = 0;
  std::string name;      // a ticker's name, a handle's resource type, or the blocking call
  source_location site;  // where it was started / opened
  std::chrono::steady_clock::time_point since{};
};

// Live tickers and (while a leak check lives) open must-close handles, by id.
// Entries are copies: nothing here points into the objects themselves.
class object_registry {
 public:
  static object_registry& instance() {
    static auto* r = new object_registry;  // immortal, like the registry
    return *r;
  }

  // Records an object; returns its id (never 0).
  std::uint64_t add(object_snapshot::kind_t kind, std::string name, source_location site) {
    object_snapshot o{kind, next_id(), std::move(name), site, std::chrono::steady_clock::now()};
    const std::uint64_t id = o.id;
    std::lock_guard lock(mutex_);
    ++added_;
    objects_.emplace(id, std::move(o));
    return id;
  }

  void remove(std::uint64_t id) noexcept {
    if (id == 0) return;
    {
      std::lock_guard lock(mutex_);
      objects_.erase(id);
    }
    leak_signal::instance().notify();
  }

  // For a deadlock check: true when no ticker lives, and how many objects
  // were ever added (a change means one was started meanwhile).
  std::pair<bool, std::uint64_t> no_tickers() const {
    std::lock_guard lock(mutex_);
    for (const auto& entry : objects_) {
      if (entry.second.kind == object_snapshot::ticker) return {false, added_};
    }
    return {true, added_};
  }

  std::vector<object_snapshot> snapshot() const {
    std::lock_guard lock(mutex_);
    std::vector<object_snapshot> out;
    out.reserve(objects_.size());
    for (const auto& [id, o] : objects_)
      out.push_back(o);
    return out;
  }

 private:
  object_registry() = default;

  mutable std::mutex mutex_;
  std::map<std::uint64_t, object_snapshot> objects_;  // guarded by mutex_
  std::uint64_t added_ = 0;                           // guarded by mutex_
};

// Marks a thread blocked in a channel call or select. A task's blocking call
// shows through the task (live_tasks()' blocked_in); a plain thread's is
// recorded here while a leak check lives, so that a thread left waiting on a
// channel nobody serves is reported too.
class channel_wait_scope {
 public:
  explicit channel_wait_scope(const char* what) noexcept : blocked_(what) {
    if (current_task != nullptr || !leak_signal::instance().checking()) return;
    try {
      id_ = object_registry::instance().add(object_snapshot::blocked_thread, what, {});
    } catch (...) {
      // Out of memory: the wait goes on unrecorded; only the report loses it.
    }
  }
  ~channel_wait_scope() { object_registry::instance().remove(id_); }
  channel_wait_scope(const channel_wait_scope&) = delete;
  channel_wait_scope& operator=(const channel_wait_scope&) = delete;

 private:
  blocked_scope blocked_;
  std::uint64_t id_ = 0;
};

// Throws the cancelled exception for a stopped `token`, with full details when
// the token is an ambient scope's of this thread or any nursery's. A token of
// a cancel_scope on another thread, or of a foreign std::stop_source, gives a
// plain cancelled (reason cancelled): nothing more is known about it.
[[noreturn]] inline void throw_cancelled(const std::stop_token& token) {
  for (cancel_state* s = ambient; s != nullptr; s = s->parent()) {
    if (s->token_ref() == token) s->throw_cancelled();
  }
  if (auto info = registry::instance().find(token)) cancel_state::throw_info(std::move(*info));
  cancel_info info;
  info.message = "stop requested on an explicit std::stop_token";
  throw cancelled(std::move(info));
}

inline void throw_if_stopped(const std::stop_token& token) {
  if (token.stop_requested()) throw_cancelled(token);
}

}  // namespace leash::inline v0::detail
