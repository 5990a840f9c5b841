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
