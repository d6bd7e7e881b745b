// Go's test/chan/powser1.go, ported to coroutine tasks: the power series
// networks of channel_powser_test.cpp (Doug McIlroy, "Squinting at Power
// Series", https://swtch.com/~rsc/thread/squint.pdf), with every operator a
// coroutine task that waits by suspending (async_send, async_recv), and get2
// and split waiting with async_select. The test's reader is a coroutine task
// too. The checks are the thread version's, and so is the end: when the
// reader has what it checks, the test cancels the nursery; every operator
// suspended in an operation ends with cancelled, and the nursery joins them
// all (a task left over would fail the runner's leak_check).
//
// Departures from powser1.go are the thread version's (see its header); one
// more: split_into, exp and revert are coroutines, since split hands its
// first generation the go-ahead by a send (Go's `release <- 0`), which a
// coroutine awaits.
#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <leash.hpp>
#include <memory>
#include <numeric>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using leash::coro;

namespace {

// The rationals are channel_powser_test.cpp's (each test is its own program).

// A rational in lowest terms with a positive denominator. A denominator of 0
// is the end mark of a finite series (Go's finis).
struct rat {
  std::int64_t num = 0;
  std::int64_t den = 1;
  bool operator==(const rat&) const = default;
};

std::ostream& operator<<(std::ostream& os, const rat& r) {
  if (r.den == 0) return os << "end";
  if (r.den == 1) return os << r.num;
  return os << r.num << '/' << r.den;
}

constexpr rat zero{0, 1};
constexpr rat one{1, 1};
constexpr rat finis{1, 0};

bool is_end(const rat& r) {
  return r.den == 0;
}

// Overflow would make a wrong coefficient look like a bug in the network:
// throw instead (a task's exception fails the nursery and the test).
std::int64_t times(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) throw std::overflow_error("powser: int64 overflow");
  return r;
}
std::int64_t plus(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) throw std::overflow_error("powser: int64 overflow");
  return r;
}

// Go's i2tor: num/den in lowest terms, sign in the numerator. den != 0.
rat make_rat(std::int64_t num, std::int64_t den = 1) {
  std::int64_t g = std::gcd(num, den);
  if (den < 0) g = -g;
  return {num / g, den / g};
}

rat operator+(const rat& u, const rat& v) {
  const std::int64_t g = std::gcd(u.den, v.den);
  return make_rat(plus(times(u.num, v.den / g), times(v.num, u.den / g)), times(u.den, v.den / g));
}

rat operator*(const rat& u, const rat& v) {
  if (is_end(u) || is_end(v)) return finis;
  const std::int64_t g1 = std::gcd(u.num, v.den);
  const std::int64_t g2 = std::gcd(u.den, v.num);
  return {times(u.num / g1, v.num / g2), times(u.den / g2, v.den / g1)};
}

rat neg(const rat& u) {
  return {-u.num, u.den};
}

rat inv(const rat& u) {
  if (u.num == 0) throw std::domain_error("powser: zero divide in inv");
  return make_rat(u.den, u.num);
}

// A power series: a demand channel of coefficients, constant term first.
struct dch {
  leash::channel<int> req;
  leash::channel<rat> dat;
};
using ps = std::shared_ptr<dch>;
using ps2 = std::array<ps, 2>;  // a series split in two

ps mkps() {
  return std::make_shared<dch>();
}
ps2 mkps2() {
  return {mkps(), mkps()};
}

// The next coefficient of `in`.
coro<rat> get(ps in) {
  co_await in->req.async_send(0);
  co_return (co_await in->dat.async_recv()).value();
}

// Serves one demand on `out` with `r`.
coro<void> put(rat r, ps out) {
  co_await out->req.async_recv();
  co_await out->dat.async_send(r);
}

// Serves every further demand on `out` from `in`. Ends only by cancellation.
coro<void> copy(ps in, ps out) {
  for (;;) {
    co_await out->req.async_recv();
    const rat r = co_await get(in);
    co_await out->dat.async_send(r);
  }
}

// One coefficient from each of two series, demanded and received in whatever
// order the producers are ready: Go's getn, an async_select whose finished
// cases are disabled (Go's nil channels). `u` and `v` may be the same series.
coro<std::array<rat, 2>> get2(ps u, ps v) {
  std::array<rat, 2> out;
  std::array<bool, 2> asked{false, false};
  std::array<bool, 2> got{false, false};
  auto ask = [&](std::size_t i) { return [&asked, i] { asked[i] = true; }; };
  auto take = [&](std::size_t i) {
    return [&out, &got, i](std::optional<rat> r) {
      out[i] = r.value();
      got[i] = true;
    };
  };
  for (int n = 0; n < 4; ++n) {
    co_await leash::async_select(leash::on_send(u->req, 0, ask(0)).when(!asked[0]),
                                 leash::on_send(v->req, 0, ask(1)).when(!asked[1]),
                                 leash::on_recv(u->dat, take(0)).when(asked[0] && !got[0]),
                                 leash::on_recv(v->dat, take(1)).when(asked[1] && !got[1]));
  }
  co_return out;
}

using signal = std::shared_ptr<leash::channel<int>>;

// The operators. Each returns its output series at once and serves it from a
// coroutine task in the nursery; tasks copy the network (a nursery pointer and
// a counter), and the nursery outlives them all.
class network {
 public:
  network(leash::nursery& n, std::atomic<int>& cancelled) : n_(&n), cancelled_(&cancelled) {}

  // c, c, c, ...
  ps rep(rat c) const {
    ps z = mkps();
    go("rep", [z, c]() -> coro<void> {
      for (;;)
        co_await put(c, z);
    });
    return z;
  }

  // c x^n, a finite series.
  ps mon(rat c, int n) const {
    ps z = mkps();
    go("mon", [z, c, n]() -> coro<void> {
      if (c.num != 0) {
        for (int i = 0; i < n; ++i)
          co_await put(zero, z);
        co_await put(c, z);
      }
      co_await put(finis, z);
    });
    return z;
  }

  // split reads one series and copies it onto two, which may be read at
  // different rates: generations of dosplit, as in the thread version.
  // Returns once the first generation has taken its go-ahead.
  coro<void> split_into(ps in, ps2 out) const {
    signal release = std::make_shared<leash::channel<int>>();
    go("split", [=, *this] { return dosplit(in, out[0], out[1], release); });
    co_await release->async_send(0);
  }
  ps2 split(const ps& u) const {
    ps2 uu = mkps2();
    go("split", [=, *this] { return split_into(u, uu); });
    return uu;
  }

  ps add(const ps& u, const ps& v) const {
    ps z = mkps();
    go("add", [=]() -> coro<void> {
      for (;;) {
        co_await z->req.async_recv();
        const auto [a, b] = co_await get2(u, v);
        switch (is_end(a) + 2 * is_end(b)) {
          case 0:
            co_await z->dat.async_send(a + b);
            break;
          case 1:
            co_await z->dat.async_send(b);
            co_await copy(v, z);
            break;
          case 2:
            co_await z->dat.async_send(a);
            co_await copy(u, z);
            break;
          case 3:
            co_await z->dat.async_send(finis);
            break;
        }
      }
    });
    return z;
  }

  // c U
  ps cmul(rat c, const ps& u) const {
    ps z = mkps();
    go("cmul", [=]() -> coro<void> {
      for (;;) {
        co_await z->req.async_recv();
        const rat a = co_await get(u);
        if (is_end(a)) break;
        co_await z->dat.async_send(c * a);
      }
      co_await z->dat.async_send(finis);
    });
    return z;
  }

  ps sub(const ps& u, const ps& v) const { return add(u, cmul(neg(one), v)); }

  // c + x U
  ps shift(rat c, const ps& u) const {
    ps z = mkps();
    go("shift", [=]() -> coro<void> {
      co_await put(c, z);
      co_await copy(u, z);
    });
    return z;
  }

  // Let U = u + x UU and V = v + x VV; then UV = uv + x (u VV + v UU) + x^2 UU VV.
  ps mul(const ps& u, const ps& v) const {
    ps z = mkps();
    go("mul", [=, *this]() -> coro<void> {
      co_await z->req.async_recv();
      const auto [a, b] = co_await get2(u, v);
      if (is_end(a) || is_end(b)) {
        co_await z->dat.async_send(finis);
        co_return;
      }
      co_await z->dat.async_send(a * b);
      const ps2 uu = split(u);
      const ps2 vv = split(v);
      const ps w = add(cmul(a, vv[0]), cmul(b, uu[0]));
      co_await z->req.async_recv();
      const rat w0 = co_await get(w);
      co_await z->dat.async_send(w0);
      co_await copy(add(w, mul(uu[1], vv[1])), z);
    });
    return z;
  }

  // dU/dx
  ps diff(const ps& u) const {
    ps z = mkps();
    go("diff", [=]() -> coro<void> {
      co_await z->req.async_recv();
      if (!is_end(co_await get(u))) {
        for (std::int64_t i = 1;; ++i) {
          const rat a = co_await get(u);
          if (is_end(a)) break;
          co_await z->dat.async_send(make_rat(i) * a);
          co_await z->req.async_recv();
        }
      }
      co_await z->dat.async_send(finis);
    });
    return z;
  }

  // c + the integral of U from 0
  ps integ(rat c, const ps& u) const {
    ps z = mkps();
    go("integ", [=]() -> coro<void> {
      co_await put(c, z);
      for (std::int64_t i = 1;; ++i) {
        co_await z->req.async_recv();
        const rat a = co_await get(u);
        if (is_end(a)) break;
        co_await z->dat.async_send(make_rat(1, i) * a);
      }
      co_await z->dat.async_send(finis);
    });
    return z;
  }

  // 1/U. Let U = u + x UU and Z = z + x ZZ with UZ = 1: z = 1/u and
  // ZZ = -UU (z + x ZZ) / u, a series defined by itself (split feeds it back).
  ps recip(const ps& u) const {
    ps z = mkps();
    go("recip", [=, *this]() -> coro<void> {
      const ps2 zz = mkps2();
      co_await z->req.async_recv();
      const rat r = inv(co_await get(u));
      co_await z->dat.async_send(r);
      co_await split_into(mul(cmul(neg(r), u), shift(r, zz[0])), zz);
      co_await copy(zz[1], z);
    });
    return z;
  }

  // exp(U) for U with constant term 0 (which is ignored): Z' = Z U', Z(0) = 1.
  coro<ps> exp(ps u) const {
    const ps2 zz = mkps2();
    co_await split_into(integ(one, mul(zz[0], diff(u))), zz);
    co_return zz[1];
  }

  // U(V) for V with constant term 0 (which is ignored). Let U = u + x UU and
  // V = x VV; then U(V) = u + x VV UU(V).
  ps subst(const ps& u, const ps& v) const {
    ps z = mkps();
    go("subst", [=, *this]() -> coro<void> {
      const ps2 vv = split(v);
      co_await z->req.async_recv();
      const rat a = co_await get(u);
      co_await z->dat.async_send(a);
      if (is_end(a)) co_return;
      if (is_end(co_await get(vv[0]))) {
        co_await put(finis, z);
      } else {
        co_await copy(mul(vv[0], subst(u, vv[1])), z);
      }
    });
    return z;
  }

  // U(c x^n): each coefficient u_i times c^i, followed by n-1 zeros.
  ps monsubst(const ps& u, rat c0, int n) const {
    ps z = mkps();
    go("monsubst", [=]() -> coro<void> {
      rat c = one;
      for (;;) {
        co_await z->req.async_recv();
        const rat a = co_await get(u);
        if (is_end(a)) break;
        co_await z->dat.async_send(a * c);
        c = c * c0;
        for (int i = 1; i < n; ++i) {
          co_await z->req.async_recv();
          co_await z->dat.async_send(zero);
        }
      }
      co_await z->dat.async_send(finis);
    });
    return z;
  }

  // Not in powser1.go. The reversion R of U = x U1 (U(R(x)) = x, U1(0) != 0):
  // R = x / U1(R), a series defined by itself as in recip and exp.
  coro<ps> revert(ps u) const {
    const ps2 rr = mkps2();
    co_await split_into(shift(zero, recip(subst(drop_first(u), rr[0]))), rr);
    co_return rr[1];
  }

 private:
  // Spawns the operator task f() (a callable returning coro<void>), counting
  // it in *cancelled_ if it ends with cancelled.
  template <class F>
  void go(const char* name, F f) const {
    n_->spawn(name, [f = std::move(f), cancelled = cancelled_]() -> coro<void> {
      try {
        co_await f();
      } catch (const leash::cancelled&) {
        cancelled->fetch_add(1, std::memory_order_relaxed);
        throw;
      }
    });
  }

  // Go's dosplit: one generation. `wait` is the signal from the next older
  // generation that it is done; `release` is this one's to the next newer.
  coro<void> dosplit(ps in, ps out0, ps out1, signal wait) const {
    bool both = false;  // the older generations are done: serve either output
    if (co_await leash::async_select(leash::on_recv(out0->req), leash::on_recv(*wait)) == 1) {
      both = true;
      if (co_await leash::async_select(leash::on_recv(out0->req), leash::on_recv(out1->req)) == 1) {
        std::swap(out0, out1);
      }
    }
    co_await in->req.async_send(0);
    signal release = std::make_shared<leash::channel<int>>();
    go("split", [=, *this] { return dosplit(in, out0, out1, release); });
    const rat r = (co_await in->dat.async_recv()).value();
    co_await out0->dat.async_send(r);
    if (!both) co_await wait->async_recv();
    co_await out1->req.async_recv();
    co_await out1->dat.async_send(r);
    co_await release->async_send(0);
  }

  // U without its constant term: (U - u_0) / x.
  ps drop_first(const ps& u) const {
    ps z = mkps();
    go("drop_first", [=]() -> coro<void> {
      co_await z->req.async_recv();
      co_await get(u);
      const rat u1 = co_await get(u);
      co_await z->dat.async_send(u1);
      co_await copy(u, z);
    });
    return z;
  }

  leash::nursery* n_;
  std::atomic<int>* cancelled_;
};

// Reads want.size() coefficients of `u` and checks each.
coro<void> check_terms(ps u, std::vector<rat> want, std::string what) {
  for (std::size_t i = 0; i < want.size(); ++i) {
    const rat got = co_await get(u);
    CHECK_MESSAGE(got == want[i], what << ": coefficient " << i);
  }
}

// Reads `count` coefficients of `u` and checks each is `c` (Go's check).
coro<void> check_each(ps u, rat c, int count, std::string what) {
  return check_terms(std::move(u), std::vector<rat>(static_cast<std::size_t>(count), c),
                     std::move(what));
}

constexpr int N = 10;  // terms checked per series, as in Go

// The first N coefficients of exp(x/(1-x)).
std::vector<rat> exp_of_ones() {
  return {make_rat(1),           make_rat(1),
          make_rat(3, 2),        make_rat(13, 6),
          make_rat(73, 24),      make_rat(167, 40),
          make_rat(4051, 720),   make_rat(37633, 5040),
          make_rat(43817, 4480), make_rat(4596553, 362880)};
}

// get with the blocking forms: a thread reading a series that coroutine
// tasks serve.
rat blocking_get(const ps& in) {
  in->req.send(0);
  return in->dat.recv().value();
}

// What a test reads and checks, run as a coroutine task of the network's
// nursery (the operators' tasks are its siblings).
using reader = coro<void> (*)(network);

// Runs `read` in a coroutine task beside the network it builds, then cancels
// every operator task left suspended and joins them. Returns how many ended
// with cancelled.
int run_network(reader read) {
  std::atomic<int> cancelled{0};
  std::size_t running_at_cancel = 0;
  leash::run_nursery([&](leash::nursery& n) {
    const network net(n, cancelled);
    n.spawn("reader", [net, read] { return read(net); }).get();
    // In Go, every goroutine started is leaked now. Here they are still
    // there, suspended in async_send, async_recv or async_select, until the
    // nursery is cancelled.
    running_at_cancel = n.running();
    n.cancel();
  });
  CHECK(running_at_cancel > 0);
  CHECK(leash::live_tasks().empty());  // and the runner's leak_check agrees
  return cancelled.load();
}

coro<void> powser1_checks(network net) {
  // Go's globals: every check below reads from these two, in any order.
  const ps ones = net.rep(one);
  const ps twos = net.rep(make_rat(2));

  co_await check_each(ones, one, 5, "ones");
  co_await check_each(net.add(ones, ones), make_rat(2), N, "add ones ones");
  co_await check_each(net.add(ones, twos), make_rat(3), N, "add ones twos");

  std::vector<rat> a(N);
  for (int i = 0; i < N; ++i)
    a[i] = make_rat(i + 1);
  co_await check_terms(net.diff(ones), a, "diff");  // 1 2 3 4 5

  a[0] = zero;  // the integration constant
  for (int i = 1; i < N; ++i)
    a[i] = make_rat(1, i);
  co_await check_terms(net.integ(zero, ones), a, "integ");  // 0 1 1/2 1/3 1/4

  co_await check_each(net.cmul(neg(one), twos), make_rat(-2), N, "cmul");
  co_await check_each(net.sub(ones, twos), make_rat(-1), N, "sub ones twos");

  for (int i = 0; i < N; ++i)
    a[i] = make_rat(i + 1);
  co_await check_terms(net.mul(ones, ones), a, "mul");  // 1/(1-x)^2 = 1 2 3 4 5

  // exp(x/(1-x))
  co_await check_terms(co_await net.exp(ones), exp_of_ones(), "exp");

  // atan(x), the integral of 1/(1+x^2)
  for (int i = 0, c = 1; i < N; ++i) {
    if (i % 2 == 0) {
      a[i] = zero;
    } else {
      a[i] = make_rat(c, i);
      c = -c;
    }
  }
  co_await check_terms(net.integ(zero, net.monsubst(ones, neg(one), 2)), a,
                       "atan");  // 0 1 0 -1/3 0
}

coro<void> tan_check(network net) {
  const ps atan = net.integ(zero, net.monsubst(net.rep(one), neg(one), 2));
  const std::vector<rat> tan_terms{zero, make_rat(1),       zero, make_rat(1, 3),
                                   zero, make_rat(2, 15),   zero, make_rat(17, 315),
                                   zero, make_rat(62, 2835)};
  co_await check_terms(co_await net.revert(atan), tan_terms, "tan");
}

coro<void> sin_cos_check(network net) {
  // sin = integral of cos; cos = 1 - integral of sin: two series defined by
  // each other, each split so that it feeds the other and the test.
  const ps2 sine = mkps2();
  const ps2 cosine = mkps2();
  co_await net.split_into(net.integ(zero, cosine[0]), sine);
  co_await net.split_into(net.integ(one, net.cmul(neg(one), sine[0])), cosine);
  // All of sin first: split holds cos's terms for the test meanwhile.
  const std::vector<rat> sin_terms{zero, make_rat(1),        zero, make_rat(-1, 6),
                                   zero, make_rat(1, 120),   zero, make_rat(-1, 5040),
                                   zero, make_rat(1, 362880)};
  const std::vector<rat> cos_terms{make_rat(1),        zero, make_rat(-1, 2),   zero,
                                   make_rat(1, 24),    zero, make_rat(-1, 720), zero,
                                   make_rat(1, 40320), zero};
  co_await check_terms(sine[1], sin_terms, "sin");
  co_await check_terms(cosine[1], cos_terms, "cos");
}

coro<void> recip_checks(network net) {
  const ps one_minus_x = net.sub(net.mon(one, 0), net.mon(one, 1));  // finite: 1 -1 end
  const ps2 geometric = net.split(net.recip(one_minus_x));
  co_await check_each(geometric[0], one, N, "recip(1-x)");
  const ps product = net.mul(geometric[1], net.sub(net.mon(one, 0), net.mon(one, 1)));
  std::vector<rat> one_then_zeros(N, zero);
  one_then_zeros[0] = one;
  co_await check_terms(product, one_then_zeros, "recip(1-x) (1-x)");
  const std::vector<rat> recip_ones{one, neg(one), zero, zero, zero, zero};
  co_await check_terms(net.recip(net.rep(one)), recip_ones, "recip(ones)");
}

}  // namespace

TEST_CASE(
    "coroutine power series networks pass powser1's checks: ones add diff integ cmul sub "
    "mul exp atan") {
  CHECK(run_network(powser1_checks) > 50);
}

TEST_CASE("coroutine tasks: reverting atan gives tan (the check powser1 leaves commented out)") {
  CHECK(run_network(tan_check) > 0);
}

TEST_CASE("coroutine tasks: sin and cos as each other's integrals, read at different rates") {
  CHECK(run_network(sin_cos_check) > 0);
}

TEST_CASE("coroutine tasks: recip of 1-x is 1 1 1 ..., and times 1-x gives 1 again") {
  CHECK(run_network(recip_checks) > 0);
}

TEST_CASE("a thread reads exp from a network of coroutine tasks with blocking send and recv") {
  std::atomic<int> cancelled{0};
  leash::run_nursery([&](leash::nursery& n) {
    const network net(n, cancelled);
    const ps ones = net.rep(one);
    // (The task returns void: g++ rejects a coroutine task whose value type
    // is local to this file, -Wsubobject-linkage on leash's driver frame.)
    ps e;
    n.spawn("exp", [net, ones, &e]() -> coro<void> { e = co_await net.exp(ones); }).get();
    const std::vector<rat> want = exp_of_ones();
    for (std::size_t i = 0; i < want.size(); ++i)
      CHECK_MESSAGE(blocking_get(e) == want[i], "exp: coefficient " << i);
    n.cancel();
  });
  CHECK(cancelled.load() > 0);
  CHECK(leash::live_tasks().empty());
}
