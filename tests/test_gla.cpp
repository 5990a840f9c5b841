// Gated linear attention: the recurrence (Impl::Ref) against a closed form and finite
// differences; the chunked CPU path (Impl::Fast) against the recurrence for every output and
// gradient, over chunk sizes that do and do not divide N, with an initial state, with strong
// and zero decay, and token by token with the state updated in place (generation).
// Outputs are written into guarded buffers prefilled with NaN, so an element left unwritten or
// a write out of bounds fails the test.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "fela/ops/gla.h"
#include "test_util.h"

using namespace fela;
using namespace fela::test;

namespace {

double get(const Tensor& t, int64_t i) {
  return t.dtype() == DType::F32 ? double(t.data<float>()[i]) : t.data<double>()[i];
}
void set(const Tensor& t, int64_t i, double x) {
  if (t.dtype() == DType::F32)
    t.data<float>()[i] = float(x);
  else
    t.data<double>()[i] = x;
}

// An output buffer with kGuard sentinel values on either side and NaN inside.
class Guarded {
 public:
  static constexpr int64_t kGuard = 16;
  static constexpr double kSentinel = 1234.5;
  Guarded() = default;
  Guarded(DType dt, Shape s) : buf_(Array::empty(dt, {s.numel() + 2 * kGuard})) {
    const int64_t n = s.numel();
    for (int64_t i = 0; i < n + 2 * kGuard; ++i)
      set(buf_, i,
          i < kGuard || i >= n + kGuard ? kSentinel : std::numeric_limits<double>::quiet_NaN());
    view_ = Tensor(static_cast<char*>(buf_.view().raw()) + kGuard * dtype_size(dt), dt, s);
  }
  operator Tensor() const { return view_; }
  const Tensor& t() const { return view_; }
  bool guards_intact() const {
    const int64_t n = view_.numel();
    for (int64_t i = 0; i < kGuard; ++i)
      if (get(buf_, i) != kSentinel || get(buf_, n + kGuard + i) != kSentinel) return false;
    return true;
  }

 private:
  Array buf_;
  Tensor view_;
};

// log sigmoid(z), as the model makes its log decay.
double log_sigmoid(double z) {
  return z > 0 ? -std::log1p(std::exp(-z)) : z - std::log1p(std::exp(z));
}

// Inputs of one problem: q, k, a [B, N, H, Dk]; v, d_o [B, N, H, Dv].
struct Problem {
  int64_t B, N, H, Dk, Dv;
  DType dt;
  Array q, k, v, a, d_o;
  Shape qs() const { return {B, N, H, Dk}; }
  Shape vs() const { return {B, N, H, Dv}; }
  Shape ss() const { return {B, H, Dk, Dv}; }
};

enum class Decay { Normal, Strong };

// Decay Normal: a = log sigmoid(1 + 2 z), from about -5 to 0. Strong: key dims i % 3 == 0 get
// a in [-80, -30], i % 3 == 1 get exactly 0 (no decay), the rest as Normal.
Problem make_problem(DType dt, int64_t B, int64_t N, int64_t H, int64_t Dk, int64_t Dv,
                     uint64_t seed, Decay decay = Decay::Normal) {
  Rng rng(seed);
  Problem p{B, N, H, Dk, Dv, dt, {}, {}, {}, {}, {}};
  p.q = random_array(dt, p.qs(), rng);
  p.k = random_array(dt, p.qs(), rng);
  p.v = random_array(dt, p.vs(), rng);
  p.d_o = random_array(dt, p.vs(), rng);
  p.a = Array::empty(dt, p.qs());
  for (int64_t x = 0; x < p.a.numel(); ++x) {
    const int64_t i = x % Dk;
    double val = log_sigmoid(1.0 + 2.0 * rng.normal());
    if (decay == Decay::Strong && i % 3 == 0) val = -30.0 - 50.0 * rng.uniform();
    if (decay == Decay::Strong && i % 3 == 1) val = 0.0;
    set(p.a, x, val);
  }
  return p;
}

struct Result {
  Guarded o, state, dq, dk, dv, da;
};

Result run(const Problem& p, ops::Impl impl, int64_t chunk, double scale,
           const Tensor& state_in = Tensor(), bool backward = true) {
  Result r{Guarded(p.dt, p.vs()), Guarded(p.dt, p.ss()), {}, {}, {}, {}};
  ops::gla_forward(r.o, r.state, p.q, p.k, p.v, p.a, state_in, scale, chunk, impl);
  if (backward) {
    r.dq = Guarded(p.dt, p.qs());
    r.dk = Guarded(p.dt, p.qs());
    r.dv = Guarded(p.dt, p.vs());
    r.da = Guarded(p.dt, p.qs());
    ops::gla_backward(r.dq, r.dk, r.dv, r.da, p.d_o, p.q, p.k, p.v, p.a, scale, chunk, impl);
  }
  return r;
}

// Tolerances on norm-wise relative error: forward (o, state), dq dk dv, and da, whose reverse
// cumulative sum of q dq - k dk cancels more than the others.
struct Tol {
  double fwd, grad, da;
};
// Measured errors are about 3e-15 in double and 1e-7 (9e-7 for da) in float.
constexpr Tol kTol64{1e-12, 1e-12, 1e-12};
constexpr Tol kTol32{1e-6, 2e-6, 1e-5};
Tol tol_for(DType dt) { return dt == DType::F64 ? kTol64 : kTol32; }

// Every output of `got` against `want`: norm-wise relative error, finiteness, guards (of both).
void expect_match(const Result& got, const Result& want, Tol tol, bool backward,
                  const std::string& what) {
  struct Item {
    const char* name;
    const Guarded *g, *w;
    double tol;
  };
  std::vector<Item> items{{"o", &got.o, &want.o, tol.fwd},
                          {"state", &got.state, &want.state, tol.fwd}};
  if (backward) {
    items.push_back({"dq", &got.dq, &want.dq, tol.grad});
    items.push_back({"dk", &got.dk, &want.dk, tol.grad});
    items.push_back({"dv", &got.dv, &want.dv, tol.grad});
    items.push_back({"da", &got.da, &want.da, tol.da});
  }
  for (const Item& it : items) {
    EXPECT_TRUE(all_finite(it.g->t())) << what << " " << it.name;
    EXPECT_TRUE(all_finite(it.w->t())) << what << " reference " << it.name;
    EXPECT_TRUE(it.g->guards_intact() && it.w->guards_intact()) << what << " " << it.name;
    EXPECT_LT(rel_err(it.g->t(), it.w->t()), it.tol) << what << " " << it.name;
  }
}

// Tokens [t0, t1) of x [B, N, H, D] as a new [B, t1 - t0, H, D] array.
Array take_tokens(const Tensor& x, int64_t t0, int64_t t1) {
  const int64_t B = x.size(0), N = x.size(1), row = x.size(2) * x.size(3), n = t1 - t0;
  Array y = Array::empty(x.dtype(), {B, n, x.size(2), x.size(3)});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t e = 0; e < row; ++e)
        set(y, (b * n + t) * row + e, get(x, (b * N + t0 + t) * row + e));
  return y;
}
// Writes y [B, n, H, D] into tokens [t0, t0 + n) of x [B, N, H, D].
void put_tokens(const Tensor& x, const Tensor& y, int64_t t0) {
  const int64_t B = x.size(0), N = x.size(1), row = x.size(2) * x.size(3), n = y.size(1);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t e = 0; e < row; ++e)
        set(x, (b * N + t0 + t) * row + e, get(y, (b * n + t) * row + e));
}

const char* impl_name(ops::Impl impl) { return impl == ops::Impl::Ref ? "ref" : "fast"; }

}  // namespace

// The recurrence against the unrolled sums (an independent formula for the oracle), with an
// initial state S_in and D(i; s, t) = exp(a_s[i] + ... + a_t[i]) (1 when s > t):
//   o_t = scale sum_i q_t[i] (sum_{s<=t} D(i; s+1, t) k_s[i] v_s + D(i; 0, t) S_in[i, :])
//   S_final[i, :] = sum_s D(i; s+1, N-1) k_s[i] v_s + D(i; 0, N-1) S_in[i, :]
TEST(Gla, RecurrenceMatchesUnrolledSum) {
  const int64_t B = 2, N = 9, H = 2, Dk = 3, Dv = 4;
  const double scale = 0.6;
  Problem p = make_problem(DType::F64, B, N, H, Dk, Dv, 11);
  Rng rng(5);
  Array s_in = random_array(DType::F64, p.ss(), rng);
  Result r = run(p, ops::Impl::Ref, 1, scale, s_in, false);
  double err_o = 0, err_s = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      auto row = [&](const Tensor& x, int64_t t) { return ((b * N + t) * H + h) * x.size(3); };
      auto D = [&](int64_t i, int64_t s, int64_t t) {
        double cum = 0;
        for (int64_t u = s; u <= t; ++u) cum += get(p.a, row(p.a, u) + i);
        return std::exp(cum);
      };
      auto S = [&](int64_t t, int64_t i, int64_t j) {  // S_t[i, j]
        double x = D(i, 0, t) * get(s_in, ((b * H + h) * Dk + i) * Dv + j);
        for (int64_t s = 0; s <= t; ++s)
          x += D(i, s + 1, t) * get(p.k, row(p.k, s) + i) * get(p.v, row(p.v, s) + j);
        return x;
      };
      for (int64_t t = 0; t < N; ++t)
        for (int64_t j = 0; j < Dv; ++j) {
          double o = 0;
          for (int64_t i = 0; i < Dk; ++i) o += scale * get(p.q, row(p.q, t) + i) * S(t, i, j);
          err_o = std::max(err_o, std::fabs(o - get(r.o.t(), row(p.v, t) + j)));
        }
      for (int64_t i = 0; i < Dk; ++i)
        for (int64_t j = 0; j < Dv; ++j)
          err_s = std::max(
              err_s, std::fabs(S(N - 1, i, j) - get(r.state.t(), ((b * H + h) * Dk + i) * Dv + j)));
    }
  EXPECT_LT(err_o, 1e-12);
  EXPECT_LT(err_s, 1e-12);
  EXPECT_TRUE(all_finite(r.o.t()) && r.o.guards_intact() && r.state.guards_intact());
}

// Central differences of <o, w> in double, for the recurrence and for the chunked form (each
// differentiated through its own forward), with N a multiple of the chunk and not.
class GlaGradShapes : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(GlaGradShapes, GradientsMatchFiniteDifferences) {
  const auto [N, chunk] = GetParam();
  const double scale = 0.7;
  Problem p = make_problem(DType::F64, 2, N, 2, 3, 2, 100 + N * 7 + chunk);
  for (auto impl : {ops::Impl::Ref, ops::Impl::Fast}) {
    Array o = Array::empty(DType::F64, p.vs());
    auto loss = [&] {
      ops::gla_forward(o, Tensor(), p.q, p.k, p.v, p.a, Tensor(), scale, chunk, impl);
      return dot(o, p.d_o);
    };
    Result r = run(p, impl, chunk, scale);
    EXPECT_LT(grad_check(p.q, r.dq, loss), 1e-6) << impl_name(impl) << " dq";
    EXPECT_LT(grad_check(p.k, r.dk, loss), 1e-6) << impl_name(impl) << " dk";
    EXPECT_LT(grad_check(p.v, r.dv, loss), 1e-6) << impl_name(impl) << " dv";
    EXPECT_LT(grad_check(p.a, r.da, loss), 1e-6) << impl_name(impl) << " da";
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, GlaGradShapes,
                         ::testing::Values(std::pair{1, 1}, std::pair{1, 4}, std::pair{9, 1},
                                           std::pair{10, 4}, std::pair{12, 4}, std::pair{7, 16},
                                           std::pair{13, 5}));

// The chunked form equals the recurrence: o, final state and all four gradients, for chunk
// sizes 1, 7, 16, 64 and N = 1, 31, 33, 100, 129 (B = 2, H = 2, Dk = 4, Dv = 6).
class GlaDtype : public ::testing::TestWithParam<DType> {};

TEST_P(GlaDtype, ChunkedMatchesRecurrence) {
  const DType dt = GetParam();
  const double scale = 0.5;  // Dk^-0.5
  for (int64_t N : {1, 31, 33, 100, 129}) {
    Problem p = make_problem(dt, 2, N, 2, 4, 6, 1000 + N);
    Result want = run(p, ops::Impl::Ref, 1, scale);
    for (int64_t chunk : {1, 7, 16, 64}) {
      Result got = run(p, ops::Impl::Fast, chunk, scale);
      expect_match(got, want, tol_for(dt), true,
                   "N=" + std::to_string(N) + " chunk=" + std::to_string(chunk));
    }
  }
}

// With an initial state the chunked forward still equals the recurrence.
TEST_P(GlaDtype, InitialStateForwardMatchesRecurrence) {
  const DType dt = GetParam();
  for (int64_t N : {1, 33}) {
    Problem p = make_problem(dt, 2, N, 2, 4, 6, 2000 + N);
    Rng rng(N);
    Array s_in = random_array(dt, p.ss(), rng, 2.0);
    Result want = run(p, ops::Impl::Ref, 1, 0.5, s_in, false);
    for (int64_t chunk : {1, 7, 16, 64}) {
      Result got = run(p, ops::Impl::Fast, chunk, 0.5, s_in, false);
      expect_match(got, want, tol_for(dt), false,
                   "N=" + std::to_string(N) + " chunk=" + std::to_string(chunk));
    }
  }
}

// Log decays of -30 to -80 on some key dims (a chunk's cumulative sum reaches about -5000) and
// exactly 0 on others: the chunked form stays finite and equal to the recurrence.
TEST_P(GlaDtype, StrongAndZeroDecayMatchRecurrence) {
  const DType dt = GetParam();
  Problem p = make_problem(dt, 2, 100, 2, 6, 5, 77, Decay::Strong);
  Result want = run(p, ops::Impl::Ref, 1, 0.4);
  for (int64_t chunk : {1, 7, 64}) {
    Result got = run(p, ops::Impl::Fast, chunk, 0.4);
    expect_match(got, want, tol_for(dt), true, "chunk=" + std::to_string(chunk));
  }
}

// Model-like head widths and enough (batch, head) pairs that the chunked path runs its
// OpenMP team, against the recurrence.
TEST_P(GlaDtype, WideHeadsMatchRecurrence) {
  const DType dt = GetParam();
  Problem p = make_problem(dt, 3, 150, 4, 16, 32, 4242);
  Result want = run(p, ops::Impl::Ref, 1, 0.25);
  for (int64_t chunk : {33, 64}) {
    Result got = run(p, ops::Impl::Fast, chunk, 0.25);
    expect_match(got, want, tol_for(dt), true, "chunk=" + std::to_string(chunk));
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GlaDtype, ::testing::Values(DType::F64, DType::F32),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// Generation: a prefill call, then one call per token with state_in and state_out the same
// tensor, reproduces the full forward's outputs and final state.
TEST(Gla, TokenByTokenWithInPlaceStateMatchesFullForward) {
  const int64_t B = 2, N = 40, H = 2, Dk = 4, Dv = 6, prefill = 13, chunk = 16;
  const double scale = 0.5;
  Problem p = make_problem(DType::F64, B, N, H, Dk, Dv, 31);
  Result full = run(p, ops::Impl::Fast, chunk, scale, Tensor(), false);
  for (auto impl : {ops::Impl::Ref, ops::Impl::Fast}) {
    Guarded o(DType::F64, p.vs()), state(DType::F64, p.ss());
    {
      Array q = take_tokens(p.q, 0, prefill), k = take_tokens(p.k, 0, prefill);
      Array v = take_tokens(p.v, 0, prefill), a = take_tokens(p.a, 0, prefill);
      Array op = Array::empty(DType::F64, {B, prefill, H, Dv});
      ops::gla_forward(op, state, q, k, v, a, Tensor(), scale, chunk, impl);
      put_tokens(o, op, 0);
    }
    for (int64_t t = prefill; t < N; ++t) {
      Array q = take_tokens(p.q, t, t + 1), k = take_tokens(p.k, t, t + 1);
      Array v = take_tokens(p.v, t, t + 1), a = take_tokens(p.a, t, t + 1);
      Array ot = Array::empty(DType::F64, {B, 1, H, Dv});
      ops::gla_forward(ot, state, q, k, v, a, state, scale, chunk, impl);
      put_tokens(o, ot, t);
    }
    EXPECT_LT(rel_err(o, full.o), 1e-12) << impl_name(impl);
    EXPECT_LT(rel_err(state, full.state), 1e-12) << impl_name(impl);
    EXPECT_TRUE(state.guards_intact()) << impl_name(impl);
  }
}

TEST(Gla, RejectsBadArguments) {
  const DType f = DType::F32;
  auto z = [](DType dt, Shape s) { return Array::zeros(dt, s); };
  Array q = z(f, {2, 5, 2, 4}), k = z(f, {2, 5, 2, 4}), a = z(f, {2, 5, 2, 4});
  Array v = z(f, {2, 5, 2, 6}), o = z(f, {2, 5, 2, 6}), st = z(f, {2, 2, 4, 6});
  Array dq = z(f, {2, 5, 2, 4}), dk = z(f, {2, 5, 2, 4}), da = z(f, {2, 5, 2, 4});
  Array dv = z(f, {2, 5, 2, 6});
  EXPECT_NO_THROW(ops::gla_forward(o, st, q, k, v, a, st, 0.5, 16));
  EXPECT_NO_THROW(ops::gla_backward(dq, dk, dv, da, o, q, k, v, a, 0.5, 16));

  Array k_bad = z(f, {2, 5, 2, 3}), v_bad = z(f, {2, 4, 2, 6}), o_bad = z(f, {2, 5, 2, 5});
  Array st_bad = z(f, {2, 2, 6, 4}), q3 = z(f, {2, 5, 8}), a_bad = z(f, {2, 5, 1, 4});
  Array q64 = z(DType::F64, {2, 5, 2, 4}), st64 = z(DType::F64, {2, 2, 4, 6});
  for (auto impl : {ops::Impl::Ref, ops::Impl::Fast}) {
    EXPECT_THROW(ops::gla_forward(o, st, q, k_bad, v, a, Tensor(), 0.5, 16, impl), Error);
    EXPECT_THROW(ops::gla_forward(o, st, q, k, v_bad, a, Tensor(), 0.5, 16, impl), Error);
    EXPECT_THROW(ops::gla_forward(o, st, q, k, v, a_bad, Tensor(), 0.5, 16, impl), Error);
    EXPECT_THROW(ops::gla_forward(o_bad, st, q, k, v, a, Tensor(), 0.5, 16, impl), Error);
    EXPECT_THROW(ops::gla_forward(o, st_bad, q, k, v, a, Tensor(), 0.5, 16, impl), Error);
    EXPECT_THROW(ops::gla_forward(o, st, q, k, v, a, st_bad, 0.5, 16, impl), Error);
    EXPECT_THROW(ops::gla_forward(o, st, q3, k, v, a, Tensor(), 0.5, 16, impl), Error);
    EXPECT_THROW(ops::gla_forward(o, st, q64, k, v, a, Tensor(), 0.5, 16, impl), Error);
    EXPECT_THROW(ops::gla_forward(o, st64, q, k, v, a, Tensor(), 0.5, 16, impl), Error);
    EXPECT_THROW(ops::gla_forward(o, st, q, k, v, a, Tensor(), 0.5, 0, impl), Error);
    EXPECT_THROW(ops::gla_forward(o, st, q, k, v, a, Tensor(), 0.5, -3, impl), Error);
    EXPECT_THROW(ops::gla_forward(o, st, q, k, v, a, Tensor(), std::nan(""), 16, impl), Error);
    EXPECT_THROW(ops::gla_backward(dq, dk, dv, da, o, q, k, v, a, 0.5, 0, impl), Error);
    EXPECT_THROW(ops::gla_backward(dq, dk, dv, da, o_bad, q, k, v, a, 0.5, 16, impl), Error);
    EXPECT_THROW(ops::gla_backward(dq, dk, o_bad, da, o, q, k, v, a, 0.5, 16, impl), Error);
    EXPECT_THROW(ops::gla_backward(dq, dk, dv, dv, o, q, k, v, a, 0.5, 16, impl), Error);  // da
    EXPECT_THROW(ops::gla_backward(dq, k_bad, dv, da, o, q, k, v, a, 0.5, 16, impl), Error);
    EXPECT_THROW(ops::gla_backward(q64, dk, dv, da, o, q, k, v, a, 0.5, 16, impl), Error);
  }
}
