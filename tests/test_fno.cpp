// FNO mixer core: the spectral filter against hand-computed numpy irfft values and finite
// differences; the convolution's gradients by finite differences (double) for Ref and for the
// Fast path with both methods, on awkward shapes; Fft = Direct = Ref in float; generation
// (ring steps, ring loading after a prefill) against the full forward; bad arguments.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

#include "fela/ops/fno.h"
#include "test_util.h"

using namespace fela;
using namespace fela::test;
using ops::FirMethod;
using ops::Impl;

namespace {

// An array filled with one value (NaN marks outputs that must be written).
Array filled(DType dt, Shape s, double v) {
  Array a = Array::empty(dt, s);
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (dt == DType::F32)
      a.data<float>()[i] = float(v);
    else
      a.data<double>()[i] = v;
  }
  return a;
}

// x[:, t0:t1, :] of a [B, N, d] double array, as a contiguous [B, t1-t0, d] array.
Array time_slice(const Array& x, int64_t t0, int64_t t1) {
  const int64_t B = x.shape()[0], N = x.shape()[1], d = x.shape()[2];
  Array s = Array::empty(DType::F64, {B, t1 - t0, d});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t c = 0; c < d; ++c)
        s.data<double>()[(b * (t1 - t0) + t - t0) * d + c] = x.data<double>()[(b * N + t) * d + c];
  return s;
}

struct Path {
  Impl impl;
  FirMethod method;
  const char* name;
};
const Path kPaths[] = {{Impl::Ref, FirMethod::Auto, "ref"},
                       {Impl::Fast, FirMethod::Direct, "direct"},
                       {Impl::Fast, FirMethod::Fft, "fft"},
                       {Impl::Fast, FirMethod::Auto, "auto"}};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Filter

TEST(FnoFilter, MatchesNumpyIrfftByHand) {
  // M = 4, bins 0..2: irfft([a, b + ic, e]) = (a + 2b cos(pi j/2) - 2c sin(pi j/2) + e cos(pi j)) /
  // 4 with the imaginary parts of bins 0 and 2 ignored.
  for (Impl impl : {Impl::Ref, Impl::Fast}) {
    Array kr = Array::empty(DType::F64, {1, 3}), ki = Array::empty(DType::F64, {1, 3});
    const double re[3] = {1.0, 0.5, 0.25}, im[3] = {7.0, -1.0, 9.0};
    for (int k = 0; k < 3; ++k) kr.data<double>()[k] = re[k], ki.data<double>()[k] = im[k];
    Array f = Array::empty(DType::F64, {1, 4});
    ops::fno_filter_forward(f, kr, ki, impl);
    const double want[4] = {(1 + 1 + 0.25) / 4, (1 + 2 - 0.25) / 4, (1 - 1 + 0.25) / 4,
                            (1 - 2 - 0.25) / 4};
    for (int j = 0; j < 4; ++j) EXPECT_NEAR(f.data<double>()[j], want[j], 1e-14) << j;
  }
}

class FnoFilterShapes : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

TEST_P(FnoFilterShapes, GradientsMatchFiniteDifferences) {
  const auto [d, M, modes] = GetParam();
  Rng rng(d * 1000 + M * 10 + modes);
  Array kr = random_array(DType::F64, {d, modes}, rng),
        ki = random_array(DType::F64, {d, modes}, rng);
  Array w = random_array(DType::F64, {d, M}, rng);  // loss = <f, w>
  Array f = Array::empty(DType::F64, {d, M});
  for (Impl impl : {Impl::Ref, Impl::Fast}) {
    auto loss = [&] {
      ops::fno_filter_forward(f, kr, ki, impl);
      return dot(f, w);
    };
    Array dkr = Array::zeros(DType::F64, {d, modes}), dki = Array::zeros(DType::F64, {d, modes});
    ops::fno_filter_backward(dkr, dki, w, impl);
    EXPECT_LT(grad_check(kr, dkr, loss), 1e-6) << int(impl);
    EXPECT_LT(grad_check(ki, dki, loss), 1e-6) << int(impl);
    // The ignored imaginary parts get exactly zero gradient.
    for (int64_t c = 0; c < d; ++c) {
      EXPECT_EQ(dki.data<double>()[c * modes], 0.0);
      if (M % 2 == 0 && modes == M / 2 + 1) {
        EXPECT_EQ(dki.data<double>()[c * modes + M / 2], 0.0);
      }
    }
  }
}

TEST_P(FnoFilterShapes, FastMatchesReference) {
  const auto [d, M, modes] = GetParam();
  for (DType dt : {DType::F64, DType::F32}) {
    Rng rng(d + M + modes);
    Array kr = random_array(dt, {d, modes}, rng), ki = random_array(dt, {d, modes}, rng);
    Array df = random_array(dt, {d, M}, rng);
    Array f[2], dkr[2], dki[2];
    for (int k = 0; k < 2; ++k) {
      const Impl impl = k ? Impl::Fast : Impl::Ref;
      f[k] = filled(dt, {d, M}, NAN);
      dkr[k] = filled(dt, {d, modes}, 0.5);  // accumulation, not overwrite
      dki[k] = filled(dt, {d, modes}, 0.5);
      ops::fno_filter_forward(f[k], kr, ki, impl);
      ops::fno_filter_backward(dkr[k], dki[k], df, impl);
    }
    const double tol = dt == DType::F64 ? 1e-13 : 1e-6;  // float: rounding of an M-point FFT
    EXPECT_LT(rel_err(f[0], f[1]), tol);
    EXPECT_LT(rel_err(dkr[0], dkr[1]), tol);
    EXPECT_LT(rel_err(dki[0], dki[1]), tol);
    EXPECT_TRUE(all_finite(f[1]));
  }
}

// (d, M, modes): even and odd M, full and truncated modes, M = 1 and 2.
INSTANTIATE_TEST_SUITE_P(Shapes, FnoFilterShapes,
                         ::testing::Values(std::tuple{3, 8, 5}, std::tuple{2, 8, 3},
                                           std::tuple{3, 9, 5}, std::tuple{2, 7, 2},
                                           std::tuple{1, 1, 1}, std::tuple{2, 2, 2},
                                           std::tuple{5, 33, 17}, std::tuple{3, 32, 9}));

// ---------------------------------------------------------------------------------------------
// Convolution

class FnoConvShapes : public ::testing::TestWithParam<std::tuple<int, int, int, int>> {};

TEST_P(FnoConvShapes, GradientsMatchFiniteDifferences) {
  const auto [B, N, d, M] = GetParam();
  Rng rng(B * 7919 + N * 131 + d * 17 + M);
  Array u = random_array(DType::F64, {B, N, d}, rng), f = random_array(DType::F64, {d, M}, rng);
  Array skip = random_array(DType::F64, {d}, rng), w = random_array(DType::F64, {B, N, d}, rng);
  Array y = Array::empty(DType::F64, {B, N, d});
  for (const Path& p : kPaths) {
    auto loss = [&] {
      ops::fno_conv_forward(y, u, f, skip, p.impl, p.method);
      return dot(y, w);
    };
    Array du = filled(DType::F64, {B, N, d}, NAN);
    Array df = Array::zeros(DType::F64, {d, M}), dskip = Array::zeros(DType::F64, {d});
    ops::fno_conv_backward(du, df, dskip, w, u, f, skip, p.impl, p.method);
    EXPECT_LT(grad_check(u, du, loss), 1e-6) << p.name;
    EXPECT_LT(grad_check(f, df, loss), 1e-6) << p.name;
    EXPECT_LT(grad_check(skip, dskip, loss), 1e-6) << p.name;
  }
}

// (B, N, d, M): N = 1, N < M, N = M, N = 31 and 33 (the latter blocked by the FFT path), M = 1,
// d odd, B = 2.
INSTANTIATE_TEST_SUITE_P(Shapes, FnoConvShapes,
                         ::testing::Values(std::tuple{1, 1, 3, 4}, std::tuple{2, 1, 1, 1},
                                           std::tuple{2, 5, 3, 8}, std::tuple{1, 8, 5, 8},
                                           std::tuple{2, 31, 3, 7}, std::tuple{1, 33, 5, 4},
                                           std::tuple{2, 33, 17, 9}, std::tuple{1, 20, 3, 1},
                                           std::tuple{1, 70, 2, 3}));

class FnoConvFloat : public ::testing::TestWithParam<std::tuple<int, int, int, int>> {};

// Every path against Ref in float. Tolerance: norm-wise relative error 1e-5, a few times the
// rounding of float FFTs of these lengths (~1e-6) and of float sums of up to M terms.
TEST_P(FnoConvFloat, AllPathsMatchReference) {
  const auto [B, N, d, M] = GetParam();
  Rng rng(B + N + d + M);
  Array u = random_array(DType::F32, {B, N, d}, rng), f = random_array(DType::F32, {d, M}, rng);
  Array skip = random_array(DType::F32, {d}, rng), dy = random_array(DType::F32, {B, N, d}, rng);
  Array y[4], du[4], df[4], dskip[4];
  for (int k = 0; k < 4; ++k) {
    y[k] = filled(DType::F32, {B, N, d}, NAN);
    du[k] = filled(DType::F32, {B, N, d}, NAN);
    df[k] = filled(DType::F32, {d, M}, 0.5);  // accumulation, not overwrite
    dskip[k] = filled(DType::F32, {d}, 0.5);
    ops::fno_conv_forward(y[k], u, f, skip, kPaths[k].impl, kPaths[k].method);
    ops::fno_conv_backward(du[k], df[k], dskip[k], dy, u, f, skip, kPaths[k].impl,
                           kPaths[k].method);
  }
  for (int k = 1; k < 4; ++k) {
    EXPECT_LT(rel_err(y[0], y[k]), 1e-5) << kPaths[k].name;
    EXPECT_LT(rel_err(du[0], du[k]), 1e-5) << kPaths[k].name;
    EXPECT_LT(rel_err(df[0], df[k]), 1e-5) << kPaths[k].name;
    EXPECT_LT(rel_err(dskip[0], dskip[k]), 1e-5) << kPaths[k].name;
    EXPECT_TRUE(all_finite(y[k]) && all_finite(du[k]) && all_finite(df[k])) << kPaths[k].name;
  }
}

// (B, N, d, M): M > N, M < N, M = N, long sequences (one FFT block and many), d not a
// multiple of the 16-channel vector chunk, taps across the direct kernel's 128-tap blocks, and
// shapes big enough to run on several threads.
INSTANTIATE_TEST_SUITE_P(Shapes, FnoConvFloat,
                         ::testing::Values(std::tuple{2, 20, 7, 50}, std::tuple{2, 100, 17, 16},
                                           std::tuple{1, 64, 33, 64}, std::tuple{1, 1000, 8, 64},
                                           std::tuple{2, 1000, 5, 8}, std::tuple{1, 300, 40, 129},
                                           std::tuple{3, 257, 50, 300}));

TEST(FnoConv, AcceptsEmptyBatch) {
  Array u = Array::zeros(DType::F32, {0, 5, 3}), f = Array::zeros(DType::F32, {3, 4});
  Array skip = Array::zeros(DType::F32, {3}), y = Array::zeros(DType::F32, {0, 5, 3});
  EXPECT_NO_THROW(ops::fno_conv_forward(y, u, f, skip));
}

// ---------------------------------------------------------------------------------------------
// Generation

class FnoGeneration : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

// Steps from an empty ring, and steps after fno_ring_load of prefixes shorter and longer than
// the ring, reproduce the full forward token by token.
TEST_P(FnoGeneration, StepsReproduceForward) {
  const auto [B, d, M] = GetParam();
  const int64_t N = 3 * M + 5;
  Rng rng(B * 100 + d * 10 + M);
  Array u = random_array(DType::F64, {B, N, d}, rng), f = random_array(DType::F64, {d, M}, rng);
  Array skip = random_array(DType::F64, {d}, rng);
  Array y = Array::empty(DType::F64, {B, N, d});
  ops::fno_conv_forward(y, u, f, skip, Impl::Ref);
  for (int64_t prefix : {int64_t(0), int64_t(M / 2), int64_t(M - 1), int64_t(M + 3)}) {
    Array ring = Array::zeros(DType::F64, {B, M - 1, d});
    if (prefix > 0) ops::fno_ring_load(ring, time_slice(u, 0, prefix));
    for (int64_t t = prefix; t < N; ++t) {
      Array ut = time_slice(u, t, t + 1), yt = filled(DType::F64, {B, 1, d}, NAN);
      ops::fno_conv_step(yt.view().reshape({B, d}), ring, ut.view().reshape({B, d}), f, skip, t);
      EXPECT_LT(rel_err(yt, time_slice(y, t, t + 1)), 1e-13) << "prefix " << prefix << " t " << t;
    }
  }
}

// (B, d, M): M = 1 (no ring), M = 2 (one slot), longer filters, d odd, a multiple of 16 and
// above the step's 128-channel task width.
INSTANTIATE_TEST_SUITE_P(Shapes, FnoGeneration,
                         ::testing::Values(std::tuple{2, 5, 8}, std::tuple{1, 3, 1},
                                           std::tuple{2, 1, 2}, std::tuple{3, 33, 17},
                                           std::tuple{1, 32, 64}, std::tuple{2, 130, 20}));

// Big enough for the step to run on several threads; d = 201 leaves a ragged last chunk.
TEST(FnoGeneration, FloatStepMatchesForward) {
  const int64_t B = 2, d = 201, M = 170, N = 2 * M + 7;
  Rng rng(5);
  Array u = random_array(DType::F32, {B, N, d}, rng), f = random_array(DType::F32, {d, M}, rng);
  Array skip = random_array(DType::F32, {d}, rng), y = Array::empty(DType::F32, {B, N, d});
  ops::fno_conv_forward(y, u, f, skip, Impl::Ref);
  Array ring = Array::zeros(DType::F32, {B, M - 1, d});
  Array ut = Array::empty(DType::F32, {B, d}), yt = Array::empty(DType::F32, {B, d});
  Array ref = Array::empty(DType::F32, {B, d});
  for (int64_t t = 0; t < N; ++t) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < d; ++c) {
        ut.data<float>()[b * d + c] = u.data<float>()[(b * N + t) * d + c];
        ref.data<float>()[b * d + c] = y.data<float>()[(b * N + t) * d + c];
      }
    ops::fno_conv_step(yt, ring, ut, f, skip, t);
    EXPECT_LT(rel_err(yt, ref), 1e-6) << t;
  }
}

// ---------------------------------------------------------------------------------------------
// Bad arguments

TEST(FnoBadArguments, Throw) {
  const DType F = DType::F32;
  Array kr = Array::zeros(F, {4, 5}), ki = Array::zeros(F, {4, 5}), f = Array::zeros(F, {4, 8});
  Array u = Array::zeros(F, {2, 6, 4}), y = Array::zeros(F, {2, 6, 4}), skip = Array::zeros(F, {4});
  // Filter: modes > M/2+1, k_im shape, M = 0, mixed dtypes.
  EXPECT_THROW(ops::fno_filter_forward(Array::zeros(F, {4, 6}), kr, ki), Error);
  EXPECT_THROW(ops::fno_filter_forward(f, kr, Array::zeros(F, {4, 4})), Error);
  EXPECT_THROW(ops::fno_filter_forward(Array::zeros(F, {4, 0}), Array::zeros(F, {4, 1}),
                                       Array::zeros(F, {4, 1})),
               Error);
  EXPECT_THROW(ops::fno_filter_forward(f, kr, Array::zeros(DType::F64, {4, 5})), Error);
  EXPECT_THROW(ops::fno_filter_backward(kr, ki, Array::zeros(F, {3, 8})), Error);
  EXPECT_THROW(ops::fno_filter_backward(Array::zeros(F, {4, 6}), Array::zeros(F, {4, 6}),
                                        Array::zeros(F, {4, 8})),
               Error);
  // Convolution: f with the wrong channel count, M = 0, skip, y and gradient shapes.
  EXPECT_THROW(ops::fno_conv_forward(y, u, Array::zeros(F, {5, 8}), skip), Error);
  EXPECT_THROW(ops::fno_conv_forward(y, u, Array::zeros(F, {4, 0}), skip), Error);
  EXPECT_THROW(ops::fno_conv_forward(y, u, f, Array::zeros(F, {3})), Error);
  EXPECT_THROW(ops::fno_conv_forward(Array::zeros(F, {2, 5, 4}), u, f, skip), Error);
  EXPECT_THROW(ops::fno_conv_forward(y, Array::zeros(F, {6, 4}), f, skip), Error);
  Array du = Array::zeros(F, {2, 6, 4}), df = Array::zeros(F, {4, 8}), dskip = Array::zeros(F, {4});
  EXPECT_THROW(ops::fno_conv_backward(du, Array::zeros(F, {4, 7}), dskip, y, u, f, skip), Error);
  EXPECT_THROW(ops::fno_conv_backward(du, df, dskip, y, u, Array::zeros(F, {3, 8}), skip), Error);
  EXPECT_THROW(ops::fno_conv_backward(du, df, Array::zeros(F, {5}), y, u, f, skip), Error);
  EXPECT_THROW(ops::fno_conv_backward(Array::zeros(F, {2, 6, 3}), df, dskip, y, u, f, skip), Error);
  // Generation: ring shape, f shape, negative position; ring_load shapes.
  Array ring = Array::zeros(F, {2, 7, 4}), ut = Array::zeros(F, {2, 4}),
        yt = Array::zeros(F, {2, 4});
  EXPECT_NO_THROW(ops::fno_conv_step(yt, ring, ut, f, skip, 0));
  EXPECT_THROW(ops::fno_conv_step(yt, Array::zeros(F, {2, 8, 4}), ut, f, skip, 0), Error);
  EXPECT_THROW(ops::fno_conv_step(yt, ring, ut, Array::zeros(F, {5, 8}), skip, 0), Error);
  EXPECT_THROW(ops::fno_conv_step(yt, ring, ut, Array::zeros(F, {4, 0}), skip, 0), Error);
  EXPECT_THROW(ops::fno_conv_step(yt, ring, ut, f, skip, -1), Error);
  EXPECT_THROW(ops::fno_ring_load(ring, Array::zeros(F, {3, 6, 4})), Error);
  EXPECT_THROW(ops::fno_ring_load(ring, Array::zeros(F, {2, 6, 5})), Error);
  EXPECT_THROW(ops::fno_ring_load(ring, Array::zeros(DType::F64, {2, 6, 4})), Error);
}
