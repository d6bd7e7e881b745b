// bench_http_parse: parse a typical keep-alive response (nginx-like head of
// about 250 bytes, 128-byte body) with one reused leash::http::response_parser.
//
//   whole   the response arrives in one read (the common case on loopback)
//   split   the same bytes arrive in 16-byte reads (heads split across reads)
//
// Flags: -iters (1000000), -runs (5).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <leash/http/response_parser.hpp>
#include <span>
#include <string>
#include <vector>

#include "bench_util.hpp"

namespace {

const std::string response =
    "HTTP/1.1 200 OK\r\n"
    "Server: nginx/1.22.1\r\n"
    "Date: Wed, 25 Nov 2026 21:00:00 GMT\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Length: 128\r\n"
    "Last-Modified: Wed, 25 Nov 2026 20:00:00 GMT\r\n"
    "Connection: keep-alive\r\n"
    "ETag: \"6565a0f0-80\"\r\n"
    "Accept-Ranges: bytes\r\n"
    "\r\n" +
    std::string(128, 'x');

// Parses one response fed in pieces of `piece` bytes; returns the body size.
std::size_t parse_one(leash::http::response_parser& p, std::size_t piece) {
  p.reset("GET");
  std::size_t body = 0;
  std::size_t offset = 0;
  while (!p.complete()) {
    const std::size_t n = std::min(piece, response.size() - offset);
    std::span<const char> in(response.data() + offset, n);
    offset += n;
    while (!in.empty() && !p.complete()) {
      const auto step = p.feed(in);
      in = in.subspan(step.consumed);
      body += step.body.size();
    }
  }
  if (!p.keep_alive()) std::abort();
  return body;
}

void run(const char* mode, std::size_t piece, long iters, long runs) {
  leash::http::response_parser p;
  std::vector<double> ns, cpu_ns;
  std::size_t sink = 0;
  for (long r = 0; r < runs + 1; ++r) {
    const double cpu0 = bench::cpu_seconds();
    const double s = bench::seconds([&] {
      for (long i = 0; i < iters; ++i)
        sink += parse_one(p, piece);
    });
    const double cpu = bench::cpu_seconds() - cpu0;
    if (r > 0) {  // the first run warms up
      ns.push_back(s * 1e9 / static_cast<double>(iters));
      cpu_ns.push_back(cpu * 1e9 / static_cast<double>(iters));
    }
  }
  if (sink != static_cast<std::size_t>(iters) * static_cast<std::size_t>(runs + 1) * 128) {
    std::abort();
  }
  const double per = bench::median(ns);
  std::printf(
      "BENCH http_parse leash mode=%s ns_per_response=%.1f mb_per_s=%.0f cpu_ns_per_response=%.1f "
      "bytes=%zu runs=%ld\n",
      mode, per, static_cast<double>(response.size()) / per * 1e3, bench::median(cpu_ns),
      response.size(), runs);
}

}  // namespace

int main(int argc, char** argv) {
  const long iters = bench::flag(argc, argv, "-iters", 1'000'000);
  const long runs = bench::flag(argc, argv, "-runs", 5);
  run("whole", response.size(), iters, runs);
  run("split16", 16, iters / 4, runs);
}
