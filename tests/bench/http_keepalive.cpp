// bench_http_keepalive: keep-alive GETs of a small file from nginx on loopback
// through leash::http::transport, with 1 and 8 workers. The Go
// counterpart is go/http_keepalive.go; tests/bench/run.sh starts nginx and
// passes its address in LEASH_BENCH_NGINX=host:port.
//
// Prints "BENCH http_keepalive leash_<N>w req_per_s=... dials=..." for the
// 128-byte file and "BENCH http_keepalive_1mib ..." for the 1 MiB one (median
// of 3 runs of 1 s; dials of the median run).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <leash/http/transport.hpp>
#include <leash/nursery.hpp>
#include <string>
#include <vector>

#include "bench_util.hpp"

int main() {
  const char* peer = std::getenv("LEASH_BENCH_NGINX");
  if (peer == nullptr) {
    std::puts("SKIP http_keepalive: set LEASH_BENCH_NGINX=host:port (run.sh starts nginx)");
    return 0;
  }
  const std::string address = peer;
  const std::string host = address.substr(0, address.find(':'));
  const auto port = static_cast<std::uint16_t>(std::stoi(address.substr(address.find(':') + 1)));
  for (const char* file : {"/small.txt", "/big.bin"}) {
    const leash::http::request req{host, port, {"GET", file}, {}};
    const char* scenario = file[1] == 's' ? "http_keepalive" : "http_keepalive_1mib";
    for (int workers : {1, 8}) {
      std::vector<double> rates;
      std::vector<unsigned long long> dials;
      for (int run = 0; run < 3; ++run) {
        leash::http::transport t;
        std::atomic<long> done{0};
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        const double secs = bench::seconds([&] {
          leash::run_nursery([&](leash::nursery& n) {
            for (int w = 0; w < workers; ++w) {
              n.spawn([&] {
                while (std::chrono::steady_clock::now() < until) {
                  leash::http::response r = t.round_trip(req);
                  (void)r.body.discard();
                  done.fetch_add(1, std::memory_order_relaxed);
                }
              });
            }
          });
        });
        rates.push_back(static_cast<double>(done.load()) / secs);
        dials.push_back(t.stats().dials);
      }
      const double med = bench::median(rates);
      unsigned long long med_dials = dials[0];
      for (std::size_t i = 0; i < rates.size(); ++i)
        if (rates[i] == med) med_dials = dials[i];
      std::printf("BENCH %s leash_%dw req_per_s=%.0f dials=%llu\n", scenario, workers, med,
                  med_dials);
    }
  }
}
