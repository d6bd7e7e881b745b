// SPDX-License-Identifier: BSL-1.0
// leash/detail/context.hpp: the untyped machinery of context_value: a task's
// context as a persistent list, and the thread's current context.
//
// A context is an immutable singly linked list of (key, value) nodes, newest
// first, shared by reference count: a task captures its spawner's context by
// taking one reference to the head node (nothing when the context is empty),
// and a binding prepends a node whose tail is the context it was made in.
// So capture never copies values, a binding never disturbs what a child
// already captured, and a value dies with the last binding and the last task
// that reach its node.
#pragma once

#include <atomic>
#include <cstddef>
#include <utility>

namespace leash::inline v0::detail {

class context_node {
 public:
  context_node(const void* key, context_node* tail) noexcept : key_(key), tail_(tail) {}
  context_node(const context_node&) = delete;
  context_node& operator=(const context_node&) = delete;

  const void* key() const noexcept { return key_; }
  const context_node* tail() const noexcept { return tail_; }
  context_node* tail() noexcept { return tail_; }

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  // Frees the node, and the tail it held, when this was the last reference.
  // A loop rather than recursion: a long context frees in constant stack.
  static void release(context_node* n) noexcept {
    while (n != nullptr && n->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      context_node* const tail = n->tail_;
      delete n;
      n = tail;
    }
  }

 protected:
  // The tail's reference passes to the node: the caller has taken one for it.
  virtual ~context_node() = default;

 private:
  const void* key_;  // the context_value the node binds
  context_node* tail_;
  std::atomic<std::size_t> refs_{1};
};

// An owning reference to a context (its head node), or the empty context.
class context_ref {
 public:
  context_ref() noexcept = default;
  // Adopts a reference the caller already holds.
  explicit context_ref(context_node* adopted) noexcept : node_(adopted) {}
  context_ref(context_ref&& other) noexcept : node_(std::exchange(other.node_, nullptr)) {}
  context_ref& operator=(context_ref&& other) noexcept {
    context_node::release(std::exchange(node_, std::exchange(other.node_, nullptr)));
    return *this;
  }
  context_ref(const context_ref&) = delete;
  context_ref& operator=(const context_ref&) = delete;
  ~context_ref() { context_node::release(node_); }

  // Takes a new reference to `n` (null: the empty context, no count touched).
  static context_ref share(context_node* n) noexcept {
    if (n != nullptr) n->add_ref();
    return context_ref(n);
  }
  context_node* get() const noexcept { return node_; }
  void reset() noexcept { context_node::release(std::exchange(node_, nullptr)); }

 private:
  context_node* node_ = nullptr;
};

class context_binding_base;

// A running context: its head, and the innermost binding made in it (they
// differ once a binding's node is shadowed by a child's capture; the binding
// list is what checks that bindings end innermost first). Neither pointer
// owns: the head is owned by the bindings and by the task's captured context.
struct context_state {
  context_node* head = nullptr;
  context_binding_base* innermost = nullptr;
};

// This thread's current context: a plain thread's own, or the context of the
// task that runs on it (installed by the task's run or slice).
inline constinit thread_local context_state tls_context{};

// What a spawn captures: the spawner's context, one reference (or none).
inline context_ref capture_context() noexcept {
  return context_ref::share(tls_context.head);
}

}  // namespace leash::inline v0::detail
