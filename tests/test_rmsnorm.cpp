// RMSNorm: finite-difference gradients (double), fast CPU path against the oracle (float).
#include <gtest/gtest.h>

#include "fela/ops/rmsnorm.h"
#include "test_util.h"

using namespace fela;
using namespace fela::test;

class RmsNormShapes : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(RmsNormShapes, GradientsMatchFiniteDifferences) {
  const auto [R, d] = GetParam();
  Rng rng(R * 131 + d);
  Array x = random_array(DType::F64, {R, d}, rng), g = random_array(DType::F64, {d}, rng);
  Array w = random_array(DType::F64, {R, d}, rng);  // loss = <y, w>
  Array y = Array::empty(DType::F64, {R, d}), rstd = Array::empty(DType::F64, {R});
  auto loss = [&] {
    ops::rmsnorm_forward(y, rstd, x, g, 1e-6, ops::Impl::Ref);
    return dot(y, w);
  };
  for (auto impl : {ops::Impl::Ref, ops::Impl::Fast}) {
    loss();
    Array dx = Array::empty(DType::F64, {R, d}), dg = Array::zeros(DType::F64, {d});
    ops::rmsnorm_backward(dx, dg, w, x, g, rstd, impl);
    EXPECT_LT(grad_check(x, dx, loss), 1e-6);
    EXPECT_LT(grad_check(g, dg, loss), 1e-6);
  }
}

TEST_P(RmsNormShapes, FastMatchesReferenceInFloat) {
  const auto [R, d] = GetParam();
  Rng rng(R + d);
  Array x = random_array(DType::F32, {R, d}, rng), g = random_array(DType::F32, {d}, rng);
  Array dy = random_array(DType::F32, {R, d}, rng);
  Array y[2], rstd[2], dx[2], dg[2];
  for (int k = 0; k < 2; ++k) {
    auto impl = k ? ops::Impl::Fast : ops::Impl::Ref;
    y[k] = Array::empty(DType::F32, {R, d});
    rstd[k] = Array::empty(DType::F32, {R});
    dx[k] = Array::empty(DType::F32, {R, d});
    dg[k] = Array::zeros(DType::F32, {d});
    ops::rmsnorm_forward(y[k], rstd[k], x, g, 1e-6, impl);
    ops::rmsnorm_backward(dx[k], dg[k], dy, x, g, rstd[k], impl);
  }
  EXPECT_LT(rel_err(y[0], y[1]), 1e-6);
  EXPECT_LT(rel_err(dx[0], dx[1]), 1e-5);
  EXPECT_LT(rel_err(dg[0], dg[1]), 1e-5);
  EXPECT_TRUE(all_finite(dx[1]));
}

INSTANTIATE_TEST_SUITE_P(Shapes, RmsNormShapes,
                         ::testing::Values(std::pair{1, 2}, std::pair{1, 33}, std::pair{7, 31},
                                           std::pair{129, 64}));

TEST(RmsNorm, RejectsMismatchedShapes) {
  Array x = Array::zeros(DType::F32, {3, 4}), g = Array::zeros(DType::F32, {5});
  Array y = Array::empty(DType::F32, {3, 4}), rstd = Array::empty(DType::F32, {3});
  EXPECT_THROW(ops::rmsnorm_forward(y, rstd, x, g, 1e-6), Error);
}

// GradMode::Add adds exactly what Write writes (in double, both implementations), also when dx
// aliases dy; the residual form is the sum followed by the norm of the stored sum.
TEST(RmsNorm, AddModeAndResidualForm) {
  Rng rng(7);
  const int64_t R = 9, d = 24;
  Array x = random_array(DType::F64, {R, d}, rng), g = random_array(DType::F64, {d}, rng);
  Array dy = random_array(DType::F64, {R, d}, rng), dx0 = random_array(DType::F64, {R, d}, rng);
  Array y = Array::empty(DType::F64, {R, d}), rstd = Array::empty(DType::F64, {R});
  ops::rmsnorm_forward(y, rstd, x, g, 1e-6, ops::Impl::Ref);
  for (auto impl : {ops::Impl::Ref, ops::Impl::Fast}) {
    Array written = Array::empty(DType::F64, {R, d}), dg = Array::zeros(DType::F64, {d});
    ops::rmsnorm_backward(written, dg, dy, x, g, rstd, impl);
    Array added = copy_of(dx0), dg2 = Array::zeros(DType::F64, {d});
    ops::rmsnorm_backward(added, dg2, dy, x, g, rstd, impl, ops::GradMode::Add);
    Array in_place = copy_of(dy), dg3 = Array::zeros(DType::F64, {d});
    ops::rmsnorm_backward(in_place, dg3, in_place, x, g, rstd, impl, ops::GradMode::Add);
    for (int64_t i = 0; i < R * d; ++i) {
      EXPECT_NEAR(added.data<double>()[i], dx0.data<double>()[i] + written.data<double>()[i],
                  1e-12);
      EXPECT_NEAR(in_place.data<double>()[i], dy.data<double>()[i] + written.data<double>()[i],
                  1e-12);
    }
    EXPECT_EQ(max_abs_diff(dg, dg2), 0.0);
    EXPECT_EQ(max_abs_diff(dg, dg3), 0.0);
  }
  Array b = random_array(DType::F64, {R, d}, rng), s = Array::empty(DType::F64, {R, d});
  Array y2 = Array::empty(DType::F64, {R, d}), rstd2 = Array::empty(DType::F64, {R});
  ops::add_rmsnorm_forward(s, y2, rstd2, x, b, g, 1e-6);
  for (int64_t i = 0; i < R * d; ++i)
    EXPECT_EQ(s.data<double>()[i], x.data<double>()[i] + b.data<double>()[i]);
  Array y3 = Array::empty(DType::F64, {R, d}), rstd3 = Array::empty(DType::F64, {R});
  ops::rmsnorm_forward(y3, rstd3, s, g, 1e-6, ops::Impl::Ref);
  EXPECT_LT(max_abs_diff(y2, y3), 1e-12);
  EXPECT_LT(max_abs_diff(rstd2, rstd3), 1e-12);
  EXPECT_THROW(ops::add_rmsnorm_forward(s, y2, rstd2, x, Array::zeros(DType::F64, {R, d + 1}), g,
                                        1e-6),
               Error);
}
