// SPDX-License-Identifier: BSL-1.0
// leash/http/message.hpp: HTTP/1.1 request and response heads.
//
// Prevents: header maps that lose order or duplicates (Go's Header is a map,
// so a second Content-Length is only visible to code that asks for it).
// `fields` keeps every field line in arrival order, duplicates included, and
// looks names up case-insensitively:
//
//   leash::http::request_head req{"GET", "/index.html"};
//   req.headers.add("Accept", "text/html");
//   req.headers.add("Accept-Language", "en");
//   ...
//   if (auto type = resp.headers.get("content-type")) use(*type);
//   for (auto [name, value] : resp.headers) print(name, value);
//
// Guarantees. Nothing here blocks or validates: `fields` stores what it is
// given (the request writer validates before sending; the parser validates
// what it receives). Not thread-safe; a head is a plain value. Views returned
// by lookups stay valid until the fields are next modified.
#pragma once

#include "../detail/config.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "detail/chars.hpp"

namespace leash::inline v0::http {

class response_parser;

// An ordered list of field lines (name, value) with case-insensitive lookup.
// All text lives in one buffer, so a head costs two allocations however many
// fields it has, and clear() keeps both for the next message.
class fields {
 public:
  // One field line, as views into the fields' buffer.
  struct field {
    std::string_view name;
    std::string_view value;
  };

  // Random-access iteration in arrival order, yielding `field` by value.
  class iterator {
   public:
    using value_type = field;
    using difference_type = std::ptrdiff_t;

    field operator*() const { return (*owner_)[index_]; }
    iterator& operator++() {
      ++index_;
      return *this;
    }
    iterator operator++(int) {
      iterator old = *this;
      ++index_;
      return old;
    }
    bool operator==(const iterator&) const = default;

   private:
    friend class fields;
    iterator(const fields* owner, std::size_t index) : owner_(owner), index_(index) {}
    const fields* owner_ = nullptr;
    std::size_t index_ = 0;
  };

  // Appends a field line; an existing field of the same name is kept.
  void add(std::string_view name, std::string_view value) {
    entry e{text_.size(), name.size(), text_.size() + name.size(), value.size()};
    text_.append(name).append(value);
    entries_.push_back(e);
  }

  // Replaces every field named `name` with one (name, value) at the end.
  void set(std::string_view name, std::string_view value) {
    erase(name);
    add(name, value);
  }

  // Removes every field named `name` (case-insensitive); returns how many.
  std::size_t erase(std::string_view name) {
    const std::string copy(name);  // name may point into text_
    fields kept;
    for (field f : *this) {
      if (!detail::iequals(f.name, copy)) kept.add(f.name, f.value);
    }
    const std::size_t removed = size() - kept.size();
    if (removed != 0) *this = std::move(kept);
    return removed;
  }

  // The value of the first field named `name`, if any.
  std::optional<std::string_view> get(std::string_view name) const {
    for (field f : *this) {
      if (detail::iequals(f.name, name)) return f.value;
    }
    return std::nullopt;
  }

  bool contains(std::string_view name) const { return get(name).has_value(); }

  // How many fields are named `name`.
  std::size_t count(std::string_view name) const {
    std::size_t n = 0;
    for (field f : *this)
      if (detail::iequals(f.name, name)) ++n;
    return n;
  }

  // Every value of the fields named `name`, in order.
  std::vector<std::string_view> get_all(std::string_view name) const {
    std::vector<std::string_view> out;
    for (field f : *this) {
      if (detail::iequals(f.name, name)) out.push_back(f.value);
    }
    return out;
  }

  // True when some field named `name` holds `token` as one of its
  // comma-separated elements, case-insensitively ("Connection: close").
  bool has_token(std::string_view name, std::string_view token) const {
    bool found = false;
    for (field f : *this) {
      if (!detail::iequals(f.name, name)) continue;
      detail::for_each_list_element(
          f.value, [&](std::string_view e) { found = found || detail::iequals(e, token); });
    }
    return found;
  }

  // The i-th field line in arrival order; i < size().
  field operator[](std::size_t i) const {
    const entry& e = entries_[i];
    const std::string_view text = text_;
    return {text.substr(e.name_offset, e.name_size), text.substr(e.value_offset, e.value_size)};
  }

  std::size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }
  iterator begin() const { return {this, 0}; }
  iterator end() const { return {this, entries_.size()}; }

  // Removes every field; keeps the allocated memory for reuse.
  void clear() noexcept {
    text_.clear();
    entries_.clear();
  }

  // Same field lines (names compared exactly) in the same order.
  friend bool operator==(const fields& a, const fields& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (a[i].name != b[i].name || a[i].value != b[i].value) return false;
    }
    return true;
  }

 private:
  friend class response_parser;

  // Used by the parser for obs-fold: the last value grows by `more`. Valid
  // because the last value always ends the text buffer.
  void append_to_last_value(std::string_view more) {
    text_.append(more);
    entries_.back().value_size += more.size();
  }

  struct entry {
    std::size_t name_offset;
    std::size_t name_size;
    std::size_t value_offset;  // == name_offset + name_size
    std::size_t value_size;
  };

  std::string text_;            // every name and value, back to back
  std::vector<entry> entries_;  // in arrival order
};

// "HTTP/major.minor".
struct version {
  int major = 1;
  int minor = 1;
  friend bool operator==(const version&, const version&) = default;
};

// What the client sends before the body. The request writer adds Host (when
// missing) and the framing fields (Content-Length / Transfer-Encoding).
struct request_head {
  request_head() = default;
  request_head(std::string method_, std::string target_)
      : method(std::move(method_)), target(std::move(target_)) {}

  std::string method = "GET";
  std::string target = "/";  // origin-form: path and query
  http::fields headers;
};

// A parsed status line and header section.
struct response_head {
  http::version version;
  int status = 0;      // 100..599
  std::string reason;  // reason phrase, possibly empty; carries no meaning
  http::fields headers;
};

}  // namespace leash::inline v0::http
