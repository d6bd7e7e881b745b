// Go's test/chan/powser1.go, ported: power series with rational coefficients,
// computed by networks of tasks connected by channels (Doug McIlroy, "Squinting
// at Power Series", https://swtch.com/~rsc/thread/squint.pdf).
//
// A power series is a demand channel: a consumer sends a request on `req`, then
// receives the next coefficient on `dat` (both unbuffered, as in Go). Every
// operator (add, mul, integ, exp, ...) starts a task that serves its output
// series by demanding terms of its inputs; mul, subst and recip build more of
// the network as terms are demanded, and split copies one series to two
// consumers reading at different rates; split and get2 wait with select.
//
// The leash difference. Go's powser1 leaks every goroutine it starts: when
// main has read what it checks, they stay blocked on channels nobody will
// serve, and the process just exits. Here every operator task belongs to the
// test's nursery. When the test has read its coefficients it cancels the
// nursery: each blocked send, recv and select ends with cancelled, and
// run_nursery joins them all. Without the cancel, run_nursery would wait for
// them forever and the ctest timeout would fail the test; and the runner wraps
// every test in leash::leak_check, so a task left over would fail it too.
//
// Departures from powser1.go: a request carries 0 (Go's is a global sequence
// number bumped by every goroutine without synchronisation, a data race); each
// split generation passes the output pair to the next by value (Go's share one
// array that the newest swaps); integ and monsubst send one end mark, not a
// second one nobody asked for; Go's add and sub checks read 0 terms (count 0),
// these read 10; revert is new, for the tan check powser1 leaves commented out.
#include <doctest/doctest.h>

#include <array>
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

namespace {

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
rat get(const ps& in) {
  in->req.send(0);
  return in->dat.recv().value();
}

// Serves one demand on `out` with `r`.
void put(const rat& r, const ps& out) {
  out->req.recv();
  out->dat.send(r);
}

// Serves every further demand on `out` from `in`. Returns only by cancellation.
void copy(const ps& in, const ps& out) {
  for (;;) {
    out->req.recv();
    out->dat.send(get(in));
  }
}

// One coefficient from each of two series, demanded and received in whatever
// order the producers are ready: Go's getn, a select whose finished cases are
// disabled (Go's nil channels). `u` and `v` may be the same series.
std::array<rat, 2> get2(const ps& u, const ps& v) {
  std::array<rat, 2> out;
  bool asked[2] = {false, false};
  bool got[2] = {false, false};
  auto ask = [&](int i) { return [&asked, i] { asked[i] = true; }; };
  auto take = [&](int i) {
    return [&out, &got, i](std::optional<rat> r) {
      out[i] = r.value();
      got[i] = true;
    };
  };
  for (int n = 0; n < 4; ++n) {
    leash::select(leash::on_send(u->req, 0, ask(0)).when(!asked[0]),
                  leash::on_send(v->req, 0, ask(1)).when(!asked[1]),
                  leash::on_recv(u->dat, take(0)).when(asked[0] && !got[0]),
                  leash::on_recv(v->dat, take(1)).when(asked[1] && !got[1]));
  }
  return out;
}

// The operators. Each returns its output series at once and serves it from a
// task in the nursery; tasks copy the network (a nursery pointer), and the
// nursery outlives them all.
class network {
 public:
  explicit network(leash::nursery& n) : n_(&n) {}

  // c, c, c, ...
  ps rep(rat c) const {
    ps z = mkps();
    go("rep", [z, c] {
      for (;;)
        put(c, z);
    });
    return z;
  }

  // c x^n, a finite series.
  ps mon(rat c, int n) const {
    ps z = mkps();
    go("mon", [z, c, n] {
      if (c.num != 0) {
        for (int i = 0; i < n; ++i)
          put(zero, z);
        put(c, z);
      }
      put(finis, z);
    });
    return z;
  }

  // split reads one series and copies it onto two, which may be read at
  // different rates. A generation is started at the first demand for a term
  // and ends once that term has gone to both outputs. The newest generation
  // serves demands on the output that is ahead, always renamed out0; the
  // oldest serves out1. All generations but the newest hold a term already
  // sent on out0; when one has sent it on out1 too, it signals the next newer
  // generation (its `wait`) to start serving out1.
  void split_into(const ps& in, const ps2& out) const {
    auto release = std::make_shared<leash::channel<int>>();
    go("split", [=, *this] { dosplit(in, out[0], out[1], release); });
    release->send(0);
  }
  ps2 split(const ps& u) const {
    ps2 uu = mkps2();
    go("split", [=, *this] { split_into(u, uu); });
    return uu;
  }

  ps add(const ps& u, const ps& v) const {
    ps z = mkps();
    go("add", [=] {
      for (;;) {
        z->req.recv();
        const auto [a, b] = get2(u, v);
        switch (is_end(a) + 2 * is_end(b)) {
          case 0:
            z->dat.send(a + b);
            break;
          case 1:
            z->dat.send(b);
            copy(v, z);
            break;
          case 2:
            z->dat.send(a);
            copy(u, z);
            break;
          case 3:
            z->dat.send(finis);
            break;
        }
      }
    });
    return z;
  }

  // c U
  ps cmul(rat c, const ps& u) const {
    ps z = mkps();
    go("cmul", [=] {
      for (;;) {
        z->req.recv();
        const rat a = get(u);
        if (is_end(a)) break;
        z->dat.send(c * a);
      }
      z->dat.send(finis);
    });
    return z;
  }

  ps sub(const ps& u, const ps& v) const { return add(u, cmul(neg(one), v)); }

  // c + x U
  ps shift(rat c, const ps& u) const {
    ps z = mkps();
    go("shift", [=] {
      put(c, z);
      copy(u, z);
    });
    return z;
  }

  // Let U = u + x UU and V = v + x VV; then UV = uv + x (u VV + v UU) + x^2 UU VV.
  ps mul(const ps& u, const ps& v) const {
    ps z = mkps();
    go("mul", [=, *this] {
      z->req.recv();
      const auto [a, b] = get2(u, v);
      if (is_end(a) || is_end(b)) {
        z->dat.send(finis);
        return;
      }
      z->dat.send(a * b);
      const ps2 uu = split(u);
      const ps2 vv = split(v);
      const ps w = add(cmul(a, vv[0]), cmul(b, uu[0]));
      z->req.recv();
      z->dat.send(get(w));
      copy(add(w, mul(uu[1], vv[1])), z);
    });
    return z;
  }

  // dU/dx
  ps diff(const ps& u) const {
    ps z = mkps();
    go("diff", [=] {
      z->req.recv();
      if (!is_end(get(u))) {
        for (std::int64_t i = 1;; ++i) {
          const rat a = get(u);
          if (is_end(a)) break;
          z->dat.send(make_rat(i) * a);
          z->req.recv();
        }
      }
      z->dat.send(finis);
    });
    return z;
  }

  // c + the integral of U from 0
  ps integ(rat c, const ps& u) const {
    ps z = mkps();
    go("integ", [=] {
      put(c, z);
      for (std::int64_t i = 1;; ++i) {
        z->req.recv();
        const rat a = get(u);
        if (is_end(a)) break;
        z->dat.send(make_rat(1, i) * a);
      }
      z->dat.send(finis);
    });
    return z;
  }

  // 1/U. Let U = u + x UU and Z = z + x ZZ with UZ = 1: z = 1/u and
  // ZZ = -UU (z + x ZZ) / u, a series defined by itself (split feeds it back).
  ps recip(const ps& u) const {
    ps z = mkps();
    go("recip", [=, *this] {
      const ps2 zz = mkps2();
      z->req.recv();
      const rat r = inv(get(u));
      z->dat.send(r);
      split_into(mul(cmul(neg(r), u), shift(r, zz[0])), zz);
      copy(zz[1], z);
    });
    return z;
  }

  // exp(U) for U with constant term 0 (which is ignored): Z' = Z U', Z(0) = 1.
  ps exp(const ps& u) const {
    const ps2 zz = mkps2();
    split_into(integ(one, mul(zz[0], diff(u))), zz);
    return zz[1];
  }

  // U(V) for V with constant term 0 (which is ignored). Let U = u + x UU and
  // V = x VV; then U(V) = u + x VV UU(V).
  ps subst(const ps& u, const ps& v) const {
    ps z = mkps();
    go("subst", [=, *this] {
      const ps2 vv = split(v);
      z->req.recv();
      const rat a = get(u);
      z->dat.send(a);
      if (is_end(a)) return;
      if (is_end(get(vv[0]))) {
        put(finis, z);
      } else {
        copy(mul(vv[0], subst(u, vv[1])), z);
      }
    });
    return z;
  }

  // U(c x^n): each coefficient u_i times c^i, followed by n-1 zeros.
  ps monsubst(const ps& u, rat c0, int n) const {
    ps z = mkps();
    go("monsubst", [=] {
      rat c = one;
      for (;;) {
        z->req.recv();
        const rat a = get(u);
        if (is_end(a)) break;
        z->dat.send(a * c);
        c = c * c0;
        for (int i = 1; i < n; ++i) {
          z->req.recv();
          z->dat.send(zero);
        }
      }
      z->dat.send(finis);
    });
    return z;
  }

  // Not in powser1.go. The reversion R of U = x U1 (U(R(x)) = x, U1(0) != 0):
  // R = x / U1(R), a series defined by itself as in recip and exp.
  ps revert(const ps& u) const {
    const ps2 rr = mkps2();
    split_into(shift(zero, recip(subst(drop_first(u), rr[0]))), rr);
    return rr[1];
  }

 private:
  template <class F>
  void go(const char* name, F f) const {
    n_->spawn(name, std::move(f));
  }

  // Go's dosplit: one generation. `wait` is the signal from the next older
  // generation that it is done; `release` is this one's to the next newer.
  void dosplit(const ps& in, ps out0, ps out1,
               const std::shared_ptr<leash::channel<int>>& wait) const {
    bool both = false;  // the older generations are done: serve either output
    if (leash::select(leash::on_recv(out0->req), leash::on_recv(*wait)) == 1) {
      both = true;
      if (leash::select(leash::on_recv(out0->req), leash::on_recv(out1->req)) == 1) {
        std::swap(out0, out1);
      }
    }
    in->req.send(0);
    auto release = std::make_shared<leash::channel<int>>();
    go("split", [=, *this] { dosplit(in, out0, out1, release); });
    const rat r = in->dat.recv().value();
    out0->dat.send(r);
    if (!both) wait->recv();
    out1->req.recv();
    out1->dat.send(r);
    release->send(0);
  }

  // U without its constant term: (U - u_0) / x.
  ps drop_first(const ps& u) const {
    ps z = mkps();
    go("drop_first", [=] {
      z->req.recv();
      get(u);
      z->dat.send(get(u));
      copy(u, z);
    });
    return z;
  }

  leash::nursery* n_;
};

// Reads want.size() coefficients of `u` and checks each.
void check_terms(const ps& u, const std::vector<rat>& want, const std::string& what) {
  for (std::size_t i = 0; i < want.size(); ++i) {
    const rat got = get(u);
    CHECK_MESSAGE(got == want[i], what << ": coefficient " << i);
  }
}

// Reads `count` coefficients of `u` and checks each is `c` (Go's check).
void check_each(const ps& u, rat c, int count, const std::string& what) {
  check_terms(u, std::vector<rat>(static_cast<std::size_t>(count), c), what);
}

constexpr int N = 10;  // terms checked per series, as in Go

}  // namespace

TEST_CASE(
    "power series networks pass powser1's checks: ones add diff integ cmul sub mul exp atan") {
  std::size_t blocked_at_cancel = 0;
  leash::run_nursery([&](leash::nursery& n) {
    const network net(n);
    // Go's globals: every check below reads from these two, in any order.
    const ps ones = net.rep(one);
    const ps twos = net.rep(make_rat(2));

    check_each(ones, one, 5, "ones");
    check_each(net.add(ones, ones), make_rat(2), N, "add ones ones");
    check_each(net.add(ones, twos), make_rat(3), N, "add ones twos");

    std::vector<rat> a(N);
    for (int i = 0; i < N; ++i)
      a[i] = make_rat(i + 1);
    check_terms(net.diff(ones), a, "diff");  // 1 2 3 4 5

    a[0] = zero;  // the integration constant
    for (int i = 1; i < N; ++i)
      a[i] = make_rat(1, i);
    check_terms(net.integ(zero, ones), a, "integ");  // 0 1 1/2 1/3 1/4

    check_each(net.cmul(neg(one), twos), make_rat(-2), N, "cmul");
    check_each(net.sub(ones, twos), make_rat(-1), N, "sub ones twos");

    for (int i = 0; i < N; ++i)
      a[i] = make_rat(i + 1);
    check_terms(net.mul(ones, ones), a, "mul");  // 1/(1-x)^2 = 1 2 3 4 5

    // exp(x/(1-x))
    check_terms(net.exp(ones),
                {make_rat(1), make_rat(1), make_rat(3, 2), make_rat(13, 6), make_rat(73, 24),
                 make_rat(167, 40), make_rat(4051, 720), make_rat(37633, 5040),
                 make_rat(43817, 4480), make_rat(4596553, 362880)},
                "exp");

    // atan(x), the integral of 1/(1+x^2)
    for (int i = 0, c = 1; i < N; ++i) {
      if (i % 2 == 0) {
        a[i] = zero;
      } else {
        a[i] = make_rat(c, i);
        c = -c;
      }
    }
    check_terms(net.integ(zero, net.monsubst(ones, neg(one), 2)), a, "atan");  // 0 1 0 -1/3 0

    // In Go, every goroutine started above is leaked now. Here they are still
    // running, blocked in send, recv or select, until the nursery is cancelled.
    blocked_at_cancel = n.running();
    n.cancel();
  });
  CHECK(blocked_at_cancel > 50);
  CHECK(leash::live_tasks().empty());  // and the runner's leak_check agrees
}

TEST_CASE("reverting atan gives tan (the check powser1 leaves commented out)") {
  leash::run_nursery([&](leash::nursery& n) {
    const network net(n);
    const ps atan = net.integ(zero, net.monsubst(net.rep(one), neg(one), 2));
    check_terms(net.revert(atan),
                {zero, make_rat(1), zero, make_rat(1, 3), zero, make_rat(2, 15), zero,
                 make_rat(17, 315), zero, make_rat(62, 2835)},
                "tan");
    n.cancel();
  });
}

TEST_CASE("sin and cos as each other's integrals, read at different rates through split") {
  leash::run_nursery([&](leash::nursery& n) {
    const network net(n);
    // sin = integral of cos; cos = 1 - integral of sin: two series defined by
    // each other, each split so that it feeds the other and the test.
    const ps2 sine = mkps2();
    const ps2 cosine = mkps2();
    net.split_into(net.integ(zero, cosine[0]), sine);
    net.split_into(net.integ(one, net.cmul(neg(one), sine[0])), cosine);
    // All of sin first: split holds cos's terms for the test meanwhile.
    check_terms(sine[1],
                {zero, make_rat(1), zero, make_rat(-1, 6), zero, make_rat(1, 120), zero,
                 make_rat(-1, 5040), zero, make_rat(1, 362880)},
                "sin");
    check_terms(cosine[1],
                {make_rat(1), zero, make_rat(-1, 2), zero, make_rat(1, 24), zero, make_rat(-1, 720),
                 zero, make_rat(1, 40320), zero},
                "cos");
    n.cancel();
  });
}

TEST_CASE("recip of the finite series 1-x is 1 1 1 ..., and times 1-x gives 1 again") {
  leash::run_nursery([&](leash::nursery& n) {
    const network net(n);
    const ps one_minus_x = net.sub(net.mon(one, 0), net.mon(one, 1));  // finite: 1 -1 end
    const ps2 geometric = net.split(net.recip(one_minus_x));
    check_each(geometric[0], one, N, "recip(1-x)");
    const ps product = net.mul(geometric[1], net.sub(net.mon(one, 0), net.mon(one, 1)));
    check_terms(product, {one, zero, zero, zero, zero, zero, zero, zero, zero, zero},
                "recip(1-x) (1-x)");
    check_terms(net.recip(net.rep(one)), {one, neg(one), zero, zero, zero, zero}, "recip(ones)");
    n.cancel();
  });
}
