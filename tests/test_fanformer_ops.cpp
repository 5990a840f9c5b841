// The small ops of SPEC §8's FANformer parts: the FAN projection's periodic part, SiLU (CoLA
// linears), per-channel scaling (gated residuals) and counter-based dropout. Finite-difference
// gradients in double for both implementations on odd shapes, the fast CPU path against the
// oracle in float, values pinned by their formulas, aliasing, write coverage (outputs start as
// NaN), independence of the thread count, dropout's statistics against binomial bounds, and
// argument checks.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <ostream>
#include <vector>

#include "fela/ops/channel_scale.h"
#include "fela/ops/dropout.h"
#include "fela/ops/fan.h"
#include "fela/ops/silu.h"
#include "test_util.h"

using namespace fela;
using namespace fela::test;
using ops::Impl;

namespace {

const Impl kImpls[] = {Impl::Ref, Impl::Fast};

const char* name(Impl impl) { return impl == Impl::Ref ? "ref" : "fast"; }

// An array of t's dtype and shape with every value NaN: outputs must overwrite all of it.


// Runs f with omp's thread count set to n, then restores it.
template <class F>
void with_threads(int n, F&& f) {
  const int keep = omp_get_max_threads();
  omp_set_num_threads(n);
  f();
  omp_set_num_threads(keep);
}

// ---------------------------------------------------------------------------------------------
// FAN: y [R, 2 dp + dl] = [cos(p) || sin(p) || l]

// p [R, dp], l [R, dl]
struct FanCase {
  int64_t R, dp, dl;
};

std::ostream& operator<<(std::ostream& os, const FanCase& c) {
  return os << "R" << c.R << " dp" << c.dp << " dl" << c.dl;
}

class FanShapes : public ::testing::TestWithParam<FanCase> {};

TEST_P(FanShapes, ForwardMatchesFormula) {
  const auto c = GetParam();
  Rng rng(c.R * 3 + c.dp);
  Array p = random_array(DType::F64, {c.R, c.dp}, rng, 3.0);
  Array l = random_array(DType::F64, {c.R, c.dl}, rng);
  const int64_t w = 2 * c.dp + c.dl;
  for (Impl impl : kImpls) {
    Array y = nan_array(DType::F64, {c.R, w});
    ops::fan_forward(y, p, l, impl);
    const double *P = p.data<double>(), *L = l.data<double>(), *Y = y.data<double>();
    double worst = 0;
    for (int64_t r = 0; r < c.R; ++r) {
      for (int64_t i = 0; i < c.dp; ++i) {
        worst = std::max(worst, std::fabs(Y[r * w + i] - std::cos(P[r * c.dp + i])));
        worst = std::max(worst, std::fabs(Y[r * w + c.dp + i] - std::sin(P[r * c.dp + i])));
      }
      for (int64_t i = 0; i < c.dl; ++i)
        worst = std::max(worst, std::fabs(Y[r * w + 2 * c.dp + i] - L[r * c.dl + i]));
    }
    EXPECT_LT(worst, 1e-15) << name(impl);
    EXPECT_TRUE(all_finite(y)) << name(impl);
  }
}

TEST_P(FanShapes, GradientsMatchFiniteDifferences) {
  const auto c = GetParam();
  Rng rng(c.R + c.dl * 5);
  const int64_t w = 2 * c.dp + c.dl;
  Array p = random_array(DType::F64, {c.R, c.dp}, rng, 3.0);
  Array l = random_array(DType::F64, {c.R, c.dl}, rng);
  Array g = random_array(DType::F64, {c.R, w}, rng);  // loss = <y, g>
  Array y = Array::empty(DType::F64, {c.R, w});
  auto loss = [&] {  // the oracle's forward: each implementation's backward is checked on it
    ops::fan_forward(y, p, l, Impl::Ref);
    return dot(y, g);
  };
  for (Impl impl : kImpls) {
    Array dp = nan_array(DType::F64, p.shape()), dl = nan_array(DType::F64, l.shape());
    ops::fan_backward(dp, dl, g, p, impl);
    if (c.dp) {
      EXPECT_LT(grad_check(p, dp, loss, 300), 1e-6) << name(impl) << " dp";
    }
    if (c.dl) {
      EXPECT_LT(grad_check(l, dl, loss, 300), 1e-6) << name(impl) << " dl";
    }
    EXPECT_TRUE(all_finite(dp) && all_finite(dl)) << name(impl);
  }
}

TEST_P(FanShapes, FastMatchesReferenceInFloat) {
  const auto c = GetParam();
  Rng rng(c.dp * 7 + c.dl);
  const int64_t w = 2 * c.dp + c.dl;
  Array p = random_array(DType::F32, {c.R, c.dp}, rng, 3.0);
  Array l = random_array(DType::F32, {c.R, c.dl}, rng);
  Array dy = random_array(DType::F32, {c.R, w}, rng);
  Array y[2], dp[2], dl[2];
  for (int i = 0; i < 2; ++i) {
    y[i] = nan_array(DType::F32, {c.R, w});
    dp[i] = nan_array(DType::F32, p.shape());
    dl[i] = nan_array(DType::F32, l.shape());
    ops::fan_forward(y[i], p, l, kImpls[i]);
    ops::fan_backward(dp[i], dl[i], dy, p, kImpls[i]);
  }
  EXPECT_LT(rel_err(y[0], y[1]), 1e-6);
  EXPECT_LT(rel_err(dp[0], dp[1]), 1e-6);
  EXPECT_EQ(max_abs_diff(dl[0], dl[1]), 0.0);  // a copy of dy's last columns
  EXPECT_TRUE(all_finite(y[1]) && all_finite(dp[1]) && all_finite(dl[1]));
}

// Odd sizes, one row, one column, and the empty periodic or linear part (fan_p = 0 or 1/2).
INSTANTIATE_TEST_SUITE_P(Shapes, FanShapes,
                         ::testing::Values(FanCase{1, 1, 1}, FanCase{1, 33, 31},
                                           FanCase{31, 1, 129}, FanCase{33, 31, 1},
                                           FanCase{129, 33, 31}, FanCase{5, 0, 7}, FanCase{7, 4, 0},
                                           FanCase{560, 19, 24}));

TEST(Fan, AcceptsLeadingDimensions) {
  // [B, N, dp] is [B N, dp] rows.
  Rng rng(1);
  Array p = random_array(DType::F32, {2, 3, 4}, rng), l = random_array(DType::F32, {2, 3, 5}, rng);
  Array y = nan_array(DType::F32, {2, 3, 13}), y2 = nan_array(DType::F32, {6, 13});
  ops::fan_forward(y, p, l);
  ops::fan_forward(y2, p.view().reshape({6, 4}), l.view().reshape({6, 5}));
  EXPECT_EQ(max_abs_diff(y, y2), 0.0);
}

TEST(Fan, RejectsBadArguments) {
  auto z = [](Shape s, DType dt = DType::F32) { return Array::zeros(dt, s); };
  Array p = z({3, 4}), l = z({3, 5}), y = z({3, 13});
  EXPECT_NO_THROW(ops::fan_forward(y, p, l));
  EXPECT_THROW(ops::fan_forward(z({3, 12}), p, l), Error);             // y too narrow
  EXPECT_THROW(ops::fan_forward(z({2, 13}), p, l), Error);             // y rows
  EXPECT_THROW(ops::fan_forward(y, p, z({2, 5})), Error);              // l rows
  EXPECT_THROW(ops::fan_forward(y, p, z({1, 3, 5})), Error);           // l rank
  EXPECT_THROW(ops::fan_forward(y, p, z({3, 5}, DType::F64)), Error);  // mixed dtypes
  EXPECT_THROW(ops::fan_forward(y, p, l.view().reshape({15}), Impl::Ref), Error);
  Array dp = z({3, 4}), dl = z({3, 5});
  EXPECT_NO_THROW(ops::fan_backward(dp, dl, y, p));
  EXPECT_THROW(ops::fan_backward(z({3, 3}), dl, y, p), Error);    // dp shape
  EXPECT_THROW(ops::fan_backward(dp, z({3, 6}), y, p), Error);    // dy width vs dl
  EXPECT_THROW(ops::fan_backward(dp, dl, z({4, 13}), p), Error);  // dy rows
  EXPECT_THROW(ops::fan_backward(dp, z({3, 5}, DType::F64), y, p), Error);
}

// ---------------------------------------------------------------------------------------------
// SiLU

class SiluShapes : public ::testing::TestWithParam<std::pair<int64_t, int64_t>> {};

TEST_P(SiluShapes, GradientMatchesFiniteDifferences) {
  const auto [R, d] = GetParam();
  Rng rng(R * 11 + d);
  Array x = random_array(DType::F64, {R, d}, rng, 4.0), g = random_array(DType::F64, {R, d}, rng);
  Array y = Array::empty(DType::F64, {R, d});  // loss = <y, g>
  auto loss = [&] {  // the oracle's forward: each implementation's backward is checked on it
    ops::silu_forward(y, x, Impl::Ref);
    return dot(y, g);
  };
  for (Impl impl : kImpls) {
    Array dx = nan_array(DType::F64, {R, d});
    ops::silu_backward(dx, g, x, impl);
    EXPECT_LT(grad_check(x, dx, loss, 400), 1e-6) << name(impl);
  }
}

TEST_P(SiluShapes, FastMatchesReferenceInFloat) {
  const auto [R, d] = GetParam();
  Rng rng(R + 5 * d);
  Array x = random_array(DType::F32, {R, d}, rng, 4.0), dy = random_array(DType::F32, {R, d}, rng);
  Array y[2], dx[2];
  for (int i = 0; i < 2; ++i) {
    y[i] = nan_array(DType::F32, {R, d});
    dx[i] = nan_array(DType::F32, {R, d});
    ops::silu_forward(y[i], x, kImpls[i]);
    ops::silu_backward(dx[i], dy, x, kImpls[i]);
  }
  EXPECT_LT(rel_err(y[0], y[1]), 1e-6);
  EXPECT_LT(rel_err(dx[0], dx[1]), 1e-6);
  EXPECT_TRUE(all_finite(y[1]) && all_finite(dx[1]));
}

TEST_P(SiluShapes, BackwardInPlace) {
  // dx may alias dy.
  const auto [R, d] = GetParam();
  Rng rng(R + d);
  Array x = random_array(DType::F32, {R, d}, rng), dy = random_array(DType::F32, {R, d}, rng);
  for (Impl impl : kImpls) {
    Array dx = Array::empty(DType::F32, {R, d}), a = copy_of(dy);
    ops::silu_backward(dx, dy, x, impl);
    ops::silu_backward(a, a, x, impl);
    EXPECT_EQ(max_abs_diff(a, dx), 0.0) << name(impl);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, SiluShapes,
                         ::testing::Values(std::pair<int64_t, int64_t>{1, 1},
                                           std::pair<int64_t, int64_t>{1, 129},
                                           std::pair<int64_t, int64_t>{31, 33},
                                           std::pair<int64_t, int64_t>{129, 31},
                                           std::pair<int64_t, int64_t>{300, 129}));

TEST(Silu, KnownValuesAndLargeInputs) {
  // silu(0) = 0, silu(x) -> x for large x and -> 0 for very negative x, without NaN or Inf
  // where exp(-x) overflows; the derivative tends to 1 and 0 there, and is 1/2 at 0.
  const double xs[] = {0.0, 1.0, -1.0, 30.0, -30.0, 100.0, -100.0, 800.0, -800.0};
  const int n = 9;
  for (DType dt : {DType::F32, DType::F64})
    for (Impl impl : kImpls) {
      Array x = Array::empty(dt, {n}), y = nan_array(dt, {n}), dx = nan_array(dt, {n});
      Array ones = Array::empty(dt, {n});
      for (int i = 0; i < n; ++i) {
        if (dt == DType::F32) {
          x.data<float>()[i] = float(xs[i]);
          ones.data<float>()[i] = 1;
        } else {
          x.data<double>()[i] = xs[i];
          ones.data<double>()[i] = 1;
        }
      }
      ops::silu_forward(y, x, impl);
      ops::silu_backward(dx, ones, x, impl);
      ASSERT_TRUE(all_finite(y) && all_finite(dx)) << name(impl) << " " << dtype_name(dt);
      const auto Y = to_doubles(y), DX = to_doubles(dx), X = to_doubles(x);
      const double tol = dt == DType::F32 ? 1e-6 : 1e-15;
      for (int i = 0; i < n; ++i) {
        const double s = 1.0 / (1.0 + std::exp(-X[i]));
        EXPECT_NEAR(Y[i], X[i] * s, tol * (1 + std::fabs(X[i]))) << X[i];
        EXPECT_NEAR(DX[i], s * (1 + X[i] * (1 - s)), tol) << X[i];
      }
      EXPECT_EQ(Y[0], 0.0);
      EXPECT_EQ(DX[0], 0.5);
    }
}

TEST(Silu, RejectsBadArguments) {
  auto z = [](Shape s, DType dt = DType::F32) { return Array::zeros(dt, s); };
  Array x = z({3, 4});
  EXPECT_NO_THROW(ops::silu_forward(z({3, 4}), x));
  EXPECT_THROW(ops::silu_forward(z({4, 3}), x), Error);
  EXPECT_THROW(ops::silu_forward(z({3, 4}, DType::F64), x), Error);
  EXPECT_NO_THROW(ops::silu_backward(z({3, 4}), z({3, 4}), x));
  EXPECT_THROW(ops::silu_backward(z({3, 4}), z({3, 5}), x), Error);
  EXPECT_THROW(ops::silu_backward(z({12}), z({3, 4}), x), Error);
  EXPECT_THROW(ops::silu_backward(z({3, 4}), z({3, 4}, DType::F64), x), Error);
  Array xi = z({3, 4}, DType::I32);
  EXPECT_THROW(ops::silu_forward(z({3, 4}, DType::I32), xi), Error);
}

// ---------------------------------------------------------------------------------------------
// Per-channel scaling: y = x g

class ChannelScaleShapes : public ::testing::TestWithParam<std::pair<int64_t, int64_t>> {};

TEST_P(ChannelScaleShapes, GradientsMatchFiniteDifferences) {
  const auto [R, d] = GetParam();
  Rng rng(R * 7 + d);
  Array x = random_array(DType::F64, {R, d}, rng), g = random_array(DType::F64, {d}, rng);
  Array w = random_array(DType::F64, {R, d}, rng);  // loss = <y, w>
  Array y = Array::empty(DType::F64, {R, d});
  auto loss = [&] {  // the oracle's forward: each implementation's backward is checked on it
    ops::channel_scale_forward(y, x, g, Impl::Ref);
    return dot(y, w);
  };
  for (Impl impl : kImpls) {
    Array dx = nan_array(DType::F64, {R, d}), dg = Array::zeros(DType::F64, {d});
    ops::channel_scale_backward(dx, dg, w, x, g, impl);
    EXPECT_LT(grad_check(x, dx, loss, 300), 1e-6) << name(impl) << " dx";
    EXPECT_LT(grad_check(g, dg, loss), 1e-6) << name(impl) << " dg";
  }
}

TEST_P(ChannelScaleShapes, FastMatchesReferenceInFloat) {
  const auto [R, d] = GetParam();
  Rng rng(R + 3 * d);
  Array x = random_array(DType::F32, {R, d}, rng), g = random_array(DType::F32, {d}, rng);
  Array dy = random_array(DType::F32, {R, d}, rng), dg0 = random_array(DType::F32, {d}, rng);
  Array y[2], dx[2], dg[2];
  for (int i = 0; i < 2; ++i) {
    y[i] = nan_array(DType::F32, {R, d});
    dx[i] = nan_array(DType::F32, {R, d});
    dg[i] = copy_of(dg0);  // dg accumulates onto what it held
    ops::channel_scale_forward(y[i], x, g, kImpls[i]);
    ops::channel_scale_backward(dx[i], dg[i], dy, x, g, kImpls[i]);
  }
  EXPECT_EQ(max_abs_diff(y[0], y[1]), 0.0);  // one rounded product either way
  EXPECT_EQ(max_abs_diff(dx[0], dx[1]), 0.0);
  EXPECT_LT(rel_err(dg[0], dg[1]), 1e-5);
  EXPECT_TRUE(all_finite(y[1]) && all_finite(dx[1]) && all_finite(dg[1]));
}

TEST_P(ChannelScaleShapes, GainGradientAccumulatesAndDxMayAliasDy) {
  const auto [R, d] = GetParam();
  Rng rng(R * 5 + d);
  Array x = random_array(DType::F64, {R, d}, rng), g = random_array(DType::F64, {d}, rng);
  Array dy = random_array(DType::F64, {R, d}, rng), dg0 = random_array(DType::F64, {d}, rng);
  for (Impl impl : kImpls) {
    Array dx = nan_array(DType::F64, {R, d}), dg = Array::zeros(DType::F64, {d});
    ops::channel_scale_backward(dx, dg, dy, x, g, impl);
    Array a = copy_of(dy), dga = copy_of(dg0);
    ops::channel_scale_backward(a, dga, a, x, g, impl);  // dx aliases dy
    EXPECT_EQ(max_abs_diff(a, dx), 0.0) << name(impl);
    const auto G = to_doubles(dg), G0 = to_doubles(dg0), GA = to_doubles(dga);
    double worst = 0;
    for (int64_t c = 0; c < d; ++c) worst = std::max(worst, std::fabs(GA[c] - (G0[c] + G[c])));
    EXPECT_LT(worst, 1e-12) << name(impl);
  }
}

// Odd sizes; 1100 x 65 passes the fast path's threshold for threads and its blocks of 64 rows.
INSTANTIATE_TEST_SUITE_P(
    Shapes, ChannelScaleShapes,
    ::testing::Values(std::pair<int64_t, int64_t>{1, 1}, std::pair<int64_t, int64_t>{1, 33},
                      std::pair<int64_t, int64_t>{31, 1}, std::pair<int64_t, int64_t>{33, 31},
                      std::pair<int64_t, int64_t>{129, 33}, std::pair<int64_t, int64_t>{1100, 65}));

TEST(ChannelScale, ResultsDoNotDependOnThreadCount) {
  // dg is summed in fixed blocks of rows, whichever thread sums them.
  const int64_t R = 2000, d = 48;
  Rng rng(4);
  Array x = random_array(DType::F32, {R, d}, rng), g = random_array(DType::F32, {d}, rng);
  Array dy = random_array(DType::F32, {R, d}, rng);
  Array dx[2], dg[2];
  for (int t = 0; t < 2; ++t)
    with_threads(t ? 3 : 1, [&] {
      dx[t] = nan_array(DType::F32, {R, d});
      dg[t] = Array::zeros(DType::F32, {d});
      ops::channel_scale_backward(dx[t], dg[t], dy, x, g, Impl::Fast);
    });
  EXPECT_EQ(max_abs_diff(dx[0], dx[1]), 0.0);
  EXPECT_EQ(max_abs_diff(dg[0], dg[1]), 0.0);
}

TEST(ChannelScale, AcceptsLeadingDimensions) {
  Rng rng(2);
  Array x = random_array(DType::F32, {2, 3, 5}, rng), g = random_array(DType::F32, {5}, rng);
  Array y = nan_array(DType::F32, {2, 3, 5});
  ops::channel_scale_forward(y, x, g);
  const auto X = to_doubles(x), G = to_doubles(g), Y = to_doubles(y);
  for (int64_t i = 0; i < 30; ++i) EXPECT_EQ(Y[i], double(float(X[i] * G[i % 5])));
}

TEST(ChannelScale, RejectsBadArguments) {
  auto z = [](Shape s, DType dt = DType::F32) { return Array::zeros(dt, s); };
  Array x = z({3, 4}), g = z({4});
  EXPECT_NO_THROW(ops::channel_scale_forward(z({3, 4}), x, g));
  EXPECT_THROW(ops::channel_scale_forward(z({3, 4}), x, z({3})), Error);
  EXPECT_THROW(ops::channel_scale_forward(z({4, 3}), x, g), Error);
  EXPECT_THROW(ops::channel_scale_forward(z({3, 4}), x, z({4}, DType::F64)), Error);
  EXPECT_NO_THROW(ops::channel_scale_backward(z({3, 4}), z({4}), z({3, 4}), x, g));
  EXPECT_THROW(ops::channel_scale_backward(z({3, 4}), z({5}), z({3, 4}), x, g), Error);
  EXPECT_THROW(ops::channel_scale_backward(z({3, 4}), z({4}), z({2, 4}), x, g), Error);
  EXPECT_THROW(ops::channel_scale_backward(z({12}), z({4}), z({3, 4}), x, g), Error);
  EXPECT_THROW(ops::channel_scale_backward(z({3, 4}), z({4}, DType::F64), z({3, 4}), x, g), Error);
}

// ---------------------------------------------------------------------------------------------
// Dropout: y = x keep(seed, i) / (1 - p)

// The kept mask of y (y_i != 0; inputs are drawn nonzero).
std::vector<bool> kept(const Tensor& y) {
  const auto v = to_doubles(y);
  std::vector<bool> m(v.size());
  for (size_t i = 0; i < v.size(); ++i) m[i] = v[i] != 0;
  return m;
}

// An array of normal values with no exact zeros (so a zero output means a dropped element).
Array nonzero_array(DType dt, Shape s, uint64_t seed, double mean = 0) {
  Rng rng(seed);
  Array a = random_array(dt, s, rng);
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (dt == DType::F32) {
      float& v = a.data<float>()[i];
      v += float(mean);
      if (v == 0) v = 1;
    } else {
      double& v = a.data<double>()[i];
      v += mean;
      if (v == 0) v = 1;
    }
  }
  return a;
}

constexpr int64_t kBig = int64_t(1) << 20;  // elements of the statistical tests

TEST(Dropout, KeptFractionIsOneMinusP) {
  // The count of kept elements is Binomial(n, 1 - p) when the hash behaves like independent
  // uniform draws: mean n (1 - p), standard deviation sqrt(n p (1 - p)); allow 5 of them.
  Array x = nonzero_array(DType::F32, {kBig}, 1);
  for (double p : {0.01, 0.1, 0.3, 0.5, 0.9})
    for (Impl impl : kImpls) {
      Array y = nan_array(DType::F32, {kBig});
      ops::dropout_forward(y, x, p, 42, impl);
      const auto m = kept(y);
      int64_t count = 0;
      for (bool b : m) count += b;
      const double n = double(kBig), sd = std::sqrt(n * p * (1 - p));
      EXPECT_LT(std::fabs(double(count) - n * (1 - p)), 5 * sd) << name(impl) << " p=" << p;
      // Kept values are x / (1 - p), to float rounding.
      const float *X = x.data<float>(), *Y = y.data<float>();
      double worst = 0;
      for (int64_t i = 0; i < kBig; ++i)
        if (m[i]) worst = std::max(worst, std::fabs(Y[i] * (1 - p) / X[i] - 1));
      EXPECT_LT(worst, 2e-7) << name(impl) << " p=" << p;
    }
}

TEST(Dropout, NeighboursAreIndependent) {
  // Pairs (i, i + 1) both kept, if the mask bits are independent with k = 1 - p: each pair with
  // probability q = k^2; overlapping pairs share a bit (covariance k^3 - k^4), so the count has
  // mean n q and variance n (q (1 - q) + 2 (k^3 - k^4)). Allow 5 standard deviations.
  const double p = 0.5, k = 1 - p;
  Array x = nonzero_array(DType::F64, {kBig}, 2), y = Array::empty(DType::F64, {kBig});
  ops::dropout_forward(y, x, p, 7);
  const auto m = kept(y);
  int64_t both = 0;
  for (int64_t i = 0; i + 1 < kBig; ++i) both += m[i] && m[i + 1];
  const double n = double(kBig - 1), q = k * k;
  const double var = n * (q * (1 - q) + 2 * (k * k * k - q * q));
  EXPECT_LT(std::fabs(double(both) - n * q), 5 * std::sqrt(var));
}

TEST(Dropout, SeedDeterminesTheMask) {
  // The same seed gives the same mask (on a fresh call, from either implementation); another
  // seed disagrees on a fraction 2 p (1 - p) of elements (Binomial, 5 standard deviations).
  const double p = 0.3;
  Array x = nonzero_array(DType::F32, {kBig}, 3);
  Array a = Array::empty(DType::F32, {kBig}), b = Array::empty(DType::F32, {kBig});
  Array c = Array::empty(DType::F32, {kBig});
  ops::dropout_forward(a, x, p, 1234, Impl::Fast);
  ops::dropout_forward(b, x, p, 1234, Impl::Fast);
  EXPECT_EQ(max_abs_diff(a, b), 0.0);
  for (uint64_t other : {uint64_t(1235), uint64_t(0), ~uint64_t(1234)}) {
    ops::dropout_forward(c, x, p, other, Impl::Fast);
    const auto ma = kept(a), mc = kept(c);
    int64_t differ = 0;
    for (int64_t i = 0; i < kBig; ++i) differ += ma[i] != mc[i];
    const double n = double(kBig), q = 2 * p * (1 - p);
    EXPECT_LT(std::fabs(double(differ) - n * q), 5 * std::sqrt(n * q * (1 - q))) << other;
  }
}

TEST(Dropout, FastMatchesReference) {
  // Identical masks; values agree to float rounding.
  for (DType dt : {DType::F32, DType::F64})
    for (int64_t n : {int64_t(1), int64_t(31), int64_t(129), int64_t(100003)}) {
      Array x = nonzero_array(dt, {n}, 5);
      Array y[2] = {nan_array(dt, {n}), nan_array(dt, {n})};
      for (int i = 0; i < 2; ++i) ops::dropout_forward(y[i], x, 0.25, 99, kImpls[i]);
      EXPECT_TRUE(kept(y[0]) == kept(y[1])) << n;
      EXPECT_LT(rel_err(y[0], y[1]), dt == DType::F32 ? 1e-7 : 1e-15) << n;
      EXPECT_TRUE(all_finite(y[1]));
    }
}

TEST(Dropout, BackwardAppliesTheSameMask) {
  // dx = dy keep / (1 - p) = dy * y / x elementwise, with the same seed.
  const int64_t n = 100003;
  const double p = 0.4;
  Array x = nonzero_array(DType::F64, {n}, 6), dy = nonzero_array(DType::F64, {n}, 7);
  for (Impl impl : kImpls) {
    Array y = nan_array(DType::F64, {n}), dx = nan_array(DType::F64, {n});
    ops::dropout_forward(y, x, p, 555, impl);
    ops::dropout_backward(dx, dy, p, 555, impl);
    const double *X = x.data<double>(), *Y = y.data<double>(), *DY = dy.data<double>(),
                 *DX = dx.data<double>();
    double worst = 0;
    for (int64_t i = 0; i < n; ++i)
      worst = std::max(worst, std::fabs(DX[i] - DY[i] * Y[i] / X[i]) / (1 + std::fabs(DX[i])));
    EXPECT_LT(worst, 1e-15) << name(impl);
    EXPECT_TRUE(kept(dx) == kept(y)) << name(impl);
    // And it is the gradient of <y, dy> (linear in x for a fixed mask).
    Array small = nonzero_array(DType::F64, {33, 31}, 8),
          w = nonzero_array(DType::F64, {33, 31}, 9);
    Array ys = Array::empty(DType::F64, {33, 31}), dxs = nan_array(DType::F64, {33, 31});
    auto loss = [&] {
      ops::dropout_forward(ys, small, p, 17, impl);
      return dot(ys, w);
    };
    ops::dropout_backward(dxs, w, p, 17, impl);
    EXPECT_LT(grad_check(small, dxs, loss), 1e-6) << name(impl);
  }
}

TEST(Dropout, PreservesTheExpectation) {
  // Given x, mean(y) - mean(x) = (1/n) sum_i x_i (keep_i / (1 - p) - 1): mean zero, variance
  // (p / (1 - p)) sum_i x_i^2 / n^2. Allow 5 standard deviations. x has mean 1, so that a
  // missing 1 / (1 - p) would be caught many times over.
  Array x = nonzero_array(DType::F64, {kBig}, 10, 1.0);
  for (double p : {0.1, 0.5, 0.8})
    for (Impl impl : kImpls) {
      Array y = Array::empty(DType::F64, {kBig});
      ops::dropout_forward(y, x, p, 2024, impl);
      const double *X = x.data<double>(), *Y = y.data<double>();
      double sx = 0, sy = 0, sxx = 0;
      for (int64_t i = 0; i < kBig; ++i) sx += X[i], sy += Y[i], sxx += X[i] * X[i];
      const double n = double(kBig), sd = std::sqrt(p / (1 - p) * sxx) / n;
      EXPECT_LT(std::fabs(sy / n - sx / n), 5 * sd) << name(impl) << " p=" << p;
      EXPECT_LT(5 * sd, 0.05) << "the bound is too loose to catch a missing 1 / (1 - p)";
    }
}

TEST(Dropout, ZeroRateIsIdentityAndInPlaceWorks) {
  for (DType dt : {DType::F32, DType::F64})
    for (Impl impl : kImpls) {
      const int64_t n = 1000;
      Array x = nonzero_array(dt, {n}, 11), y = nan_array(dt, {n}), dx = nan_array(dt, {n});
      ops::dropout_forward(y, x, 0.0, 3, impl);
      ops::dropout_backward(dx, x, 0.0, 3, impl);
      EXPECT_EQ(max_abs_diff(y, x), 0.0) << name(impl);
      EXPECT_EQ(max_abs_diff(dx, x), 0.0) << name(impl);
      for (double p : {0.0, 0.3}) {  // y aliases x (and dx aliases dy): same result
        Array out = nan_array(dt, {n}), a = copy_of(x), ga = copy_of(x), g = nan_array(dt, {n});
        ops::dropout_forward(out, x, p, 8, impl);
        ops::dropout_forward(a, a, p, 8, impl);
        ops::dropout_backward(g, x, p, 8, impl);
        ops::dropout_backward(ga, ga, p, 8, impl);
        EXPECT_EQ(max_abs_diff(a, out), 0.0) << name(impl) << " p=" << p;
        EXPECT_EQ(max_abs_diff(ga, g), 0.0) << name(impl) << " p=" << p;
      }
    }
}

TEST(Dropout, ResultsDoNotDependOnThreadCount) {
  Array x = nonzero_array(DType::F32, {kBig / 4}, 12);
  Array y[2];
  for (int t = 0; t < 2; ++t)
    with_threads(t ? 3 : 1, [&] {
      y[t] = nan_array(DType::F32, x.shape());
      ops::dropout_forward(y[t], x, 0.2, 77, Impl::Fast);
    });
  EXPECT_EQ(max_abs_diff(y[0], y[1]), 0.0);
}

TEST(Dropout, KeepIsAThresholdOnTheHash) {
  // The mask of the op is dropout_keep(seed, index, p), the function attention's dropout uses.
  const int64_t n = 4097;
  Array x = nonzero_array(DType::F64, {n}, 13), y = Array::empty(DType::F64, {n});
  ops::dropout_forward(y, x, 0.35, 31, Impl::Fast);
  const auto m = kept(y);
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += m[i] != ops::dropout_keep(31, uint64_t(i), 0.35);
  EXPECT_EQ(bad, 0);
  EXPECT_NE(ops::dropout_hash(0, 0), ops::dropout_hash(0, 1));
  EXPECT_NE(ops::dropout_hash(0, 1), ops::dropout_hash(1, 0));
  EXPECT_TRUE(ops::dropout_keep(5, 6, 0.0));  // p = 0 keeps everything
}

TEST(Dropout, RejectsBadArguments) {
  auto z = [](Shape s, DType dt = DType::F32) { return Array::zeros(dt, s); };
  Array x = z({3, 4});
  EXPECT_NO_THROW(ops::dropout_forward(z({3, 4}), x, 0.5, 1));
  EXPECT_THROW(ops::dropout_forward(z({3, 4}), x, 1.0, 1), Error);
  EXPECT_THROW(ops::dropout_forward(z({3, 4}), x, -0.1, 1), Error);
  EXPECT_THROW(ops::dropout_forward(z({3, 4}), x, std::nan(""), 1), Error);
  EXPECT_THROW(ops::dropout_forward(z({4, 3}), x, 0.5, 1), Error);
  EXPECT_THROW(ops::dropout_forward(z({3, 4}, DType::F64), x, 0.5, 1), Error);
  EXPECT_NO_THROW(ops::dropout_backward(z({3, 4}), x, 0.5, 1));
  EXPECT_THROW(ops::dropout_backward(z({3, 4}), x, 1.0, 1), Error);
  EXPECT_THROW(ops::dropout_backward(z({3, 4}), x, -1e-9, 1), Error);
  EXPECT_THROW(ops::dropout_backward(z({12}), x, 0.5, 1), Error);
}

}  // namespace
