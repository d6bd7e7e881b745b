// tests/support/http_collect.hpp: run the response parser over bytes cut into
// pieces and collect everything it reported, so that tests and the fuzzer can
// compare the outcomes of different cuttings of the same bytes.
#pragma once

#include <cstddef>
#include <leash/http/response_parser.hpp>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace http_test {

// Everything observable about one parse. Two cuttings of the same input must
// produce equal outcomes.
struct outcome {
  std::string error;  // "" or "protocol_error: <reason>" / "limit_exceeded: <limit>"
  bool head = false;  // the head event fired (exactly once)
  bool complete = false;
  int status = 0;
  leash::http::version version;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<std::pair<std::string, std::string>> trailers;
  std::string body;
  bool keep_alive = false;
  leash::http::body_framing framing = leash::http::body_framing::none;
  std::size_t interim = 0;
  std::size_t consumed = 0;  // bytes the parser used; the rest follows the message
  bool started = false;
  friend bool operator==(const outcome&, const outcome&) = default;
};

inline std::string describe(const outcome& o) {
  std::string s = "error=[" + o.error + "] head=" + std::to_string(o.head) +
                  " complete=" + std::to_string(o.complete) +
                  " status=" + std::to_string(o.status) + " body=" + std::to_string(o.body.size()) +
                  "B consumed=" + std::to_string(o.consumed) +
                  " keep_alive=" + std::to_string(o.keep_alive);
  return s;
}

inline std::vector<std::pair<std::string, std::string>> copy(const leash::http::fields& f) {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto [name, value] : f)
    out.emplace_back(name, value);
  return out;
}

// Feeds `input` cut at the ascending offsets `cuts`, then (when `eof`) tells
// the parser the connection closed. Stops feeding once the response is complete.
inline outcome parse_pieces(std::string_view input, const std::vector<std::size_t>& cuts,
                            std::string_view method = "GET", bool eof = true,
                            leash::http::parser_limits limits = {}) {
  using leash::http::parse_event;
  leash::http::response_parser p(limits);
  p.reset(method);
  outcome o;
  std::size_t offset = 0;
  int heads = 0;
  try {
    std::vector<std::size_t> ends = cuts;
    ends.push_back(input.size());
    for (std::size_t end : ends) {
      if (end < offset || end > input.size()) continue;
      std::span<const char> piece(input.data() + offset, end - offset);
      while (!p.complete()) {
        const auto step = p.feed(piece);
        o.consumed += step.consumed;
        piece = piece.subspan(step.consumed);
        if (step.event == parse_event::head) ++heads;
        if (step.event == parse_event::body) o.body.append(step.body.data(), step.body.size());
        if (step.event == parse_event::need_more) {
          if (!piece.empty()) throw std::logic_error("need_more left input unconsumed");
          break;
        }
      }
      offset = end;
      if (p.complete()) break;
    }
    if (eof && !p.complete()) p.finish_eof();
  } catch (const leash::http::protocol_error& e) {
    o.error = std::string("protocol_error: ") + leash::http::to_string(e.reason());
  } catch (const leash::http::limit_exceeded& e) {
    o.error = std::string("limit_exceeded: ") + leash::http::to_string(e.which());
  }
  if (!o.error.empty()) o.consumed = 0;  // a failed feed() reports no count
  if (heads > 1) o.error += " [head event fired more than once]";
  o.head = heads == 1;
  o.complete = p.complete();
  o.started = p.started();
  if (p.head_complete()) {
    const auto& h = p.head();
    o.status = h.status;
    o.version = h.version;
    o.reason = h.reason;
    o.headers = copy(h.headers);
    o.keep_alive = p.keep_alive();
    o.framing = p.framing();
  }
  o.trailers = copy(p.trailers());
  o.interim = p.interim_responses();
  return o;
}

inline outcome parse_whole(std::string_view input, std::string_view method = "GET", bool eof = true,
                           leash::http::parser_limits limits = {}) {
  return parse_pieces(input, {}, method, eof, limits);
}

inline outcome parse_bytewise(std::string_view input, std::string_view method = "GET",
                              bool eof = true, leash::http::parser_limits limits = {}) {
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < input.size(); ++i)
    cuts.push_back(i);
  return parse_pieces(input, cuts, method, eof, limits);
}

}  // namespace http_test
