// Linear, embedding, SwiGLU, cross-entropy, decay gate and residual add: finite-difference
// gradients in double for both implementations, and Fast against Ref in float.
#include <gtest/gtest.h>

#include <cmath>

#include "fela/ops/add.h"
#include "fela/ops/cross_entropy.h"
#include "fela/ops/decay_gate.h"
#include "fela/ops/embedding.h"
#include "fela/ops/linear.h"
#include "fela/ops/swiglu.h"
#include "test_util.h"

using namespace fela;
using namespace fela::test;
using ops::Impl;

namespace {
constexpr double kGradTol = 1e-6;
const Impl kImpls[] = {Impl::Ref, Impl::Fast};

Array random_targets(int64_t R, int64_t V, Rng& rng, bool with_ignored = false) {
  Array t = Array::empty(DType::I32, {R});
  for (int64_t r = 0; r < R; ++r)
    t.data<int32_t>()[r] = (with_ignored && r % 5 == 3) ? -1 : int32_t(rng.below(V));
  return t;
}
}  // namespace

class LinearShapes : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

TEST_P(LinearShapes, Gradients) {
  const auto [R, in, out] = GetParam();
  for (auto layout : {ops::Layout::InOut, ops::Layout::OutIn}) {
    Rng rng(R * 7 + in * 3 + out);
    const Shape ws = layout == ops::Layout::InOut ? Shape{in, out} : Shape{out, in};
    Array x = random_array(DType::F64, {R, in}, rng), w = random_array(DType::F64, ws, rng);
    Array wy = random_array(DType::F64, {R, out}, rng), y = Array::empty(DType::F64, {R, out});
    auto loss = [&] {
      ops::linear_forward(y, x, w, layout, Impl::Ref);
      return dot(y, wy);
    };
    for (Impl impl : kImpls) {
      Array dx = random_array(DType::F64, {R, in}, rng), dw = Array::zeros(DType::F64, ws);
      Array dx0 = Array::empty(DType::F64, {R, in});
      std::copy(dx.data<double>(), dx.data<double>() + dx.numel(), dx0.data<double>());
      ops::linear_backward(dx, dw, wy, x, w, layout, ops::GradMode::Add, impl);
      for (int64_t i = 0; i < dx.numel(); ++i) dx.data<double>()[i] -= dx0.data<double>()[i];
      EXPECT_LT(grad_check(x, dx, loss), kGradTol);
      EXPECT_LT(grad_check(w, dw, loss), kGradTol);
      Array dx_w = Array::empty(DType::F64, {R, in});
      ops::linear_backward(dx_w, Tensor(), wy, x, w, layout, ops::GradMode::Write, impl);
      EXPECT_LT(rel_err(dx_w, dx), 1e-12);
    }
  }
}

TEST_P(LinearShapes, FastMatchesReference) {
  const auto [R, in, out] = GetParam();
  Rng rng(R + in + out);
  Array x = random_array(DType::F32, {R, in}, rng), w = random_array(DType::F32, {in, out}, rng);
  Array y0 = Array::empty(DType::F32, {R, out}), y1 = Array::empty(DType::F32, {R, out});
  ops::linear_forward(y0, x, w, ops::Layout::InOut, Impl::Ref);
  ops::linear_forward(y1, x, w, ops::Layout::InOut, Impl::Fast);
  EXPECT_LT(rel_err(y0, y1), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Shapes, LinearShapes,
                         ::testing::Values(std::tuple{1, 1, 1}, std::tuple{1, 7, 3},
                                           std::tuple{5, 4, 9}, std::tuple{33, 6, 5}));

TEST(Embedding, GradientsAndRepeatedTokens) {
  Rng rng(3);
  const int64_t V = 7, d = 5, R = 31;  // R > V: tokens repeat
  Array E = random_array(DType::F64, {V, d}, rng), tok = random_targets(R, V, rng);
  Array w = random_array(DType::F64, {R, d}, rng), h = Array::empty(DType::F64, {R, d});
  auto loss = [&] {
    ops::embedding_forward(h, tok, E, Impl::Ref);
    return dot(h, w);
  };
  for (Impl impl : kImpls) {
    Array dE = Array::zeros(DType::F64, {V, d});
    ops::embedding_backward(dE, w, tok, impl);
    EXPECT_LT(grad_check(E, dE, loss), kGradTol);
    Array h1 = Array::empty(DType::F64, {R, d});
    ops::embedding_forward(h1, tok, E, impl);
    loss();
    EXPECT_EQ(max_abs_diff(h, h1), 0.0);
  }
}

TEST(Embedding, RejectsOutOfRangeToken) {
  Array E = Array::zeros(DType::F32, {4, 2}), tok = Array::zeros(DType::I32, {3});
  Array h = Array::empty(DType::F32, {3, 2});
  tok.data<int32_t>()[1] = 4;
  EXPECT_THROW(ops::embedding_forward(h, tok, E), Error);
  tok.data<int32_t>()[1] = -1;
  EXPECT_THROW(ops::embedding_forward(h, tok, E), Error);
}

TEST(SwiGlu, Gradients) {
  for (int64_t n : {1, 33, 129}) {
    Rng rng(n);
    Array a = random_array(DType::F64, {n}, rng, 3.0), b = random_array(DType::F64, {n}, rng);
    Array w = random_array(DType::F64, {n}, rng), y = Array::empty(DType::F64, {n});
    auto loss = [&] {
      ops::swiglu_forward(y, a, b, Impl::Ref);
      return dot(y, w);
    };
    for (Impl impl : kImpls) {
      Array da = Array::empty(DType::F64, {n}), db = Array::empty(DType::F64, {n});
      ops::swiglu_backward(da, db, w, a, b, impl);
      EXPECT_LT(grad_check(a, da, loss), kGradTol);
      EXPECT_LT(grad_check(b, db, loss), kGradTol);
    }
  }
}

TEST(SwiGlu, FastMatchesReferenceAndExtremes) {
  Rng rng(5);
  const int64_t n = 1000;
  Array a = random_array(DType::F32, {n}, rng, 30.0), b = random_array(DType::F32, {n}, rng);
  a.data<float>()[0] = -100.f;  // exp(100) overflows float: silu must still be finite
  a.data<float>()[1] = 100.f;
  Array y0 = Array::empty(DType::F32, {n}), y1 = Array::empty(DType::F32, {n});
  ops::swiglu_forward(y0, a, b, Impl::Ref);
  ops::swiglu_forward(y1, a, b, Impl::Fast);
  EXPECT_LT(rel_err(y0, y1), 1e-6);
  EXPECT_TRUE(all_finite(y1));
  Array da = Array::empty(DType::F32, {n}), db = Array::empty(DType::F32, {n});
  ops::swiglu_backward(da, db, b, a, b, Impl::Fast);
  EXPECT_TRUE(all_finite(da));
  EXPECT_TRUE(all_finite(db));
}

TEST(CrossEntropy, GradientsWithIgnoredRows) {
  Rng rng(11);
  for (auto [R, V] : {std::pair{1, 2}, std::pair{7, 5}, std::pair{13, 33}}) {
    Array logits = random_array(DType::F64, {R, V}, rng, 2.0);
    Array tok = random_targets(R, V, rng, true), loss = Array::empty(DType::F64, {R});
    auto total = [&] {
      ops::cross_entropy_forward(loss, logits, tok, Impl::Ref);
      double s = 0;
      for (int64_t r = 0; r < R; ++r) s += loss.data<double>()[r];
      return s * 0.3;
    };
    for (Impl impl : kImpls) {
      Array g = Array::empty(DType::F64, {R, V});
      ops::cross_entropy_backward(g, logits, tok, 0.3, impl);
      EXPECT_LT(grad_check(logits, g, total), kGradTol);
      Array l1 = Array::empty(DType::F64, {R});
      ops::cross_entropy_forward(l1, logits, tok, impl);
      total();
      EXPECT_LT(max_abs_diff(l1, loss), 1e-12);
    }
  }
}

TEST(CrossEntropy, LargeLogitsStayFiniteAndAliasingWorks) {
  const int64_t R = 3, V = 50257;
  Rng rng(2);
  Array logits = random_array(DType::F32, {R, V}, rng, 50.0), tok = random_targets(R, V, rng);
  Array l0 = Array::empty(DType::F32, {R}), l1 = Array::empty(DType::F32, {R});
  ops::cross_entropy_forward(l0, logits, tok, Impl::Ref);
  ops::cross_entropy_forward(l1, logits, tok, Impl::Fast);
  EXPECT_TRUE(all_finite(l1));
  EXPECT_LT(rel_err(l0, l1), 1e-6);
  Array g = Array::empty(DType::F32, {R, V}), l2 = Array::empty(DType::F32, {R});
  ops::cross_entropy_backward(g, logits, tok, 1.0, Impl::Ref);
  ops::cross_entropy_forward_backward(l2, logits, logits, tok, 1.0, Impl::Fast);  // in place
  EXPECT_EQ(max_abs_diff(l1, l2), 0.0);
  EXPECT_LT(rel_err(g, logits), 1e-5);
  // each row of softmax - onehot sums to zero
  for (int64_t r = 0; r < R; ++r) {
    double s = 0;
    for (int64_t v = 0; v < V; ++v) s += logits.data<float>()[r * V + v];
    EXPECT_NEAR(s, 0.0, 1e-4);
  }
}

TEST(DecayGate, GradientsAndRange) {
  Rng rng(4);
  const int64_t R = 9, n = 6;
  Array x = random_array(DType::F64, {R, n}, rng, 4.0), b = random_array(DType::F64, {n}, rng);
  Array w = random_array(DType::F64, {R, n}, rng), a = Array::empty(DType::F64, {R, n});
  auto loss = [&] {
    ops::decay_gate_forward(a, x, b, 16.0, Impl::Ref);
    return dot(a, w);
  };
  for (Impl impl : kImpls) {
    Array dx = Array::empty(DType::F64, {R, n}), db = Array::zeros(DType::F64, {n});
    ops::decay_gate_backward(dx, db, w, x, b, 16.0, impl);
    EXPECT_LT(grad_check(x, dx, loss), kGradTol);
    EXPECT_LT(grad_check(b, db, loss), kGradTol);
  }
  Array big = Array::zeros(DType::F32, {1, 2}), bb = Array::zeros(DType::F32, {2});
  big.data<float>()[0] = -200.f;
  big.data<float>()[1] = 200.f;
  Array out = Array::empty(DType::F32, {1, 2});
  ops::decay_gate_forward(out, big, bb, 16.0);
  EXPECT_NEAR(out.data<float>()[0], -200.0 / 16, 1e-4);
  EXPECT_LE(out.data<float>()[1], 0.f);
  EXPECT_TRUE(all_finite(out));
}

TEST(Add, MatchesReference) {
  Rng rng(1);
  Array y0 = random_array(DType::F32, {33}, rng), x = random_array(DType::F32, {33}, rng);
  Array y1 = Array::empty(DType::F32, {33});
  std::copy(y0.data<float>(), y0.data<float>() + 33, y1.data<float>());
  ops::add_inplace(y0, x, Impl::Ref);
  ops::add_inplace(y1, x, Impl::Fast);
  EXPECT_EQ(max_abs_diff(y0, y1), 0.0);
  EXPECT_THROW(ops::add_inplace(y0, Array::zeros(DType::F32, {32})), Error);
  // Out of place, and with y aliasing either input.
  Array a = random_array(DType::F64, {33}, rng), b = random_array(DType::F64, {33}, rng);
  Array sum = Array::empty(DType::F64, {33}), into_a = copy_of(a), into_b = copy_of(b);
  ops::add(sum, a, b);
  ops::add(into_a, into_a, b);
  ops::add(into_b, a, into_b, Impl::Ref);
  for (int64_t i = 0; i < 33; ++i)
    EXPECT_EQ(sum.data<double>()[i], a.data<double>()[i] + b.data<double>()[i]);
  EXPECT_EQ(max_abs_diff(sum, into_a), 0.0);
  EXPECT_EQ(max_abs_diff(sum, into_b), 0.0);
  EXPECT_THROW(ops::add(sum, a, Array::zeros(DType::F64, {32})), Error);
}
