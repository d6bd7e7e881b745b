// Fan out to three backends with a deadline; one of them hangs.
#include <cstdio>
#include <leash.hpp>
#include <string>

using namespace std::chrono_literals;

std::string query(const char* backend, std::chrono::milliseconds latency) {
  leash::this_task::sleep_for(latency);  // stands in for a network call; cancellable
  return std::string(backend) + " ok";
}

int main() {
  leash::task<std::string> a, b, c;
  try {
    leash::run_nursery({.timeout = 200ms, .name = "fan-out"}, [&](leash::nursery& n) {
      a = n.spawn("a", [] { return query("a", 20ms); });
      b = n.spawn("b", [] { return query("b", 50ms); });
      c = n.spawn("c", [] { return query("c", 1h); });  // hangs
    });  // joins all three: nothing outlives this line
  } catch (const leash::deadline_exceeded& e) {
    std::printf("%s\n", e.what());  // c was cancelled at 200 ms
  }
  std::printf("%s, %s\n", a.get().c_str(), b.get().c_str());  // finished results stay readable
}
