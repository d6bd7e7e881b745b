// SPDX-License-Identifier: BSL-1.0
// leash/http/detail/chars.hpp: the character classes of RFC 9110 / 9112.
//
// One 256-entry table, built at compile time, answers "is this byte a tchar,
// a field-value byte, a target byte?" with one load, for the parser's hot loops.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace leash::inline v0::http::detail {

enum char_class : std::uint8_t {
  tchar = 1,        // token character (RFC 9110 5.6.2)
  value_char = 2,   // field-vchar / SP / HTAB: may appear inside a field value
  target_char = 4,  // visible ASCII: may appear in a request target
  reason_char = 8,  // HTAB / SP / VCHAR / obs-text: reason phrase
  qdtext = 16,      // quoted-string text, without '"' and '\'
};

constexpr std::array<std::uint8_t, 256> make_char_table() {
  std::array<std::uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    std::uint8_t v = 0;
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool vchar = c > 0x20 && c < 0x7f;
    const bool obs_text = c >= 0x80;
    if (alnum ||
        std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos) {
      v |= tchar;
    }
    if (vchar || obs_text || c == ' ' || c == '\t') v |= value_char | reason_char;
    if (vchar) v |= target_char;
    if ((vchar || obs_text || c == ' ' || c == '\t') && c != '"' && c != '\\') v |= qdtext;
    t[static_cast<std::size_t>(c)] = v;
  }
  return t;
}

inline constexpr std::array<std::uint8_t, 256> char_table = make_char_table();

constexpr bool is(char c, char_class k) noexcept {
  return (char_table[static_cast<unsigned char>(c)] & k) != 0;
}

constexpr bool is_ows(char c) noexcept {
  return c == ' ' || c == '\t';
}

constexpr bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

// The value of a hexadecimal digit, or -1.
constexpr int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

constexpr char to_lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// ASCII case-insensitive equality (field names, codings, connection options).
constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (to_lower(a[i]) != to_lower(b[i])) return false;
  }
  return true;
}

constexpr bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is(c, tchar)) return false;
  }
  return true;
}

// True when every byte of v may appear in a field value: VCHAR, obs-text,
// SP, HTAB (RFC 9110 5.5). The hot loop of header parsing, so it tests eight
// bytes at a time for "below 0x20" or "0x7f" (the classic has-less-than and
// has-zero bit tricks, exact for "is there such a byte"), and looks at single
// bytes only from a word that has one: a HTAB, or an invalid byte.
inline bool valid_field_value(std::string_view v) noexcept {
  constexpr std::uint64_t ones = 0x0101010101010101u;
  constexpr std::uint64_t high = 0x8080808080808080u;
  const char* p = v.data();
  std::size_t n = v.size();
  while (n >= 8) {
    std::uint64_t x;
    std::memcpy(&x, p, 8);
    const std::uint64_t below_space = (x - 0x20 * ones) & ~x & high;
    const std::uint64_t y = x ^ (0x7f * ones);
    const std::uint64_t del = (y - ones) & ~y & high;
    if ((below_space | del) != 0) break;
    p += 8;
    n -= 8;
  }
  for (; n != 0; ++p, --n) {
    if (!is(*p, value_char)) return false;
  }
  return true;
}

// s without leading and trailing SP / HTAB.
constexpr std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && is_ows(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back()))
    s.remove_suffix(1);
  return s;
}

// Calls f(element) for each element of a comma-separated list (RFC 9110
// 5.6.1), each trimmed of OWS; empty elements are passed too.
template <class F>
constexpr void for_each_list_element(std::string_view list, F&& f) {
  for (;;) {
    const std::size_t comma = list.find(',');
    f(trim_ows(list.substr(0, comma)));
    if (comma == std::string_view::npos) return;
    list.remove_prefix(comma + 1);
  }
}

// unreserved / sub-delims (RFC 3986 2.2, 2.3): the bytes a reg-name may hold
// besides pct-encoded triplets.
constexpr bool is_host_char(char c) noexcept {
  const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return alnum || std::string_view("-._~!$&'()*+,;=").find(c) != std::string_view::npos;
}

// True for uri-host [ ":" port ] (RFC 9110 7.2, RFC 3986 3.2.2), the grammar
// of a Host value and of an http URI's authority; also true for an empty
// value (RFC 9110 7.2: a Host for a target without an authority is empty).
// Stricter than the grammar: a port needs a non-empty host (":80" is
// refused). An IP-literal is checked for its brackets and characters only.
constexpr bool valid_host(std::string_view v) noexcept {
  if (v.empty()) return true;
  std::size_t i = 0;
  if (v.front() == '[') {  // IP-literal
    const std::size_t close = v.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (i = 1; i < close; ++i) {
      if (!is_host_char(v[i]) && v[i] != ':') return false;
    }
    i = close + 1;
  } else {  // reg-name or IPv4address
    for (; i < v.size() && v[i] != ':'; ++i) {
      if (v[i] == '%') {
        if (i + 2 >= v.size() || hex_value(v[i + 1]) < 0 || hex_value(v[i + 2]) < 0) return false;
        i += 2;
      } else if (!is_host_char(v[i])) {
        return false;
      }
    }
    if (i == 0) return false;  // ":80"
  }
  if (i == v.size()) return true;
  if (v[i] != ':') return false;
  for (++i; i < v.size(); ++i) {  // port = *DIGIT
    if (!is_digit(v[i])) return false;
  }
  return true;
}

// Largest body or chunk size leash accepts: what fits an int64, as in Go.
inline constexpr std::uint64_t max_length = (std::uint64_t{1} << 63) - 1;

enum class number_status { ok, empty, not_a_number, overflow };

// Parses 1*DIGIT (no sign, no whitespace) into out.
constexpr number_status parse_decimal(std::string_view s, std::uint64_t& out) noexcept {
  if (s.empty()) return number_status::empty;
  std::uint64_t v = 0;
  bool overflow = false;
  for (char c : s) {
    if (!is_digit(c)) return number_status::not_a_number;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (max_length - d) / 10) overflow = true;  // keep scanning: garbage wins
    if (!overflow) v = v * 10 + d;
  }
  if (overflow) return number_status::overflow;
  out = v;
  return number_status::ok;
}

}  // namespace leash::inline v0::http::detail
