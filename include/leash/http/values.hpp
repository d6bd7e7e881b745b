// SPDX-License-Identifier: BSL-1.0
// leash/http/values.hpp: typed request-scoped values that die with their request.
// Prevents: gorilla/context's global map keyed by *http.Request: WithContext
// copied the request, the key changed, Clear missed it and memory grew. Here
// the values live inside the request object; there is no table anywhere else.
//
//   struct user { std::string name; };
//   inline constexpr leash::http::value_key<user> current_user{"user"};
//
//   void auth(leash::http::server_request& req) {
//     req.values().set(current_user, user{"ada"});
//   }
//   void handle(leash::http::server_request& req, leash::http::response_writer& w) {
//     if (const user* u = req.values().get(current_user)) w.write("hello " + u->name);
//   }
//
// Keys are objects compared by address, not strings: two libraries cannot
// collide on a name, and the key's type fixes the value's type.
//
// Guarantees. Never blocks. Not thread-safe (one request, one handler). A
// bag is neither copyable nor movable: its values are destroyed exactly once,
// with the request that owns it.
#pragma once

#include "../detail/config.hpp"

#include <cstddef>
#include <utility>
#include <vector>

namespace leash::inline v0::http {

// A key for values of type T. Define it once, as an inline constexpr
// variable: its address is its identity; `name` is for diagnostics.
template <class T>
class value_key {
 public:
  constexpr explicit value_key(const char* name) noexcept : name_(name) {}
  value_key(const value_key&) = delete;
  value_key& operator=(const value_key&) = delete;
  constexpr const char* name() const noexcept { return name_; }

 private:
  const char* name_;
};

// The values of one request, by key. Destroyed with the request.
class value_bag {
 public:
  value_bag() = default;
  value_bag(const value_bag&) = delete;
  value_bag& operator=(const value_bag&) = delete;
  ~value_bag() { clear(); }

  // Stores `value` under `key`, replacing (and destroying) a previous one;
  // returns a reference to the stored value.
  template <class T, class U = T>
  T& set(const value_key<T>& key, U&& value) {
    T* fresh = new T(std::forward<U>(value));
    for (entry& e : entries_) {
      if (e.key == &key) {
        e.destroy(e.value);
        e.value = fresh;
        return *fresh;
      }
    }
    try {
      entries_.push_back({&key, fresh, [](void* p) { delete static_cast<T*>(p); }});
    } catch (...) {
      delete fresh;
      throw;
    }
    return *fresh;
  }

  // The value under `key`, or nullptr.
  template <class T>
  T* get(const value_key<T>& key) const noexcept {
    for (const entry& e : entries_) {
      if (e.key == &key) return static_cast<T*>(e.value);
    }
    return nullptr;
  }

  // Destroys the value under `key`; false if there was none.
  template <class T>
  bool erase(const value_key<T>& key) noexcept {
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->key == &key) {
        it->destroy(it->value);
        entries_.erase(it);
        return true;
      }
    }
    return false;
  }

  std::size_t size() const noexcept { return entries_.size(); }

  // Destroys every value, newest first.
  void clear() noexcept {
    while (!entries_.empty()) {
      entries_.back().destroy(entries_.back().value);
      entries_.pop_back();
    }
  }

 private:
  struct entry {
    const void* key;  // the value_key's address
    void* value;      // a T*, owned
    void (*destroy)(void*);
  };
  std::vector<entry> entries_;  // few entries: a linear search beats hashing
};

}  // namespace leash::inline v0::http
