// Fan out to three backends with a deadline; one of them hangs.
#include <chrono>
#include <cstdio>
#include <leash.hpp>
#include <string>

using namespace std::chrono_literals;

std::string query(const char* backend, std::chrono::milliseconds latency) {
  leash::this_task::sleep_for(latency);  // stands in for a network call; cancellable
  return std::string(backend) + " ok";
}

int main() {
  leash::nursery n({.timeout = 200ms});
  auto a = n.spawn("a", [] { return query("a", 20ms); });
  auto b = n.spawn("b", [] { return query("b", 50ms); });
  auto c = n.spawn("c", [] { return query("c", 1h); });  // hangs
  try {
    n.wait();
  } catch (const leash::deadline_exceeded& e) {
    std::printf("%s\n", e.what());
  }
  std::printf("%s, %s\n", a.get().c_str(), b.get().c_str());
}
