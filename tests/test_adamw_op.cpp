// The fused AdamW op and the gradient norm on the CPU: the fast kernel against the oracle, the
// original trainer arithmetic bit for bit, weight decay on the decay ranges only, the clipping
// factor against pre-scaled gradients, the norm against a plain loop and across thread counts,
// the AdamW class's checkpoint round trip, and argument errors.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>

#include "fela/model/config.h"
#include "fela/model/params.h"
#include "fela/ops/adamw.h"
#include "fela/train/adamw.h"
#include "test_util.h"

using namespace fela;
using namespace fela::test;
using ops::AdamWHyper;
using ops::DecayRange;
using ops::DecayRanges;
using ops::Impl;
using Ranges = std::vector<DecayRange>;

namespace {

// Parameters, gradients and moments [P] (v >= 0, as a second moment is).
struct State {
  Array p, g, m, v;
  State(DType dt, int64_t P, Rng& rng)
      : p(random_array(dt, {P}, rng)),
        g(random_array(dt, {P}, rng, 0.5)),
        m(random_array(dt, {P}, rng, 0.1)),
        v(random_array(dt, {P}, rng, 0.1)) {
    for (int64_t i = 0; i < P; ++i) {
      if (dt == DType::F32)
        v.data<float>()[i] *= v.data<float>()[i];
      else
        v.data<double>()[i] *= v.data<double>()[i];
    }
  }
  State(const State& o) : p(copy_of(o.p)), g(copy_of(o.g)), m(copy_of(o.m)), v(copy_of(o.v)) {}
  void update(const DecayRanges& d, const AdamWHyper& h, Impl impl) {
    ops::adamw_update(p, g, m, v, Tensor(), d, h, impl);
  }
};

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.bytes() == b.bytes() && std::memcmp(a.raw(), b.raw(), a.bytes()) == 0;
}

AdamWHyper hyper(int64_t t, double grad_scale = 1.0) {
  AdamWHyper h;
  h.lr = 3e-3;
  h.beta1 = 0.9;
  h.beta2 = 0.95;
  h.eps = 1e-8;
  h.weight_decay = 0.1;
  h.t = t;
  h.grad_scale = grad_scale;
  return h;
}

// Odd ranges for P elements: one at the start, a one-element one, two that touch (merged), one
// that runs to the end.
Ranges odd_ranges(int64_t P) {
  if (P < 40) return P >= 7 ? Ranges{{0, 3}, {5, 6}, {6, 7}} : Ranges{{0, P}};
  return {{0, 5}, {17, 18}, {31, P / 2}, {P / 2, P / 2 + 9}, {P - P / 3, P}};
}

// The trainer's AdamW before the op existed: clipping scaled the gradients in a pass of its own,
// then one loop per tensor.
template <class T>
void original_update(T* p, const T* g, T* m, T* v, int64_t n, double lr, double wd, double b1,
                     double b2, double eps, double bc1, double bc2) {
  const T tb1 = T(b1), tb2 = T(b2), step = T(lr / bc1), inv_bc2 = T(1.0 / bc2), teps = T(eps);
  const T decay = T(1.0 - lr * wd);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    m[i] = tb1 * m[i] + (T(1) - tb1) * g[i];
    v[i] = tb2 * v[i] + (T(1) - tb2) * g[i] * g[i];
    p[i] = p[i] * decay - step * m[i] / (std::sqrt(v[i] * inv_bc2) + teps);
  }
}

}  // namespace

class AdamWOpSizes : public ::testing::TestWithParam<int64_t> {};

TEST_P(AdamWOpSizes, FastMatchesReference) {
  const int64_t P = GetParam();
  const DecayRanges d(odd_ranges(P));
  for (DType dt : {DType::F32, DType::F64}) {
    Rng rng(uint64_t(P) * 7 + int(dt));
    State ref(dt, P, rng), fast = ref;
    for (int64_t t : {1, 2, 9}) {  // several steps: bias corrections and moments carried over
      ref.update(d, hyper(t, 0.75), Impl::Ref);
      fast.update(d, hyper(t, 0.75), Impl::Fast);
    }
    const double tol = dt == DType::F32 ? 1e-6 : 1e-13;
    EXPECT_LT(rel_err(ref.p, fast.p), tol) << dtype_name(dt);
    EXPECT_LT(rel_err(ref.m, fast.m), tol) << dtype_name(dt);
    EXPECT_LT(rel_err(ref.v, fast.v), tol) << dtype_name(dt);
    EXPECT_TRUE(all_finite(fast.p));
  }
}

// The CPU run must keep its numbers: the op with grad_scale equals the old clipping pass plus
// the old per-tensor update, bit for bit, on the real parameter table.
TEST(AdamWOp, CpuKeepsTheOriginalArithmeticBitForBit) {
  const Config c = load_config("tiny");
  const ParamTable table(c);
  const int64_t P = table.total();
  for (DType dt : {DType::F32, DType::F64}) {
    Rng rng(11 + int(dt));
    State ours(dt, P, rng), old = ours;
    tensor_zero(old.m);  // the moments start at zero, as the optimizer's own do
    tensor_zero(old.v);
    AdamW adam(table, dt, {0.9, 0.95, 1e-8, 0.1});
    for (int64_t t = 1; t <= 3; ++t) {
      const double lr = 1e-3 * double(t), max_norm = t == 2 ? 1e9 : 0.5;  // step 2 not clipped
      // old: clip_grad_norm's scaling pass, then one loop per tensor
      const double norm = std::sqrt(ops::grad_norm_sq(old.g));
      const double s = clip_scale(norm, max_norm);
      Array g_old = copy_of(old.g);
      for (int64_t i = 0; i < P; ++i) {
        if (s == 1.0) break;
        if (dt == DType::F32)
          g_old.data<float>()[i] *= float(s);
        else
          g_old.data<double>()[i] *= s;
      }
      const double bc1 = 1.0 - std::pow(0.9, double(t)), bc2 = 1.0 - std::pow(0.95, double(t));
      for (const ParamSpec& spec : table.specs()) {
        const int64_t n = spec.shape.numel(), o = spec.offset;
        const double wd = spec.decay ? 0.1 : 0.0;
        if (dt == DType::F32)
          original_update(old.p.data<float>() + o, g_old.data<float>() + o, old.m.data<float>() + o,
                          old.v.data<float>() + o, n, lr, wd, 0.9, 0.95, 1e-8, bc1, bc2);
        else
          original_update(old.p.data<double>() + o, g_old.data<double>() + o,
                          old.m.data<double>() + o, old.v.data<double>() + o, n, lr, wd, 0.9, 0.95,
                          1e-8, bc1, bc2);
      }
      // ours: the norm, then the fused update with the clipping factor
      EXPECT_EQ(adam.grad_norm(ours.g), norm);
      adam.step(ours.p, ours.g, lr, clip_scale(adam.grad_norm(ours.g), max_norm));
    }
    EXPECT_TRUE(same_bits(ours.p, old.p)) << dtype_name(dt);
    const std::vector<io::TensorRef> state = adam.state_tensors();
    ASSERT_EQ(state.size(), 2 * table.specs().size());
    for (size_t k = 0; k < table.specs().size(); ++k) {
      const ParamSpec& spec = table.specs()[k];
      EXPECT_TRUE(same_bits(state[k].tensor, table.view(old.m, spec))) << state[k].name;
      EXPECT_TRUE(same_bits(state[table.specs().size() + k].tensor, table.view(old.v, spec)))
          << spec.name;
    }
    EXPECT_EQ(adam.steps(), 3);
  }
}

// With zero gradients and moments the update is p * (1 - lr wd) exactly where decay applies and
// p unchanged elsewhere, so every element shows whether it was decayed.
TEST(AdamWOp, WeightDecayOnlyInsideTheRanges) {
  const int64_t P = 1001;
  const Ranges ranges = {{0, 1}, {10, 10}, {10, 20}, {20, 33}, {500, 501}, {700, P}};
  const DecayRanges d(ranges);
  EXPECT_EQ(d.size(), 4);  // the empty range dropped, [10, 20) and [20, 33) merged
  auto inside = [&](int64_t i) {
    for (const DecayRange& r : ranges)
      if (r.begin <= i && i < r.end) return true;
    return false;
  };
  AdamWHyper h = hyper(3);
  h.lr = 0.05;
  h.weight_decay = 2.0;  // p shrinks by 10% where decayed
  for (DType dt : {DType::F32, DType::F64})
    for (Impl impl : {Impl::Ref, Impl::Fast}) {
      Rng rng(5);
      Array p = random_array(dt, {P}, rng), p0 = copy_of(p);
      Array g = Array::zeros(dt, {P}), m = Array::zeros(dt, {P}), v = Array::zeros(dt, {P});
      ops::adamw_update(p, g, m, v, Tensor(), d, h, impl);
      const std::vector<double> a = to_doubles(p0), b = to_doubles(p);
      int64_t wrong = 0;
      for (int64_t i = 0; i < P; ++i) {
        const double want = inside(i) ? a[size_t(i)] * 0.9 : a[size_t(i)];
        wrong += std::abs(b[size_t(i)] - want) > 1e-6 * std::abs(want);
        if (!inside(i)) wrong += b[size_t(i)] != a[size_t(i)];  // untouched means exactly
      }
      EXPECT_EQ(wrong, 0) << dtype_name(dt) << (impl == Impl::Ref ? " ref" : " fast");
    }
}

// grad_scale is the clipping factor: updating with it equals updating with gradients scaled
// beforehand (bit for bit in the fast kernel, which rounds the scaled gradient to T as a stored
// one would be).
TEST(AdamWOp, GradScaleEqualsPrescaledGradients) {
  const int64_t P = 4099;
  const DecayRanges d(odd_ranges(P));
  const double s = 0.3125001;
  for (DType dt : {DType::F32, DType::F64})
    for (Impl impl : {Impl::Ref, Impl::Fast}) {
      Rng rng(9 + int(dt));
      State a(dt, P, rng), b = a;
      for (int64_t i = 0; i < P; ++i) {
        if (dt == DType::F32)
          b.g.data<float>()[i] *= float(s);
        else
          b.g.data<double>()[i] *= s;
      }
      a.update(d, hyper(4, s), impl);
      b.update(d, hyper(4, 1.0), impl);
      if (impl == Impl::Fast) {
        EXPECT_TRUE(same_bits(a.p, b.p) && same_bits(a.m, b.m) && same_bits(a.v, b.v))
            << dtype_name(dt);
      } else {  // the oracle scales in double, without the rounding of the stored gradient
        const double tol = dt == DType::F32 ? 1e-6 : 1e-14;
        EXPECT_LT(rel_err(a.p, b.p), tol);
        EXPECT_LT(rel_err(a.m, b.m), tol);
        EXPECT_LT(rel_err(a.v, b.v), tol);
      }
    }
}

TEST(AdamWOp, NormMatchesPlainLoopAndIgnoresThreadCount) {
  for (int64_t n : {0, 1, 33, 3 * 32768 + 5}) {
    for (DType dt : {DType::F32, DType::F64}) {
      Rng rng(uint64_t(n) + 3);
      Array g = random_array(dt, {n}, rng, 2.0);
      const std::vector<double> x = to_doubles(g);
      double want = 0;
      for (double e : x) want += e * e;
      for (Impl impl : {Impl::Ref, Impl::Fast})
        EXPECT_NEAR(ops::grad_norm_sq(g, impl), want, 1e-13 * want) << n;
      const int threads = omp_get_max_threads();
      omp_set_num_threads(1);
      const double one = ops::grad_norm_sq(g);
      omp_set_num_threads(3);
      const double three = ops::grad_norm_sq(g);
      omp_set_num_threads(threads);
      EXPECT_EQ(std::memcmp(&one, &three, sizeof one), 0) << n;
    }
  }
}

TEST(AdamWOp, MomentsSurviveACheckpoint) {
  const ParamTable table(load_config("tiny"));
  const int64_t P = table.total();
  Rng rng(21);
  State s(DType::F32, P, rng);
  AdamW a(table, DType::F32, {});
  a.step(s.p, s.g, 1e-3);
  a.step(s.p, s.g, 1e-3, 0.5);
  const std::string path = temp_dir("adamw") + "/optimizer.safetensors";
  io::safetensors_write(path, a.state_tensors());
  AdamW b(table, DType::F32, {});
  b.load_state(io::SafetensorsReader(path));
  b.set_steps(a.steps());
  State s2 = s;
  a.step(s.p, s.g, 1e-3);
  b.step(s2.p, s2.g, 1e-3);
  EXPECT_TRUE(same_bits(s.p, s2.p));
}

TEST(AdamWOp, RejectsBadArguments) {
  Rng rng(1);
  State s(DType::F32, 10, rng);
  const DecayRanges d(Ranges{{2, 5}});
  Array shadow = Array::zeros(DType::BF16, {10});
  EXPECT_NE(error_of([&] {
              ops::adamw_update(s.p, s.g, s.m, s.v, shadow, d, hyper(1));
            }).find("cuda only"),
            std::string::npos);
  Array short_g = Array::zeros(DType::F32, {9});
  EXPECT_THROW(ops::adamw_update(s.p, short_g, s.m, s.v, Tensor(), d, hyper(1)), Error);
  Array g64 = Array::zeros(DType::F64, {10});
  EXPECT_THROW(ops::adamw_update(s.p, g64, s.m, s.v, Tensor(), d, hyper(1)), Error);
  EXPECT_THROW(
      ops::adamw_update(s.p, s.g, s.m, s.v, Tensor(), DecayRanges(Ranges{{8, 11}}), hyper(1)),
      Error);
  EXPECT_THROW(ops::adamw_update(s.p, s.g, s.m, s.v, Tensor(), d, hyper(0)), Error);
  EXPECT_THROW(DecayRanges(Ranges{{5, 8}, {2, 3}}), Error);
  EXPECT_THROW(DecayRanges(Ranges{{5, 4}}), Error);
  EXPECT_THROW(clip_grad_norm(Tensor(s.g.view().raw(), DType::F32, {10}, Device::Cuda), 1.0),
               Error);
}

INSTANTIATE_TEST_SUITE_P(Sizes, AdamWOpSizes, ::testing::Values(1, 33, 1000, 70001));
