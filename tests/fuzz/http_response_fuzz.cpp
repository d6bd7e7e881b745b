// libFuzzer target for leash/http/response_parser.hpp.
//
// Each input is a byte stream from a "server". It is parsed whole, cut at a
// point derived from the data, cut at three such points and (when short) byte
// by byte; every cutting must give the same outcome, and no input may crash,
// leak or hit undefined behaviour (built with -fsanitize=fuzzer,address,undefined).
// A hash of the input also picks the request method (HEAD or GET), whether
// the connection ends after the bytes, and tiny limits, so those paths are fuzzed too.
//
//   build-fuzz/tests/http_response_fuzz -max_total_time=60 CORPUS_COPY_DIR
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "support/http_collect.hpp"

namespace {

std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (char c : s)
    h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

void require(bool ok, const char* what, const http_test::outcome& a, const http_test::outcome& b) {
  if (ok) return;
  std::fprintf(stderr, "http_response_fuzz: %s\n  a: %s\n  b: %s\n", what,
               http_test::describe(a).c_str(), http_test::describe(b).c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::uint64_t h = fnv1a(input);
  const std::string_view method = (h & 1) != 0 ? "HEAD" : "GET";
  const bool eof = (h & 2) == 0;
  leash::http::parser_limits limits;
  if ((h & 12) == 0) {  // one input in four runs with tiny limits
    limits.max_header_bytes = 1 + (h >> 8) % 200;
    limits.max_header_fields = (h >> 16) % 4;
    limits.max_interim_responses = (h >> 24) % 3;
  }

  const auto whole = http_test::parse_pieces(input, {}, method, eof, limits);
  const std::size_t cut = size == 0 ? 0 : (h >> 32) % (size + 1);
  const auto split = http_test::parse_pieces(input, {cut}, method, eof, limits);
  require(whole == split, "whole and split at one point differ", whole, split);

  std::vector<std::size_t> cuts = {cut / 3, cut / 2, cut};
  const auto three = http_test::parse_pieces(input, cuts, method, eof, limits);
  require(whole == three, "whole and split at three points differ", whole, three);

  if (size <= 512) {
    const auto bytewise = http_test::parse_bytewise(input, method, eof, limits);
    require(whole == bytewise, "whole and byte-by-byte differ", whole, bytewise);
  }

  // Invariants of a successful parse.
  if (whole.error.empty() && whole.complete) {
    require(whole.consumed <= size, "consumed more than the input", whole, whole);
    require(whole.head && whole.status >= 200 && whole.status <= 599, "complete without a head",
            whole, whole);
    require(whole.framing != leash::http::body_framing::until_close || !whole.keep_alive,
            "close-delimited body marked keep-alive", whole, whole);
    require(whole.framing != leash::http::body_framing::none || whole.body.empty(),
            "body without framing", whole, whole);
  }
  return 0;
}
