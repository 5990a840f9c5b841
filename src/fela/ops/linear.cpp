#include "fela/ops/linear.h"

namespace fela::ops {

namespace {
struct LinearDims {
  int64_t R, in, out;
};
LinearDims linear_dims(const Tensor& x, const Tensor& w, Layout layout) {
  FELA_CHECK(w.rank() == 2, "[linear] weight must be a matrix, got ", w.shape().str());
  const int64_t in = x.size(-1);
  const int64_t w_in = layout == Layout::InOut ? w.size(0) : w.size(1);
  FELA_CHECK(w_in == in, "[linear] input has ", in, " features, weight ", w.shape().str(),
             layout == Layout::OutIn ? " (stored [out, in])" : "");
  return {in ? x.numel() / in : 0, in, layout == Layout::InOut ? w.size(1) : w.size(0)};
}
}  // namespace

void linear_forward(Tensor y, const Tensor& x, const Tensor& w, Layout layout, Impl impl) {
  const auto [R, in, out] = linear_dims(x, w, layout);
  FELA_CHECK(y.numel() == R * out && y.size(-1) == out, "[linear] y has shape ", y.shape().str(),
             ", expected ", R, " rows of ", out);
  check_same_float("linear", {&x, &w, &y});
  dispatch_float(x.dtype(), "linear", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::linear_forward<T> : cpu::linear_forward<T>;
    f(y.data<T>(), x.data<T>(), w.data<T>(), R, in, out, layout);
  });
}

void linear_backward(Tensor dx, Tensor dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                     Layout layout, GradMode dx_mode, Impl impl) {
  const auto [R, in, out] = linear_dims(x, w, layout);
  FELA_CHECK(dy.numel() == R * out, "[linear] dy has shape ", dy.shape().str(), ", expected ", R,
             " rows of ", out);
  if (dx.raw()) check_shape(dx, x.shape(), "linear", "dx");
  if (dw.raw()) check_shape(dw, w.shape(), "linear", "dw");
  check_same_float("linear", {&x, &w, &dy});
  dispatch_float(x.dtype(), "linear", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::linear_backward<T> : cpu::linear_backward<T>;
    f(dx.raw() ? dx.data<T>() : nullptr, dw.raw() ? dw.data<T>() : nullptr, dy.data<T>(),
      x.data<T>(), w.data<T>(), R, in, out, layout, dx_mode);
  });
}

}  // namespace fela::ops
