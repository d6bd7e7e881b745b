// libFuzzer target for the server's attack surface: the request-head parser
// (leash/http/detail/request_parser.hpp) and the request-body decoder (the
// response parser entered through reset_to_body, as detail/request_body.hpp
// uses it).
//
// Each input is a byte stream from a "client", read as the server reads it:
// a head up to the first empty line (CRLF or bare LF, as the server looks for
// both), its body by the framing the head declared, then the next request
// from the bytes left, up to a few pipelined requests. A request that parses
// must have a framing no other reading could disagree with (checked below);
// its body must decode the same whole, cut at a point derived from the data
// and (when short) byte by byte. No input may crash, leak or hit undefined
// behaviour (built with -fsanitize=fuzzer,address,undefined). A hash of the
// input also picks tiny limits and whether the connection ends after the bytes.
//
//   build-fuzz/tests/http_request_fuzz -max_total_time=30 CORPUS_COPY_DIR
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <leash/http/detail/request_parser.hpp>
#include <leash/http/response_parser.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace http = leash::http;
namespace detail = leash::http::detail;

// Pipelined requests read from one input at most: enough to reach a request
// smuggled behind another, few enough to keep each run short.
constexpr int max_requests = 4;

std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (char c : s)
    h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

[[noreturn]] void fail(const char* what, std::string_view detail_text = {}) {
  std::fprintf(stderr, "http_request_fuzz: %s %.*s\n", what, static_cast<int>(detail_text.size()),
               detail_text.data());
  std::abort();
}

// Everything observable about one body decoding.
struct body_outcome {
  std::string error;
  std::string body;
  std::size_t consumed = 0;
  bool complete = false;
  friend bool operator==(const body_outcome&, const body_outcome&) = default;
};

// Decodes a body framed as `framing` from `input` cut at the ascending
// offsets `cuts`; `eof`: the connection ends after the input.
body_outcome decode_body(std::string_view input, http::body_framing framing, std::uint64_t length,
                         http::parser_limits limits, std::vector<std::size_t> cuts, bool eof) {
  http::response_parser p(limits);
  p.reset_to_body(framing, length);
  body_outcome o;
  std::size_t offset = 0;
  cuts.push_back(input.size());
  try {
    for (std::size_t end : cuts) {
      if (end < offset || end > input.size()) continue;
      std::span<const char> piece(input.data() + offset, end - offset);
      while (!p.complete()) {
        const http::parse_step step = p.feed(piece);
        o.consumed += step.consumed;
        piece = piece.subspan(step.consumed);
        if (step.event == http::parse_event::body)
          o.body.append(step.body.data(), step.body.size());
        if (step.event == http::parse_event::need_more) {
          if (!piece.empty()) fail("need_more left input unconsumed");
          break;
        }
      }
      offset = end;
      if (p.complete()) break;
    }
    if (eof && !p.complete()) p.finish_eof();
  } catch (const http::protocol_error& e) {
    o.error = http::to_string(e.reason());
  } catch (const http::limit_exceeded& e) {
    o.error = http::to_string(e.which());
  }
  if (!o.error.empty()) o.consumed = 0;
  o.complete = p.complete();
  return o;
}

// Where the server's read_head() sees the head end, or npos.
std::size_t head_end(std::string_view buf) {
  const std::size_t crlf = buf.find("\n\r\n");
  const std::size_t lf = buf.find("\n\n");
  return std::min(crlf == buf.npos ? buf.npos : crlf + 3, lf == buf.npos ? buf.npos : lf + 2);
}

// What a request that parsed must satisfy: one reading of its framing.
void check_parsed(std::string_view head, const detail::parsed_request& r) {
  for (std::size_t i = 0; i < head.size(); ++i) {
    if (head[i] == '\n' && (i == 0 || head[i - 1] != '\r')) fail("bare LF accepted", head);
    if (head[i] == '\r' && (i + 1 == head.size() || head[i + 1] != '\n')) {
      fail("bare CR accepted", head);
    }
  }
  const std::size_t hosts = r.headers.count("host");
  const std::size_t te = r.headers.count("transfer-encoding");
  const bool cl = r.headers.contains("content-length");
  if (hosts > 1) fail("two Host fields accepted", head);
  if (r.version.minor != 0 && hosts != 1) fail("HTTP/1.1 without Host accepted", head);
  if (auto host = r.headers.get("host"); host && !detail::valid_host(*host)) {
    fail("invalid Host accepted", head);
  }
  if (r.version.minor == 0 && te != 0) fail("Transfer-Encoding on HTTP/1.0 accepted", head);
  if (te > 1 || (te == 1 && !detail::iequals(*r.headers.get("transfer-encoding"), "chunked"))) {
    fail("a Transfer-Encoding other than one chunked accepted", head);
  }
  if (r.chunked != (te == 1)) fail("chunked disagrees with Transfer-Encoding", head);
  if (r.chunked && cl) fail("Content-Length with Transfer-Encoding accepted", head);
  if (!cl && !r.chunked && r.content_length != 0) fail("a length without Content-Length", head);
  if (auto t = detail::split_absolute_form(r.target)) {
    if (t->authority.empty() || !detail::valid_host(t->authority)) {
      fail("absolute-form with a bad authority accepted", head);
    }
    if (t->origin.empty() || t->origin.front() != '/') fail("origin-form not rooted", head);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::uint64_t h = fnv1a(input);
  const bool eof = (h & 1) == 0;
  std::size_t max_fields = 100;
  http::parser_limits limits;
  if ((h & 6) == 0) {  // one input in four runs with tiny limits
    max_fields = (h >> 8) % 4;
    limits.max_header_bytes = 1 + (h >> 16) % 200;
    limits.max_header_fields = (h >> 24) % 4;
  }
  for (int i = 0; i < max_requests; ++i) {
    const std::size_t end = head_end(input);
    if (end == std::string_view::npos) return 0;
    const std::string_view head = input.substr(0, end);
    detail::parsed_request r;
    try {
      detail::parse_request_head(head, max_fields, r);
    } catch (const http::protocol_error&) {
      return 0;  // 400 and close: nothing after it is read
    } catch (const http::limit_exceeded&) {
      return 0;  // 431 and close
    }
    check_parsed(head, r);
    const std::string_view rest = input.substr(end);
    const auto framing =
        r.chunked ? http::body_framing::chunked : http::body_framing::content_length;
    const body_outcome whole = decode_body(rest, framing, r.content_length, limits, {}, eof);
    const std::size_t cut = rest.empty() ? 0 : (h >> 32) % (rest.size() + 1);
    if (!(decode_body(rest, framing, r.content_length, limits, {cut}, eof) == whole)) {
      fail("body decoded whole and split at one point differ", head);
    }
    if (rest.size() <= 512) {
      std::vector<std::size_t> cuts;
      for (std::size_t c = 1; c < rest.size(); ++c)
        cuts.push_back(c);
      if (!(decode_body(rest, framing, r.content_length, limits, cuts, eof) == whole)) {
        fail("body decoded whole and byte by byte differ", head);
      }
    }
    if (!whole.error.empty() || !whole.complete) return 0;
    if (whole.consumed > rest.size()) fail("consumed more than the input", head);
    if (!r.chunked && whole.body.size() != r.content_length) {
      fail("a Content-Length body of another length", head);
    }
    if (!r.keep_alive) return 0;  // the server closes: later bytes are never a request
    input = rest.substr(whole.consumed);
  }
  return 0;
}
