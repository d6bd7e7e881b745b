// A three-stage pipeline: generate -> square -> sum. Each stage closes its
// output when its input is drained, so the end of the data flows downstream,
// and the nursery joins every stage before the result is read.
#include <cstdio>
#include <leash.hpp>

int main() {
  leash::channel<int> numbers(16), squares(16);
  long sum = 0;
  leash::run_nursery([&](leash::nursery& n) {
    n.spawn("generate", [&] {
      for (int i = 1; i <= 100; ++i)
        numbers.send(i);
      numbers.close();
    });
    n.spawn("square", [&] {
      for (int v : numbers)
        squares.send(v * v);
      squares.close();
    });
    for (int v : squares)
      sum += v;  // the body is the last stage
  });
  std::printf("sum of squares 1..100 = %ld\n", sum);
  return sum == 338350 ? 0 : 1;
}
