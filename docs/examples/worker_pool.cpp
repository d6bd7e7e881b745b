// A worker pool fed by a channel and closed by the producer. The workers end
// when the channel is drained; results come back on a second channel that the
// last worker closes. A limit on the nursery would cap them the same way.
#include <cstdio>
#include <leash.hpp>
#include <string>

int main() {
  leash::channel<std::string> jobs(8);
  leash::channel<std::size_t> lengths(8);
  std::size_t total = 0;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn("producer", [&] {
      for (int i = 0; i < 1000; ++i)
        jobs.send("job-" + std::to_string(i));
      jobs.close();  // the workers drain what is left, then stop
    });
    n.spawn("workers", [&] {
      leash::run_nursery([&](leash::nursery& workers) {
        for (int w = 0; w < 4; ++w) {
          workers.spawn("worker", [&] {
            for (std::string& job : jobs)
              lengths.send(job.size());
          });
        }
      });
      lengths.close();  // every worker has returned: no more results
    });
    for (std::size_t len : lengths)
      total += len;
  });
  std::printf("4 workers processed 1000 jobs, %zu bytes of names\n", total);
  return total == 6890 ? 0 : 1;
}
