// SPDX-License-Identifier: BSL-1.0
// leash/context_value.hpp: task-local values inherited by the tasks spawned
// below (request ids, trace spans, deadlines across layers).
//
//   inline leash::context_value<std::string> request_id;  // a key: a global or a static
//
//   auto bound = request_id.bind("req-42");  // for this task (or plain thread) until `bound` dies
//   n.spawn([] { use(*request_id.get()); }); // a task sees what was bound where it was spawned
//   request_id.get();                        // const std::string*, or nullptr when unbound
//   request_id.value_or("none");             // a copy, or the fallback
//
// Each task has a context: the values bound where it was spawned (captured
// at spawn, shared, never copied) plus those it binds itself. A thread task
// sees its context while it runs; a coroutine task's context belongs to the
// task, so it survives suspension and moves with the task between workers.
// A plain thread (not a task) has a context of its own. A binding shadows an
// earlier one of the same key until it ends; a child's binding is invisible to
// its parent and siblings.
//
// Bindings end innermost first (they are scoped objects, so that is the
// natural order). Ending one while a later binding of the same task is still
// alive throws usage_error (the later one then restores the context as it was
// before both); ending one on another thread or task than the one that made
// it terminates with a message, since that task's context would dangle.
//
// A bound value is shared by every task that captured it, possibly on several
// threads at once: get() gives const access only, and T's const members must
// be safe to call concurrently. The context_value must outlive its bindings
// and the tasks that captured them (declare it at namespace scope or static).
#pragma once

#include <cstdio>
#include <exception>
#include <type_traits>
#include <utility>

#include "detail/context.hpp"
#include "errors.hpp"

namespace leash::inline v0 {
namespace detail {
class context_binding_base;
template <class T>
class context_node_of;
}  // namespace detail

template <class T>
class context_value {
  static_assert(std::is_object_v<T> && !std::is_const_v<T>,
                "leash::context_value: T must be a non-const object type");

 public:
  class binding;

  constexpr context_value() noexcept = default;
  context_value(const context_value&) = delete;
  context_value& operator=(const context_value&) = delete;

  // Binds a T made from `args` in the current task (or plain thread) until
  // the returned binding is destroyed; tasks spawned meanwhile keep it.
  template <class... Args>
  [[nodiscard]] binding bind(Args&&... args) {
    return binding(*this, std::forward<Args>(args)...);
  }

  // The innermost value bound in the current context, or nullptr. Valid while
  // the binding that made it, or the task that captured it, lives.
  const T* get() const noexcept;

  // A copy of the current value, or `fallback` when none is bound.
  template <class U>
  T value_or(U&& fallback) const {
    const T* v = get();
    return v != nullptr ? *v : static_cast<T>(std::forward<U>(fallback));
  }
};

namespace detail {

// Prepends a node to this thread's current context for its lifetime, and
// checks that bindings of one context end innermost first.
class context_binding_base {
 public:
  context_binding_base(const context_binding_base&) = delete;
  context_binding_base& operator=(const context_binding_base&) = delete;

 protected:
  // Installs `node` (whose tail is the current head, already counted).
  explicit context_binding_base(context_node* node) noexcept
      : node_(node),
        restore_(tls_context.head),
        below_(tls_context.innermost),
        uncaught_(std::uncaught_exceptions()) {
    tls_context = context_state{node, this};
  }

  // Not noexcept: ending out of order throws usage_error (unless an exception
  // is already propagating: then it only repairs the context).
  ~context_binding_base() noexcept(false) {
    if (tls_context.innermost == this) {
      tls_context = context_state{restore_, below_};
      context_node::release(node_);
      return;
    }
    end_out_of_order();
  }

  const context_node* node() const noexcept { return node_; }

 private:
  void end_out_of_order() {
    context_binding_base* const above = find_above();
    if (above == nullptr) terminate_foreign();
    // The later binding takes over this one's restore: when it ends, the
    // context is as it was before both. Its node keeps this node alive.
    above->restore_ = restore_;
    above->below_ = below_;
    context_node::release(node_);
    if (std::uncaught_exceptions() > uncaught_) return;
    throw usage_error(
        "leash::context_value: a binding ended while a binding made after it in the same task is "
        "still alive; bindings must end innermost first");
  }

  // The binding made right after this one in the current context, or null
  // when this one is not in it (it belongs to another thread or task).
  context_binding_base* find_above() const noexcept {
    for (context_binding_base* b = tls_context.innermost; b != nullptr; b = b->below_) {
      if (b->below_ == this) return b;
    }
    return nullptr;
  }

  [[noreturn]] static void terminate_foreign() noexcept {
    std::fputs(
        "leash::context_value: a binding ended on another thread or task than the one that made "
        "it; a binding must end in the task (or plain thread) that made it\n",
        stderr);
    std::terminate();
  }

  context_node* node_;           // owned: one reference
  context_node* restore_;        // the head to restore at the end
  context_binding_base* below_;  // the binding made before this one, or null
  int uncaught_;                 // std::uncaught_exceptions() when bound
};

template <class T>
class context_node_of final : public context_node {
 public:
  template <class... Args>
  context_node_of(const void* key, context_node* tail, Args&&... args)
      : context_node(key, tail), value(std::forward<Args>(args)...) {}

  const T value;
};

// A new node of `key` in front of the current context, counting its tail.
template <class T, class... Args>
context_node* make_context_node(const void* key, Args&&... args) {
  context_node* const tail = tls_context.head;
  auto* node = new context_node_of<T>(key, tail, std::forward<Args>(args)...);
  if (tail != nullptr) tail->add_ref();  // after the value's constructor: it may throw
  return node;
}

}  // namespace detail

// A value bound in the current context; scoped: neither copied nor moved.
template <class T>
class context_value<T>::binding : private detail::context_binding_base {
 public:
  binding(const binding&) = delete;
  binding& operator=(const binding&) = delete;
  ~binding() noexcept(false) = default;

  // The bound value.
  const T& value() const noexcept {
    return static_cast<const detail::context_node_of<T>*>(node())->value;
  }

 private:
  friend class context_value<T>;
  template <class... Args>
  explicit binding(const context_value& key, Args&&... args)
      : context_binding_base(detail::make_context_node<T>(&key, std::forward<Args>(args)...)) {}
};

template <class T>
const T* context_value<T>::get() const noexcept {
  for (const detail::context_node* n = detail::tls_context.head; n != nullptr; n = n->tail()) {
    if (n->key() == this) return &static_cast<const detail::context_node_of<T>*>(n)->value;
  }
  return nullptr;
}

}  // namespace leash::inline v0
