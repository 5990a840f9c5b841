// RoPE and causal GQA attention (SPEC §4): the math pinned by hand-computed values and by an
// independent dense implementation in this file, finite-difference gradients (double) for both
// implementations, the fast CPU path against the oracle (float and double), position offsets and
// decode steps against the full sequence, GQA against repeated kv heads, overflow safety,
// independence of the thread count, write-guards, and argument checks. Probability dropout
// (SPEC §8): the dense formula with the documented mask index, finite-difference gradients with
// the mask fixed by the seed, fast against the oracle, and p = 0 as plain attention bit for bit.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "fela/ops/attention.h"
#include "fela/ops/dropout.h"
#include "test_util.h"

using namespace fela;
using namespace fela::test;
using ops::Impl;

namespace {

constexpr double kTheta = 10000.0;
const Impl kImpls[] = {Impl::Ref, Impl::Fast};

const char* name(Impl impl) { return impl == Impl::Ref ? "ref" : "fast"; }

// Tokens [n0, n1) of t [B, N, ...] (rank 4) as a new array [B, n1 - n0, ...].
Array tokens(const Tensor& t, int64_t n0, int64_t n1) {
  const int64_t B = t.size(0), N = t.size(1), row = t.size(2) * t.size(3);
  Array out = Array::empty(t.dtype(), {B, n1 - n0, t.size(2), t.size(3)});
  const size_t es = dtype_size(t.dtype());
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(static_cast<char*>(out.view().raw()) + size_t(b * (n1 - n0) * row) * es,
                static_cast<const char*>(t.raw()) + size_t((b * N + n0) * row) * es,
                size_t((n1 - n0) * row) * es);
  return out;
}

Array nan_like(const Tensor& t) { return nan_array(t.dtype(), t.shape()); }


// ---------------------------------------------------------------------------------------------
// RoPE

TEST(Rope, MatchesHandComputedRotation) {
  // Dh = 4: w_0 = 1 rotates dims (0, 2); w_1 = theta^(-1/2) rotates dims (1, 3).
  const int64_t p = 3;
  for (double theta : {kTheta, 100.0})
    for (Impl impl : kImpls) {
      Array x = Array::zeros(DType::F64, {1, 1, 2, 4}), y = Array::empty(DType::F64, {1, 1, 2, 4});
      double* xp = x.data<double>();
      xp[0] = 1.0;      // head 0: e_0
      xp[4 + 1] = 1.0;  // head 1: e_1
      ops::rope_forward(y, x, p, theta, impl);
      const double a = p / std::sqrt(theta);
      const double want[8] = {std::cos(3.0), 0, std::sin(3.0), 0, 0, std::cos(a), 0, std::sin(a)};
      const double* yp = y.data<double>();
      for (int i = 0; i < 8; ++i)
        EXPECT_NEAR(yp[i], want[i], 1e-15) << name(impl) << " theta=" << theta << " i=" << i;
    }
}

// x [B, N, H, Dh], position offset
struct RopeCase {
  int64_t B, N, H, Dh, pos0;
};

std::ostream& operator<<(std::ostream& os, const RopeCase& c) {
  return os << "B" << c.B << " N" << c.N << " H" << c.H << " Dh" << c.Dh << " pos0 " << c.pos0;
}

class RopeShapes : public ::testing::TestWithParam<RopeCase> {};

TEST_P(RopeShapes, GradientMatchesFiniteDifferences) {
  const auto c = GetParam();
  Rng rng(c.N * 7 + c.Dh);
  const Shape s{c.B, c.N, c.H, c.Dh};
  Array x = random_array(DType::F64, s, rng), w = random_array(DType::F64, s, rng);
  Array y = Array::empty(DType::F64, s), dx = Array::empty(DType::F64, s);
  for (Impl impl : kImpls) {
    auto loss = [&] {  // loss = <y, w>
      ops::rope_forward(y, x, c.pos0, kTheta, impl);
      return dot(y, w);
    };
    ops::rope_backward(dx, w, c.pos0, kTheta, impl);
    EXPECT_LT(grad_check(x, dx, loss, 400), 1e-6) << name(impl);
  }
}

TEST_P(RopeShapes, IsometryAndInverse) {
  const auto c = GetParam();
  Rng rng(c.N + c.H);
  const Shape s{c.B, c.N, c.H, c.Dh};
  Array x = random_array(DType::F64, s, rng);
  for (Impl impl : kImpls) {
    Array y = Array::empty(DType::F64, s), z = Array::empty(DType::F64, s);
    ops::rope_forward(y, x, c.pos0, kTheta, impl);
    ops::rope_backward(z, y, c.pos0, kTheta, impl);
    EXPECT_LT(max_abs_diff(z, x), 1e-13) << name(impl);  // backward o forward = identity
    // Each head's norm is preserved (rotations of pairs).
    const double *xp = x.data<double>(), *yp = y.data<double>();
    double worst = 0;
    for (int64_t r = 0; r < x.numel() / c.Dh; ++r) {
      double nx = 0, ny = 0;
      for (int64_t e = 0; e < c.Dh; ++e) {
        nx += xp[r * c.Dh + e] * xp[r * c.Dh + e];
        ny += yp[r * c.Dh + e] * yp[r * c.Dh + e];
      }
      worst = std::max(worst, std::fabs(std::sqrt(nx) - std::sqrt(ny)));
    }
    EXPECT_LT(worst, 1e-13) << name(impl);
    // In place (y aliases x; dx aliases dy) gives the same values.
    Array a = copy_of(x);
    ops::rope_forward(a, a, c.pos0, kTheta, impl);
    EXPECT_LT(max_abs_diff(a, y), 1e-15) << name(impl);
    ops::rope_backward(a, a, c.pos0, kTheta, impl);
    EXPECT_LT(max_abs_diff(a, z), 1e-15) << name(impl);
  }
}

TEST_P(RopeShapes, OffsetEqualsSliceOfWholeSequence) {
  const auto c = GetParam();
  Rng rng(c.B * 5 + c.N);
  const int64_t total = c.pos0 + c.N;
  Array whole = random_array(DType::F64, {c.B, total, c.H, c.Dh}, rng);
  Array part = tokens(whole, c.pos0, total);
  for (Impl impl : kImpls) {
    Array yw = Array::empty(DType::F64, whole.shape()), yp = Array::empty(DType::F64, part.shape());
    ops::rope_forward(yw, whole, 0, kTheta, impl);
    ops::rope_forward(yp, part, c.pos0, kTheta, impl);
    EXPECT_LT(max_abs_diff(yp, tokens(yw, c.pos0, total)), 1e-15) << name(impl);
  }
}

TEST_P(RopeShapes, FastMatchesReferenceInFloat) {
  const auto c = GetParam();
  Rng rng(c.H * 3 + c.Dh);
  const Shape s{c.B, c.N, c.H, c.Dh};
  Array x = random_array(DType::F32, s, rng);
  Array y[2] = {nan_like(x), nan_like(x)}, dx[2] = {nan_like(x), nan_like(x)};
  for (int i = 0; i < 2; ++i) {
    ops::rope_forward(y[i], x, c.pos0, kTheta, kImpls[i]);
    ops::rope_backward(dx[i], x, c.pos0, kTheta, kImpls[i]);
  }
  EXPECT_LT(rel_err(y[0], y[1]), 1e-6);
  EXPECT_LT(rel_err(dx[0], dx[1]), 1e-6);
  EXPECT_TRUE(all_finite(y[1]) && all_finite(dx[1]));
}

INSTANTIATE_TEST_SUITE_P(Shapes, RopeShapes,
                         ::testing::Values(RopeCase{1, 1, 1, 2, 0}, RopeCase{2, 5, 3, 4, 0},
                                           RopeCase{1, 33, 2, 6, 0}, RopeCase{2, 7, 3, 8, 5},
                                           RopeCase{1, 3, 1, 64, 4093}));

TEST(Rope, ScoresDependOnRelativePositionOnly) {
  // <rope(q, p1), rope(k, p2)> is a function of p1 - p2: the property RoPE exists for.
  Rng rng(11);
  Array q = random_array(DType::F64, {1, 1, 1, 16}, rng),
        k = random_array(DType::F64, {1, 1, 1, 16}, rng);
  Array rq = Array::empty(DType::F64, q.shape()), rk = Array::empty(DType::F64, k.shape());
  auto score = [&](int64_t pq, int64_t pk) {
    ops::rope_forward(rq, q, pq, kTheta, Impl::Fast);
    ops::rope_forward(rk, k, pk, kTheta, Impl::Fast);
    return dot(rq, rk);
  };
  EXPECT_NEAR(score(9, 4), score(5, 0), 1e-12);
  EXPECT_NEAR(score(1000, 997), score(3, 0), 1e-11);
  EXPECT_GT(std::fabs(score(9, 4) - score(9, 5)), 1e-6);  // and it does depend on it
}

TEST(Rope, RejectsBadArguments) {
  Array x = Array::zeros(DType::F32, {1, 2, 2, 3}), y = Array::empty(DType::F32, {1, 2, 2, 3});
  EXPECT_THROW(ops::rope_forward(y, x, 0, kTheta), Error);  // odd Dh
  EXPECT_THROW(ops::rope_backward(y, x, 0, kTheta), Error);
  Array x4 = Array::zeros(DType::F32, {1, 2, 2, 4}), y4 = Array::empty(DType::F32, {1, 2, 2, 4});
  Array y5 = Array::empty(DType::F32, {1, 3, 2, 4}), yd = Array::empty(DType::F64, {1, 2, 2, 4});
  Array r3 = Array::zeros(DType::F32, {2, 2, 4});
  EXPECT_THROW(ops::rope_forward(y5, x4, 0, kTheta), Error);  // shape mismatch
  EXPECT_THROW(ops::rope_forward(yd, x4, 0, kTheta), Error);  // dtype mismatch
  EXPECT_THROW(ops::rope_forward(r3, r3, 0, kTheta), Error);  // rank 3
  EXPECT_THROW(ops::rope_forward(y4, x4, -1, kTheta), Error);
  EXPECT_THROW(ops::rope_forward(y4, x4, 0, 0.0), Error);
  EXPECT_NO_THROW(ops::rope_forward(y4, x4, 0, kTheta));
}

// ---------------------------------------------------------------------------------------------
// Attention

// q [B, Nq, H, Dh], k, v [B, Nk, Hkv, Dh]
struct AttnCase {
  int64_t B, Nq, Nk, H, Hkv, Dh;
};

std::ostream& operator<<(std::ostream& os, const AttnCase& c) {
  return os << "B" << c.B << " Nq" << c.Nq << " Nk" << c.Nk << " H" << c.H << " Hkv" << c.Hkv
            << " Dh" << c.Dh;
}

// The dropout rate and seed of the tests that switch it on.
constexpr double kDropP = 0.3;
constexpr uint64_t kDropSeed = 20250301;

// Inputs and outputs of one attention call, with its dropout (none unless p is set).
struct AttnData {
  AttnCase c;
  double scale;
  Array q, k, v, o, lse;
  double p = 0.0;
  uint64_t seed = 0;

  AttnData(const AttnCase& c_, DType dt, uint64_t seed, double qscale = 1.0) : c(c_) {
    Rng rng(seed);
    scale = 1.0 / std::sqrt(double(c.Dh));
    q = random_array(dt, {c.B, c.Nq, c.H, c.Dh}, rng, qscale);
    k = random_array(dt, {c.B, c.Nk, c.Hkv, c.Dh}, rng);
    v = random_array(dt, {c.B, c.Nk, c.Hkv, c.Dh}, rng);
    o = nan_like(q);
    lse = nan_like(Array::empty(dt, {c.B, c.H, c.Nq}));
  }
  void forward(Impl impl) { ops::attention_forward(o, lse, q, k, v, scale, impl, p, seed); }
  void backward(Tensor dq, Tensor dk, Tensor dv, const Tensor& d_o, Impl impl) const {
    ops::attention_backward(dq, dk, dv, d_o, q, k, v, o, lse, scale, impl, p, seed);
  }
};

// Independent dense attention in double: kv heads repeated to H, full score matrix with the
// causal mask written as "key position <= query position", softmax by its textbook formula,
// and d's dropout as attention.h states it (P' = P keep / (1 - p), mask index over [B, H, Nq, Nk]).
void dense_attention(const AttnData& d, std::vector<double>& o, std::vector<double>& lse) {
  const auto c = d.c;
  auto Q = to_doubles(d.q), K = to_doubles(d.k), V = to_doubles(d.v);
  o.assign(Q.size(), 0.0);
  lse.assign(size_t(c.B * c.H * c.Nq), 0.0);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.H; ++h) {
      const int64_t g = h * c.Hkv / c.H;  // heads [g H/Hkv, (g+1) H/Hkv) share kv head g
      for (int64_t n = 0; n < c.Nq; ++n) {
        const int64_t qpos = c.Nk - c.Nq + n;
        std::vector<double> e(c.Nk, 0.0);
        double z = 0;
        for (int64_t j = 0; j < c.Nk; ++j) {
          if (j > qpos) continue;
          double sdot = 0;
          for (int64_t x = 0; x < c.Dh; ++x)
            sdot += Q[((b * c.Nq + n) * c.H + h) * c.Dh + x] *
                    K[((b * c.Nk + j) * c.Hkv + g) * c.Dh + x];
          e[j] = std::exp(sdot * d.scale);
          z += e[j];
        }
        lse[(b * c.H + h) * c.Nq + n] = std::log(z);
        for (int64_t j = 0; j < c.Nk; ++j) {
          const uint64_t index = uint64_t(((b * c.H + h) * c.Nq + n) * c.Nk + j);
          const double keep = d.p == 0 || ops::dropout_keep(d.seed, index, d.p) ? 1.0 : 0.0;
          for (int64_t x = 0; x < c.Dh; ++x)
            o[((b * c.Nq + n) * c.H + h) * c.Dh + x] +=
                e[j] / z * keep / (1 - d.p) * V[((b * c.Nk + j) * c.Hkv + g) * c.Dh + x];
        }
      }
    }
}

// rel_err against an expected vector of doubles.
double rel_err_to(const std::vector<double>& a, const Tensor& b) {
  auto y = to_doubles(b);
  double num = 0, na = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - y[i]) * (a[i] - y[i]);
    na += a[i] * a[i];
  }
  return std::sqrt(num / std::max(na, 1e-300));
}

// max_i |t_i|
double max_abs(const Tensor& t) {
  double m = 0;
  for (double x : to_doubles(t))
    if (!(std::fabs(x) <= m)) m = std::fabs(x);  // NaN propagates
  return m;
}

class AttnShapes : public ::testing::TestWithParam<AttnCase> {};

TEST_P(AttnShapes, ForwardMatchesDenseFormula) {
  const auto c = GetParam();
  AttnData d(c, DType::F64, 100 + c.Nq * 10 + c.Hkv);
  std::vector<double> o, lse;
  dense_attention(d, o, lse);
  for (Impl impl : kImpls) {
    d.forward(impl);
    EXPECT_LT(rel_err_to(o, d.o), 1e-13) << name(impl);
    EXPECT_LT(rel_err_to(lse, d.lse), 1e-13) << name(impl);
  }
}

TEST_P(AttnShapes, GradientsMatchFiniteDifferences) {
  const auto c = GetParam();
  AttnData d(c, DType::F64, 200 + c.Nk * 10 + c.H);
  Rng rng(c.Nq + 1);
  Array w = random_array(DType::F64, d.q.shape(), rng);  // loss = <o, w>
  for (Impl impl : kImpls) {
    auto loss = [&] {
      d.forward(impl);
      return dot(d.o, w);
    };
    loss();
    Array dq = nan_like(d.q), dk = nan_like(d.k), dv = nan_like(d.v);
    ops::attention_backward(dq, dk, dv, w, d.q, d.k, d.v, d.o, d.lse, d.scale, impl);
    if (c.Nk == 1) {  // o = v_0 whatever q and k are: dq = dk = 0 (up to rounding)
      EXPECT_LT(max_abs(dq) + max_abs(dk), 1e-14) << name(impl);
    } else {
      EXPECT_LT(grad_check(d.q, dq, loss, 150), 1e-6) << name(impl) << " dq";
      EXPECT_LT(grad_check(d.k, dk, loss, 150), 1e-6) << name(impl) << " dk";
    }
    EXPECT_LT(grad_check(d.v, dv, loss, 150), 1e-6) << name(impl) << " dv";
  }
}

TEST_P(AttnShapes, FastMatchesReferenceInFloat) {
  const auto c = GetParam();
  AttnData d[2] = {AttnData(c, DType::F32, 300 + c.Dh), AttnData(c, DType::F32, 300 + c.Dh)};
  Rng rng(c.Nk);
  Array d_o = random_array(DType::F32, d[0].q.shape(), rng);
  Array dq[2], dk[2], dv[2];
  for (int i = 0; i < 2; ++i) {
    d[i].forward(kImpls[i]);
    dq[i] = nan_like(d[i].q), dk[i] = nan_like(d[i].k), dv[i] = nan_like(d[i].v);
    ops::attention_backward(dq[i], dk[i], dv[i], d_o, d[i].q, d[i].k, d[i].v, d[i].o, d[i].lse,
                            d[i].scale, kImpls[i]);
  }
  EXPECT_LT(rel_err(d[0].o, d[1].o), 1e-5);
  EXPECT_LT(rel_err(d[0].lse, d[1].lse), 1e-6);
  if (c.Nk == 1) {  // dq = dk = 0 up to rounding, see GradientsMatchFiniteDifferences
    EXPECT_LT(max_abs(dq[1]) + max_abs(dk[1]), 1e-6);
  } else {
    EXPECT_LT(rel_err(dq[0], dq[1]), 1e-5);
    EXPECT_LT(rel_err(dk[0], dk[1]), 1e-5);
  }
  EXPECT_LT(rel_err(dv[0], dv[1]), 1e-5);
  for (const Tensor& t : {d[1].o.view(), d[1].lse.view(), dq[1].view(), dk[1].view(), dv[1].view()})
    EXPECT_TRUE(all_finite(t));
}

TEST_P(AttnShapes, DecodeStepsMatchFullForward) {
  // Full causal forward over Nk tokens, then the last Nq tokens again one at a time against a
  // growing cache (Nq = 1, Nk = t + 1), and all at once as one chunk (Nq against Nk).
  const auto c = GetParam();
  for (DType dt : {DType::F64, DType::F32}) {
    const double tol = dt == DType::F64 ? 1e-14 : 1e-6;
    AttnData full({c.B, c.Nk, c.Nk, c.H, c.Hkv, c.Dh}, dt, 400 + c.Nk);
    for (Impl impl : kImpls) {
      full.forward(impl);
      for (int64_t t = c.Nk - c.Nq; t < c.Nk; ++t) {
        AttnData step({c.B, 1, t + 1, c.H, c.Hkv, c.Dh}, dt, 0);
        step.q = tokens(full.q, t, t + 1);
        step.k = tokens(full.k, 0, t + 1);
        step.v = tokens(full.v, 0, t + 1);
        step.forward(impl);
        EXPECT_LT(rel_err(step.o, tokens(full.o, t, t + 1)), tol) << name(impl) << " t=" << t;
        for (int64_t b = 0; b < c.B; ++b)
          for (int64_t h = 0; h < c.H; ++h) {
            const double want = to_doubles(full.lse)[(b * c.H + h) * c.Nk + t];
            EXPECT_NEAR(to_doubles(step.lse)[b * c.H + h], want, tol * (1 + std::fabs(want)));
          }
      }
      AttnData chunk({c.B, c.Nq, c.Nk, c.H, c.Hkv, c.Dh}, dt, 0);
      chunk.q = tokens(full.q, c.Nk - c.Nq, c.Nk);
      chunk.k = copy_of(full.k);
      chunk.v = copy_of(full.v);
      chunk.forward(impl);
      EXPECT_LT(rel_err(chunk.o, tokens(full.o, c.Nk - c.Nq, c.Nk)), tol) << name(impl);
    }
  }
}

TEST_P(AttnShapes, DropoutForwardMatchesDenseFormula) {
  const auto c = GetParam();
  AttnData d(c, DType::F64, 500 + c.Nq * 10 + c.Hkv);
  d.p = kDropP, d.seed = kDropSeed;
  std::vector<double> o, lse;
  dense_attention(d, o, lse);
  for (Impl impl : kImpls) {
    d.forward(impl);
    EXPECT_LT(rel_err_to(o, d.o), 1e-13) << name(impl);
    EXPECT_LT(rel_err_to(lse, d.lse), 1e-13) << name(impl);  // of the undropped scores
  }
}

TEST_P(AttnShapes, DropoutGradientsMatchFiniteDifferences) {
  // loss = <o, w> as a function of q, k, v with the mask fixed by the seed.
  const auto c = GetParam();
  AttnData d(c, DType::F64, 600 + c.Nk * 10 + c.H);
  d.p = kDropP, d.seed = kDropSeed;
  Rng rng(c.Nq + 2);
  Array w = random_array(DType::F64, d.q.shape(), rng);
  for (Impl impl : kImpls) {
    auto loss = [&] {
      d.forward(impl);
      return dot(d.o, w);
    };
    loss();
    Array dq = nan_like(d.q), dk = nan_like(d.k), dv = nan_like(d.v);
    d.backward(dq, dk, dv, w, impl);
    if (c.Nk == 1) {  // o = keep v_0 / (1 - p) whatever q and k are
      EXPECT_LT(max_abs(dq) + max_abs(dk), 1e-14) << name(impl);
    } else {
      EXPECT_LT(grad_check(d.q, dq, loss, 150), 1e-6) << name(impl) << " dq";
      EXPECT_LT(grad_check(d.k, dk, loss, 150), 1e-6) << name(impl) << " dk";
    }
    EXPECT_LT(grad_check(d.v, dv, loss, 150), 1e-6) << name(impl) << " dv";
    EXPECT_TRUE(all_finite(dq) && all_finite(dk) && all_finite(dv)) << name(impl);
  }
}

TEST_P(AttnShapes, DropoutFastMatchesReferenceInFloat) {
  const auto c = GetParam();
  AttnData d[2] = {AttnData(c, DType::F32, 700 + c.Dh), AttnData(c, DType::F32, 700 + c.Dh)};
  Rng rng(c.Nk + 3);
  Array d_o = random_array(DType::F32, d[0].q.shape(), rng);
  Array dq[2], dk[2], dv[2];
  for (int i = 0; i < 2; ++i) {
    d[i].p = kDropP, d[i].seed = kDropSeed;
    d[i].forward(kImpls[i]);
    dq[i] = nan_like(d[i].q), dk[i] = nan_like(d[i].k), dv[i] = nan_like(d[i].v);
    d[i].backward(dq[i], dk[i], dv[i], d_o, kImpls[i]);
  }
  EXPECT_LT(rel_err(d[0].o, d[1].o), 1e-5);
  EXPECT_LT(rel_err(d[0].lse, d[1].lse), 1e-6);
  if (c.Nk == 1) {
    EXPECT_LT(max_abs(dq[1]) + max_abs(dk[1]), 1e-6);
  } else {
    EXPECT_LT(rel_err(dq[0], dq[1]), 1e-5);
    EXPECT_LT(rel_err(dk[0], dk[1]), 1e-5);
  }
  EXPECT_LT(rel_err(dv[0], dv[1]), 1e-5);
  for (const Tensor& t : {d[1].o.view(), d[1].lse.view(), dq[1].view(), dk[1].view(), dv[1].view()})
    EXPECT_TRUE(all_finite(t));
}

// H = Hkv, GQA (H = 4 over Hkv = 2 and 1), prefill chunks (Nq < Nk), single tokens, 33.
INSTANTIATE_TEST_SUITE_P(Shapes, AttnShapes,
                         ::testing::Values(AttnCase{1, 1, 1, 1, 1, 4}, AttnCase{2, 4, 4, 2, 2, 3},
                                           AttnCase{2, 5, 5, 4, 2, 4}, AttnCase{1, 6, 6, 4, 1, 5},
                                           AttnCase{1, 1, 7, 4, 2, 3}, AttnCase{2, 3, 7, 4, 1, 2},
                                           AttnCase{1, 3, 7, 2, 2, 5}, AttnCase{1, 33, 33, 4, 2, 3},
                                           AttnCase{1, 1, 33, 2, 1, 4}));

TEST(Attention, FastMatchesReferenceOnLargerShapes) {
  // Sizes past the fast path's blocks of 32 rows and 16-wide register tiles, with remainders of
  // each (129 = 4 * 32 + 1, 31 = 8 + 8 + 8 + 4 + 3) and key blocks that start inside a query
  // range (Nq < Nk); in float and in double, whose tiles are 8 wide; without dropout and with it
  // (whose mask index the fast path forms per block of queries and of keys).
  for (double p : {0.0, 0.2}) {
    for (DType dt : {DType::F32, DType::F64}) {
      const double tol = dt == DType::F32 ? 1e-5 : 1e-12;
      for (AttnCase c : {AttnCase{2, 129, 129, 4, 2, 64}, AttnCase{1, 31, 130, 8, 1, 32},
                         AttnCase{1, 1, 257, 8, 2, 128}, AttnCase{1, 40, 75, 3, 3, 20}}) {
        AttnData d[2] = {AttnData(c, dt, 7), AttnData(c, dt, 7)};
        Rng rng(8);
        Array d_o = random_array(dt, d[0].q.shape(), rng);
        Array dq[2], dk[2], dv[2];
        for (int i = 0; i < 2; ++i) {
          d[i].p = p, d[i].seed = 99;
          d[i].forward(kImpls[i]);
          dq[i] = nan_like(d[i].q), dk[i] = nan_like(d[i].k), dv[i] = nan_like(d[i].v);
          d[i].backward(dq[i], dk[i], dv[i], d_o, kImpls[i]);
        }
        const std::string t = std::string(dtype_name(dt)) + " p=" + std::to_string(p);
        EXPECT_LT(rel_err(d[0].o, d[1].o), tol) << c << " " << t;
        EXPECT_LT(rel_err(d[0].lse, d[1].lse), tol) << c << " " << t;
        EXPECT_LT(rel_err(dq[0], dq[1]), tol) << c << " " << t;
        EXPECT_LT(rel_err(dk[0], dk[1]), tol) << c << " " << t;
        EXPECT_LT(rel_err(dv[0], dv[1]), tol) << c << " " << t;
      }
    }
  }
}

TEST(Attention, ResultsDoNotDependOnThreadCount) {
  // Every output element is summed in a fixed order, whichever thread computes it; the dropout
  // mask is a function of the element's index alone.
  const AttnCase c{2, 70, 70, 4, 2, 32};
  const int keep = omp_get_max_threads();
  for (double p : {0.0, kDropP}) {
    Array out[2][6];
    for (int t = 0; t < 2; ++t) {
      omp_set_num_threads(t ? 3 : 1);
      AttnData d(c, DType::F32, 17);
      d.p = p, d.seed = kDropSeed;
      Rng rng(18);
      Array d_o = random_array(DType::F32, d.q.shape(), rng);
      d.forward(Impl::Fast);
      Array dq = nan_like(d.q), dk = nan_like(d.k), dv = nan_like(d.v), rq = nan_like(d.q);
      d.backward(dq, dk, dv, d_o, Impl::Fast);
      ops::rope_forward(rq, d.q, 3, kTheta, Impl::Fast);
      out[t][0] = std::move(d.o), out[t][1] = std::move(d.lse), out[t][2] = std::move(dq);
      out[t][3] = std::move(dk), out[t][4] = std::move(dv), out[t][5] = std::move(rq);
    }
    omp_set_num_threads(keep);
    for (int i = 0; i < 6; ++i)
      EXPECT_EQ(max_abs_diff(out[0][i], out[1][i]), 0.0) << "output " << i << " p=" << p;
  }
}

TEST(Attention, ZeroDropoutIsPlainAttentionExactly) {
  // dropout_p = 0 with any seed gives the results of a call without the dropout arguments, bit
  // for bit; a positive rate does change them, and another seed changes them again.
  for (DType dt : {DType::F32, DType::F64})
    for (Impl impl : kImpls) {
      const AttnCase c{2, 33, 40, 4, 2, 8};
      AttnData d(c, dt, 41);
      Rng rng(42);
      Array d_o = random_array(dt, d.q.shape(), rng);
      Array o0 = nan_like(d.o), l0 = nan_like(d.lse);
      Array g0[3] = {nan_like(d.q), nan_like(d.k), nan_like(d.v)};
      ops::attention_forward(o0, l0, d.q, d.k, d.v, d.scale, impl);
      ops::attention_backward(g0[0], g0[1], g0[2], d_o, d.q, d.k, d.v, o0, l0, d.scale, impl);
      Array o1 = nan_like(d.o), l1 = nan_like(d.lse);
      Array g1[3] = {nan_like(d.q), nan_like(d.k), nan_like(d.v)};
      ops::attention_forward(o1, l1, d.q, d.k, d.v, d.scale, impl, 0.0, 987654321);
      ops::attention_backward(g1[0], g1[1], g1[2], d_o, d.q, d.k, d.v, o1, l1, d.scale, impl, 0.0,
                              987654321);
      const std::string t = std::string(name(impl)) + " " + std::string(dtype_name(dt));
      EXPECT_EQ(max_abs_diff(o0, o1), 0.0) << t;
      EXPECT_EQ(max_abs_diff(l0, l1), 0.0) << t;
      for (int i = 0; i < 3; ++i) EXPECT_EQ(max_abs_diff(g0[i], g1[i]), 0.0) << t << " grad " << i;
      // With dropout: lse is unchanged (undropped scores), o is not, and depends on the seed.
      Array o2 = nan_like(d.o), l2 = nan_like(d.lse), o3 = nan_like(d.o), l3 = nan_like(d.lse);
      ops::attention_forward(o2, l2, d.q, d.k, d.v, d.scale, impl, kDropP, 1);
      ops::attention_forward(o3, l3, d.q, d.k, d.v, d.scale, impl, kDropP, 2);
      EXPECT_EQ(max_abs_diff(l0, l2), 0.0) << t;
      EXPECT_GT(rel_err(o0, o2), 0.05) << t;
      EXPECT_GT(rel_err(o2, o3), 0.05) << t;
    }
}

TEST(Attention, LargeScoresStayFinite) {
  // Scores of several hundred would overflow exp without the max subtraction.
  const AttnCase c{1, 9, 9, 2, 1, 16};
  for (Impl impl : kImpls) {
    AttnData d(c, DType::F32, 9, 100.0);
    d.forward(impl);
    EXPECT_TRUE(all_finite(d.o) && all_finite(d.lse)) << name(impl);
    Array dq = nan_like(d.q), dk = nan_like(d.k), dv = nan_like(d.v);
    ops::attention_backward(dq, dk, dv, d.o, d.q, d.k, d.v, d.o, d.lse, d.scale, impl);
    EXPECT_TRUE(all_finite(dq) && all_finite(dk) && all_finite(dv)) << name(impl);
  }
  AttnData a(c, DType::F32, 9, 100.0), r(c, DType::F64, 9, 100.0);
  a.forward(Impl::Fast);
  r.forward(Impl::Ref);
  EXPECT_LT(rel_err(a.o, r.o), 1e-4);  // float rounding of q amplified by the large scores
}

TEST(Attention, GqaEqualsRepeatedKvHeads) {
  // Hkv = 2 shared by H = 6 equals plain multi-head attention with each kv head copied to its
  // three query heads, and dk, dv equal the sums of the copies' gradients.
  const int64_t B = 2, N = 5, H = 6, Hkv = 2, Dh = 4, G = H / Hkv;
  for (Impl impl : kImpls) {
    AttnData g({B, N, N, H, Hkv, Dh}, DType::F64, 21), m({B, N, N, H, H, Dh}, DType::F64, 21);
    m.q = copy_of(g.q);
    auto K = to_doubles(g.k), V = to_doubles(g.v);
    for (int64_t i = 0; i < B * N; ++i)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t e = 0; e < Dh; ++e) {
          m.k.data<double>()[(i * H + h) * Dh + e] = K[(i * Hkv + h / G) * Dh + e];
          m.v.data<double>()[(i * H + h) * Dh + e] = V[(i * Hkv + h / G) * Dh + e];
        }
    g.forward(impl);
    m.forward(impl);
    EXPECT_LT(max_abs_diff(g.o, m.o), 1e-14) << name(impl);
    Rng rng(3);
    Array d_o = random_array(DType::F64, g.q.shape(), rng);
    Array dqg = nan_like(g.q), dkg = nan_like(g.k), dvg = nan_like(g.v);
    Array dqm = nan_like(m.q), dkm = nan_like(m.k), dvm = nan_like(m.v);
    ops::attention_backward(dqg, dkg, dvg, d_o, g.q, g.k, g.v, g.o, g.lse, g.scale, impl);
    ops::attention_backward(dqm, dkm, dvm, d_o, m.q, m.k, m.v, m.o, m.lse, m.scale, impl);
    EXPECT_LT(max_abs_diff(dqg, dqm), 1e-13) << name(impl);
    auto DKM = to_doubles(dkm), DVM = to_doubles(dvm);
    std::vector<double> dks(dkg.numel(), 0.0), dvs(dvg.numel(), 0.0);
    for (int64_t i = 0; i < B * N; ++i)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t e = 0; e < Dh; ++e) {
          dks[(i * Hkv + h / G) * Dh + e] += DKM[(i * H + h) * Dh + e];
          dvs[(i * Hkv + h / G) * Dh + e] += DVM[(i * H + h) * Dh + e];
        }
    EXPECT_LT(rel_err_to(dks, dkg), 1e-13) << name(impl);
    EXPECT_LT(rel_err_to(dvs, dvg), 1e-13) << name(impl);
  }
}

TEST(Attention, WritesNothingOutsideItsOutputs) {
  // Outputs are views at the front of larger buffers whose tails hold a sentinel (with dropout
  // on, which writes through the same paths plus the mask).
  const AttnCase c{2, 3, 7, 4, 2, 8};
  const int64_t pad = 64;
  const float sentinel = 12345.0f;
  for (Impl impl : kImpls) {
    AttnData d(c, DType::F32, 5);
    std::vector<std::vector<float>> bufs;
    auto guarded = [&](const Shape& s) {
      bufs.emplace_back(size_t(s.numel() + pad), sentinel);
      return Tensor(bufs.back().data(), DType::F32, s);
    };
    bufs.reserve(6);
    Tensor o = guarded(d.q.shape()), lse = guarded({c.B, c.H, c.Nq});
    Tensor dq = guarded(d.q.shape()), dk = guarded(d.k.shape()), dv = guarded(d.v.shape());
    ops::attention_forward(o, lse, d.q, d.k, d.v, d.scale, impl, kDropP, kDropSeed);
    ops::attention_backward(dq, dk, dv, d.q, d.q, d.k, d.v, o, lse, d.scale, impl, kDropP,
                            kDropSeed);
    for (const Tensor& t : {o, lse, dq, dk, dv}) {
      const float* p = t.data<float>();
      for (int64_t i = 0; i < pad; ++i) ASSERT_EQ(p[t.numel() + i], sentinel) << name(impl);
    }
  }
}

TEST(Attention, RejectsBadArguments) {
  auto z = [](Shape s, DType dt = DType::F32) { return Array::zeros(dt, s); };
  Array q = z({1, 3, 4, 8}), k = z({1, 5, 2, 8}), v = z({1, 5, 2, 8});
  Array o = z({1, 3, 4, 8}), lse = z({1, 4, 3});
  const double sc = 0.35;
  EXPECT_NO_THROW(ops::attention_forward(o, lse, q, k, v, sc));
  // H % Hkv != 0
  Array k3 = z({1, 5, 3, 8}), v3 = z({1, 5, 3, 8});
  EXPECT_THROW(ops::attention_forward(o, lse, q, k3, v3, sc), Error);
  // Nk < Nq
  Array k2 = z({1, 2, 2, 8}), v2 = z({1, 2, 2, 8});
  EXPECT_THROW(ops::attention_forward(o, lse, q, k2, v2, sc), Error);
  // mismatched Dh between q and k/v
  Array k6 = z({1, 5, 2, 6}), v6 = z({1, 5, 2, 6});
  EXPECT_THROW(ops::attention_forward(o, lse, q, k6, v6, sc), Error);
  // v unlike k, batch mismatch, wrong o / lse, mixed dtypes, rank 3
  EXPECT_THROW(ops::attention_forward(o, lse, q, k, z({1, 4, 2, 8}), sc), Error);
  EXPECT_THROW(ops::attention_forward(o, lse, q, z({2, 5, 2, 8}), z({2, 5, 2, 8}), sc), Error);
  EXPECT_THROW(ops::attention_forward(z({1, 3, 4, 7}), lse, q, k, v, sc), Error);
  EXPECT_THROW(ops::attention_forward(o, z({1, 3, 4}), q, k, v, sc), Error);
  EXPECT_THROW(ops::attention_forward(o, lse, q, k, z({1, 5, 2, 8}, DType::F64), sc), Error);
  EXPECT_THROW(ops::attention_forward(o, lse, z({3, 4, 8}), k, v, sc), Error);
  EXPECT_THROW(ops::attention_forward(o, lse, q, z({1, 5, 0, 8}), z({1, 5, 0, 8}), sc), Error);
  EXPECT_THROW(ops::attention_forward(o, lse, q, k, v, std::nan("")), Error);
  // backward: the same checks, plus the gradient shapes
  Array dq = z({1, 3, 4, 8}), dk = z({1, 5, 2, 8}), dv = z({1, 5, 2, 8});
  EXPECT_NO_THROW(ops::attention_backward(dq, dk, dv, o, q, k, v, o, lse, sc));
  EXPECT_THROW(ops::attention_backward(dq, dk, dv, o, q, k3, v3, o, lse, sc), Error);
  EXPECT_THROW(ops::attention_backward(dq, dk, dv, o, q, k2, v2, o, lse, sc), Error);
  EXPECT_THROW(ops::attention_backward(dq, dk, dv, o, q, k6, v6, o, lse, sc), Error);
  EXPECT_THROW(ops::attention_backward(dq, dq, dv, o, q, k, v, o, lse, sc), Error);
  EXPECT_THROW(ops::attention_backward(dq, dk, dk, o, z({1, 3, 4, 6}), k, v, o, lse, sc), Error);
  EXPECT_THROW(ops::attention_backward(dk, dk, dv, o, q, k, v, o, lse, sc), Error);
  EXPECT_THROW(ops::attention_backward(dq, dk, dv, z({1, 3, 4, 6}), q, k, v, o, lse, sc), Error);
  // dropout_p outside [0, 1)
  EXPECT_NO_THROW(ops::attention_forward(o, lse, q, k, v, sc, Impl::Fast, 0.5, 3));
  EXPECT_NO_THROW(ops::attention_backward(dq, dk, dv, o, q, k, v, o, lse, sc, Impl::Ref, 0.5, 3));
  for (double p : {1.0, -0.1, 1.5, std::nan("")}) {
    EXPECT_THROW(ops::attention_forward(o, lse, q, k, v, sc, Impl::Fast, p, 3), Error) << p;
    EXPECT_THROW(ops::attention_forward(o, lse, q, k, v, sc, Impl::Ref, p, 3), Error) << p;
    EXPECT_THROW(ops::attention_backward(dq, dk, dv, o, q, k, v, o, lse, sc, Impl::Fast, p, 3),
                 Error)
        << p;
  }
}

}  // namespace
